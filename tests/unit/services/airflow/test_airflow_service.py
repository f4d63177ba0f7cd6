"""The Airflow services' description: configuration from settings, a login that is never a published default,
and the three processes the runner supervises. No Airflow process is started here."""

from __future__ import annotations

import json
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


def test_secrets_are_generated_once_and_shared(settings: Settings) -> None:
    first, second = airflow.airflow_env(settings), airflow.airflow_env(settings)
    for name in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
        assert len(first[name]) >= 32
        assert first[name] == second[name]
    assert first["AIRFLOW__API_AUTH__JWT_SECRET"] != first["AIRFLOW__API__SECRET_KEY"]


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
