"""The running Airflow (api-server, scheduler, dag-processor) serves the pipeline's DAG over its REST API, behind
the login configured in `.env` (or generated into the state folder), with no import errors."""

from __future__ import annotations

import httpx
import pytest

from pipeline.settings import Settings, load_settings
from services.airflow.service import api_get, api_url

AIRFLOW_SERVICES = ("airflow-api", "airflow-scheduler", "airflow-dag-processor")


@pytest.fixture(scope="module")
def stack_settings(stack) -> Settings:
    """The stack's own settings: its DAG id is derived from the user id the stack was started with."""
    stack(*AIRFLOW_SERVICES)
    return load_settings()


def test_rest_api_lists_the_dag_with_the_configured_login(stack_settings: Settings) -> None:
    dags = api_get(stack_settings, "/api/v2/dags", dag_id_pattern=stack_settings.dag_id)["dags"]
    assert [dag["dag_id"] for dag in dags] == [stack_settings.dag_id]
    assert {"pinterest", "batch"} <= {tag["name"] for tag in dags[0]["tags"]}
    assert dags[0]["fileloc"].endswith("airflow/dags/pinterest_dag.py")


def test_dag_has_its_three_tasks_and_no_import_error(stack_settings: Settings) -> None:
    tasks = api_get(stack_settings, f"/api/v2/dags/{stack_settings.dag_id}/tasks")["tasks"]
    assert {task["task_id"] for task in tasks} == {"wait_for_new_objects", "run_batch_job", "check_results"}
    errors = api_get(stack_settings, "/api/v2/importErrors")["import_errors"]
    assert [e for e in errors if e["filename"].endswith("pinterest_dag.py")] == []


def test_scheduler_and_dag_processor_are_healthy(stack_settings: Settings) -> None:
    health = api_get(stack_settings, "/api/v2/monitor/health")
    assert health["metadatabase"]["status"] == "healthy"
    assert health["scheduler"]["status"] == "healthy"
    assert health["dag_processor"]["status"] == "healthy"


def test_wrong_password_and_no_token_are_refused(stack_settings: Settings) -> None:
    base = api_url(stack_settings)
    wrong = httpx.post(
        f"{base}/auth/token",
        json={"username": stack_settings.airflow_admin_user, "password": "not-the-password"},
        timeout=10,
    )
    assert wrong.status_code == 401
    assert httpx.get(f"{base}/api/v2/dags", timeout=10).status_code == 401
