"""Airflow 3 as three native services: api-server (UI + REST + execution API), scheduler, dag-processor.

Why three services and not `airflow standalone`: the runner supervises one process per service, and separate
programs give one log and one real readiness check each (standalone also starts a triggerer we do not need, and
stops cleanly only on SIGINT). The scheduler runs tasks with the LocalExecutor, which Airflow 3 supports on SQLite
(the metadata DB is `state/airflow/airflow.db`; MariaDB is not a supported Airflow backend). No triggerer: the DAG
uses no deferrable operator.

Airflow lives in its own venv (services/airflow/setup.sh). Every process gets its configuration from
`airflow_env`, so `python -m services.airflow ...` (the CLI, `make dag-test`) sees the same DB, DAGs and secrets.
Login: SimpleAuthManager with one admin user whose password comes from AIRFLOW_ADMIN_PASSWORD in `.env`, or is
generated once into state/airflow/admin_password (never a published default).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx

from pipeline.private import create_private_once, private_dir, write_private
from pipeline.settings import REPO_ROOT, Settings
from services.contract import NotReady, Service

DAGS_FOLDER = REPO_ROOT / "airflow" / "dags"
SETUP_SCRIPT = "services/airflow/setup.sh"


def home(settings: Settings) -> Path:
    return settings.state_dir / "airflow"


def venv_bin(settings: Settings) -> Path:
    return settings.tools_dir / "venvs" / "airflow" / "bin"


def api_url(settings: Settings) -> str:
    return f"http://{settings.bind_host}:{settings.airflow_port}"


def secret_file(settings: Settings, name: str) -> Path:
    return home(settings) / "secrets" / name


def _secret_command(settings: Settings, name: str, make: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> str:
    """A secret generated once into a 0600 file of the state folder (so every process and restart agrees on it),
    handed to Airflow as the command that prints it (the `_CMD` form of a sensitive option): the value itself is in
    no environment variable, so not in supervisord's config either."""
    path = secret_file(settings, name)
    private_dir(path.parent)
    create_private_once(path, make)
    return shlex.join(["cat", str(path)])


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def admin_password(settings: Settings) -> str:
    """AIRFLOW_ADMIN_PASSWORD, else a password generated on first use and stored for later runs and tests."""
    password = settings.resolved_airflow_admin_password()
    if password:
        return password
    path = settings.airflow_password_file
    password = create_private_once(path, lambda: secrets.token_urlsafe(16))
    print(
        f"generated an Airflow password for user {settings.airflow_admin_user!r} in {path} "
        "(set AIRFLOW_ADMIN_PASSWORD in .env to choose your own)",
        flush=True,
    )
    return password


def airflow_env(settings: Settings) -> dict[str, str]:
    """Airflow's whole configuration as AIRFLOW__ variables (no airflow.cfg edits), shared by all processes."""
    airflow_home = home(settings)
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "PATH": os.pathsep.join([str(venv_bin(settings)), os.environ.get("PATH", os.defpath)]),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # LocalExecutor forks this many workers up front (~145 MB RSS each); the batch job is one Spark driver.
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__FERNET_KEY_CMD": _secret_command(settings, "fernet_key", _fernet_key),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url(settings)}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(airflow_home / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__API__HOST": settings.bind_host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": api_url(settings),
        "AIRFLOW__API__SECRET_KEY_CMD": _secret_command(settings, "api_secret_key"),
        "AIRFLOW__API_AUTH__JWT_SECRET_CMD": _secret_command(settings, "jwt_secret"),
        # New DAG files are noticed within seconds, not the default five minutes.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(settings.airflow_log_dir),
    }


def _migrated_stamp(settings: Settings) -> Path:
    return home(settings) / ".db-migrated"


