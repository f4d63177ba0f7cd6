"""The Airflow image's entry point and healthcheck (docker mode), run here with fake `airflow` and entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.settings import REPO_ROOT
from services.airflow import docker_healthcheck
from services.runner import NotReady

ENTRYPOINT = REPO_ROOT / "services" / "airflow" / "docker-entrypoint.sh"
SECRETS = ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET")


def run_entrypoint(tmp_path: Path, *args: str, **env: str) -> dict[str, str]:
    """Run docker-entrypoint.sh; the fake image entry point dumps the environment and arguments it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "airflow-calls"
    (bin_dir / "airflow").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    if not (bin_dir / "python").exists():
        (bin_dir / "python").symlink_to(sys.executable)
    dump = tmp_path / "dump.json"
    fake = bin_dir / "image-entrypoint"
    fake.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"json.dump({{'env': dict(os.environ), 'args': sys.argv[1:]}}, open({str(dump)!r}, 'w'))\n"
    )
    for tool in (bin_dir / "airflow", fake):
        tool.chmod(0o755)
    home = tmp_path / "airflow-home"
    home.mkdir(exist_ok=True)
    base = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW_IMAGE_ENTRYPOINT": str(fake),
    }
    result = subprocess.run(
        ["bash", str(ENTRYPOINT), *args], env={**base, **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(dump.read_text())
    out["airflow_calls"] = calls.read_text().splitlines() if calls.exists() else []
    return out


def test_secrets_are_generated_once_and_shared(tmp_path):
    first = run_entrypoint(tmp_path, "api-server")
    second = run_entrypoint(tmp_path, "scheduler", "--skip-serve-logs")
    for name in SECRETS:
        assert len(first["env"][name]) >= 32
        assert first["env"][name] == second["env"][name], f"{name} differs between containers"
    assert first["env"]["AIRFLOW__API__SECRET_KEY"] != first["env"]["AIRFLOW__API_AUTH__JWT_SECRET"]
    secrets = tmp_path / "airflow-home" / "secrets"
    assert oct(secrets.stat().st_mode & 0o777) == "0o700"
    assert second["args"] == ["scheduler", "--skip-serve-logs"]


def test_only_the_api_server_migrates_the_database(tmp_path):
    assert run_entrypoint(tmp_path, "api-server")["airflow_calls"] == ["db migrate"]
    assert run_entrypoint(tmp_path, "dag-processor")["airflow_calls"] == ["db migrate"]  # no second migration


def test_login_file_holds_the_configured_or_generated_password(tmp_path):
    home = tmp_path / "airflow-home"
    run_entrypoint(tmp_path, "api-server", AIRFLOW_ADMIN_USER="ops", AIRFLOW_ADMIN_PASSWORD="s3cret-from-env")
    assert json.loads((home / "passwords.json").read_text()) == {"ops": "s3cret-from-env"}
    generated = run_entrypoint(tmp_path, "api-server")["env"]["AIRFLOW_ADMIN_PASSWORD"]
    assert generated == (home / "secrets" / "admin_password").read_text().strip()
    assert json.loads((home / "passwords.json").read_text()) == {"admin": generated}


def test_secrets_from_env_win(tmp_path):
    out = run_entrypoint(tmp_path, "api-server", AIRFLOW__API_AUTH__JWT_SECRET="from-dot-env")
    assert out["env"]["AIRFLOW__API_AUTH__JWT_SECRET"] == "from-dot-env"


@pytest.fixture
def airflow_container_env(tmp_path, monkeypatch):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "admin_password").write_text("generated-pw\n")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "http://airflow-api:8080/execution/")
    # set, then delete: monkeypatch then restores the original state after the healthcheck wrote the variable
    monkeypatch.setenv("AIRFLOW_ADMIN_PASSWORD", "")
    monkeypatch.delenv("AIRFLOW_ADMIN_PASSWORD")


def test_healthcheck_asks_the_api_server_with_the_stored_password(airflow_container_env, monkeypatch):
    seen = {}

    def fake_ready(settings):
        seen["url"] = f"http://{settings.bind_host}:{settings.airflow_port}"
        seen["password"] = settings.resolved_airflow_admin_password()

    monkeypatch.setattr("services.airflow.service._api_ready", fake_ready)
    assert docker_healthcheck.main(["api"]) == 0
    assert seen == {"url": "http://airflow-api:8080", "password": "generated-pw"}
    assert os.environ["AIRFLOW_ADMIN_PASSWORD"] == "generated-pw"


def test_healthcheck_fails_when_not_ready(airflow_container_env, monkeypatch, capsys):
    def not_ready(component):
        def ready(settings):
            raise NotReady(f"{component} is unhealthy")

        return ready

    monkeypatch.setattr("services.airflow.service._component_ready", not_ready)
    assert docker_healthcheck.main(["scheduler"]) == 1
    assert "scheduler is unhealthy" in capsys.readouterr().err
    assert docker_healthcheck.main(["triggerer"]) == 2
