"""The Airflow services' description: configuration from settings, a login that is never a published default,
and the three processes the runner supervises. No Airflow process is started here."""

from __future__ import annotations

import json
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from pipeline.settings import REPO_ROOT, Settings, load_settings
from services.airflow import service as airflow


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(state_dir=tmp_path, airflow_admin_password=None, airflow_port=18080)


def test_env_points_every_process_at_the_same_state_and_dags(settings: Settings, tmp_path: Path) -> None:
    env = airflow.airflow_env(settings)
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO_ROOT / "airflow" / "dags")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert int(env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"]) <= 10
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"


SECRET_OPTIONS = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY")


def secret_value(env: dict[str, str], name: str) -> str:
    """What Airflow reads for a sensitive option given as `<name>_CMD`: the command's output."""
    return subprocess.run(shlex.split(env[f"{name}_CMD"]), capture_output=True, text=True, check=True).stdout.strip()


def test_secrets_are_generated_once_and_shared(settings: Settings) -> None:
    first, second = airflow.airflow_env(settings), airflow.airflow_env(settings)
    for name in SECRET_OPTIONS:
        assert len(secret_value(first, name)) >= 32
        assert secret_value(first, name) == secret_value(second, name)
    assert secret_value(first, "AIRFLOW__API_AUTH__JWT_SECRET") != secret_value(first, "AIRFLOW__API__SECRET_KEY")


def test_secrets_are_in_private_files_not_in_the_environment(settings: Settings) -> None:
    env = airflow.airflow_env(settings)
    secrets_dir = airflow.secret_file(settings, "jwt_secret").parent
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    values = []
    for path in secrets_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        values.append(path.read_text().strip())
    assert len(values) == 3
    for name in SECRET_OPTIONS:
        assert name not in env
    assert not any(value in " ".join(env.values()) for value in values)


def test_a_secret_emptied_by_a_crash_is_not_used(settings: Settings) -> None:
    """An older writer could leave an empty file (touch, then crash before the write): never an empty secret."""
    path = airflow.secret_file(settings, "jwt_secret")
    path.parent.mkdir(parents=True)
    path.touch(mode=0o600)
    assert len(secret_value(airflow.airflow_env(settings), "AIRFLOW__API_AUTH__JWT_SECRET")) >= 32


def test_password_from_settings_wins(tmp_path: Path) -> None:
    chosen = load_settings(state_dir=tmp_path, airflow_admin_password="s3cret-from-env")
    assert airflow.admin_password(chosen) == "s3cret-from-env"
    assert not chosen.airflow_password_file.exists()


def test_password_is_generated_once_when_not_configured(settings: Settings) -> None:
    password = airflow.admin_password(settings)
    assert len(password) >= 16 and password not in ("admin", "airflow")
    assert airflow.admin_password(settings) == password
    assert settings.resolved_airflow_admin_password() == password
    assert settings.airflow_password_file.stat().st_mode & 0o077 == 0


def test_prepare_writes_the_login_file_simple_auth_manager_reads(settings: Settings, monkeypatch) -> None:
    monkeypatch.setattr(airflow, "migrate_db", lambda settings: None)
    airflow.prepare(settings)
    users = airflow.airflow_env(settings)["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    assert users == f"{settings.airflow_admin_user}:admin"
    login_file = Path(airflow.airflow_env(settings)["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert json.loads(login_file.read_text()) == {settings.airflow_admin_user: airflow.admin_password(settings)}


def test_migrate_db_without_the_venv_says_how_to_install(settings: Settings) -> None:
    with pytest.raises(SystemExit, match=r"services/airflow/setup\.sh"):
        airflow.migrate_db(settings)


def test_three_supervised_processes(settings: Settings) -> None:
    services = {service.name: service for service in airflow.services(settings)}
    assert set(services) == {"airflow-api", "airflow-scheduler", "airflow-dag-processor"}
    api = services["airflow-api"]
    assert api.ports == (18080,)
    assert api.command[1:] == ["api-server", "--host", "127.0.0.1", "--port", "18080", "--workers", "1"]
    assert services["airflow-scheduler"].depends_on == ("airflow-api",)
    assert services["airflow-dag-processor"].command[1:] == ["dag-processor"]
    assert all(service.env["AIRFLOW_HOME"] == api.env["AIRFLOW_HOME"] for service in services.values())