def migrate_db(settings: Settings) -> None:
    """Check the venv and migrate the metadata DB (once per installed Airflow; `db migrate` is idempotent)."""
    airflow = venv_bin(settings) / "airflow"
    if not airflow.exists():
        raise SystemExit(f"Airflow is not installed ({airflow} missing): run `bash {SETUP_SCRIPT}` (or make setup)")
    home(settings).mkdir(parents=True, exist_ok=True)
    install_stamp = settings.tools_dir / "venvs" / "airflow" / ".installed"
    installed = str(install_stamp.stat().st_mtime_ns if install_stamp.exists() else 0)
    stamp = _migrated_stamp(settings)
    if stamp.exists() and stamp.read_text() == installed and (home(settings) / "airflow.db").exists():
        return
    print("migrating the Airflow metadata DB ...", flush=True)
    env = {**os.environ, **airflow_env(settings)}
    result = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    stamp.write_text(installed)


def prepare(settings: Settings) -> None:
    """Before the services start: the DB, and the login file SimpleAuthManager reads on every login."""
    migrate_db(settings)
    private_dir(home(settings))
    login = {settings.airflow_admin_user: admin_password(settings)}
    write_private(home(settings) / "passwords.json", json.dumps(login))


def access_token(settings: Settings) -> str:
    """A JWT for the REST API from the configured login (SimpleAuthManager's /auth/token)."""
    password = settings.resolved_airflow_admin_password()
    try:
        response = httpx.post(
            f"{api_url(settings)}/auth/token",
            json={"username": settings.airflow_admin_user, "password": password},
            timeout=10,
        )
    except httpx.HTTPError as error:
        raise NotReady(f"POST /auth/token: {error}") from error
    if response.status_code not in (200, 201):
        raise NotReady(
            f"POST /auth/token as {settings.airflow_admin_user!r}: {response.status_code} {response.text[:200]}"
        )
    return response.json()["access_token"]


def api_get(settings: Settings, path: str, **params: object) -> dict:
    """An authenticated GET on the REST API (`/api/v2/...`), raising NotReady on any non-200 answer."""
    try:
        response = httpx.get(
            f"{api_url(settings)}{path}",
            params=params,
            headers={"Authorization": f"Bearer {access_token(settings)}"},
            timeout=10,
        )
    except httpx.HTTPError as error:
        raise NotReady(f"GET {path}: {error}") from error
    if response.status_code != 200:
        raise NotReady(f"GET {path}: {response.status_code} {response.text[:200]}")
    return response.json()


def _api_ready(settings: Settings) -> None:
    api_get(settings, "/api/v2/dags", limit=1)


def _component_ready(component: str):
    def ready(settings: Settings) -> None:
        health = api_get(settings, "/api/v2/monitor/health")
        status = (health.get(component) or {}).get("status")
        if status != "healthy":
            raise NotReady(f"/api/v2/monitor/health says {component} is {status}")

    return ready


def services(settings: Settings) -> list[Service]:
    airflow = str(venv_bin(settings) / "airflow")
    env = airflow_env(settings)
    common = {"prepare": prepare, "env": env, "directory": home(settings), "stop_timeout": 30}
    return [
        Service(
            name="airflow-api",
            command=[
                airflow,
                "api-server",
                "--host",
                settings.bind_host,
                "--port",
                str(settings.airflow_port),
                "--workers",
                "1",
            ],
            ports=(settings.airflow_port,),
            ready=_api_ready,
            where=f"{api_url(settings)} (user {settings.airflow_admin_user}, password: AIRFLOW_ADMIN_PASSWORD or "
            f"{settings.airflow_password_file})",
            ready_timeout=180,
            **common,
        ),
        Service(
            name="airflow-scheduler",
            command=[airflow, "scheduler", "--skip-serve-logs"],
            ports=(),
            ready=_component_ready("scheduler"),
            where=f"LocalExecutor, DAG {settings.dag_id}",
            depends_on=("airflow-api",),
            ready_timeout=120,
            **common,
        ),
        Service(
            name="airflow-dag-processor",
            command=[airflow, "dag-processor"],
            ports=(),
            ready=_component_ready("dag_processor"),
            where=f"DAGs from {DAGS_FOLDER}",
            depends_on=("airflow-api",),
            ready_timeout=120,
            **common,
        ),
    ]
