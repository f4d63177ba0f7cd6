"""DAG integrity: the DAG file loads in Airflow's own DagBag with the intended schedule, retries and task order,
and with PIPELINE_TARGET=aws renders the Databricks submit-run payload from settings (rendered, never run).

Airflow lives in its own venv (services/airflow/setup.sh), so these tests run `airflow_dag_facts.py` with that
venv's python and check the JSON it prints. A missing Airflow venv fails the tests: it is part of `make setup`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pipeline.settings import REPO_ROOT

AIRFLOW_PYTHON = REPO_ROOT / ".state" / "venvs" / "airflow" / "bin" / "python"
FACTS_SCRIPT = Path(__file__).with_name("airflow_dag_facts.py")
USER_ID = "7e57c0de0001"
DAG_ID = f"{USER_ID}_dag"
MAINTENANCE_DAG_ID = f"{USER_ID}_maintenance_dag"


SCENARIOS = {
    "local": {"env": {"AIRFLOW_RETRIES": "3", "AIRFLOW_SENSOR_TIMEOUT_SECONDS": "900"}},
    "aws": {
        "env": {
            "PIPELINE_TARGET": "aws",
            "DATABRICKS_CLUSTER_ID": "0123-456789-abcdefgh",
            "DATABRICKS_NOTEBOOK_PATH": "/Workspace/pipeline/batch",
            "DATABRICKS_CONN_ID": "databricks_prod",
        },
        "render": "2026-11-26",
    },
    "aws_unconfigured": {"env": {"PIPELINE_TARGET": "aws"}},
}


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Facts per scenario, from one run of the Airflow venv's python (importing Airflow takes most of the time)."""
    if not AIRFLOW_PYTHON.exists():
        pytest.fail(f"{AIRFLOW_PYTHON} missing: run `bash services/airflow/setup.sh` (part of make setup)")
    home = tmp_path_factory.mktemp("airflow_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "AIRFLOW", "DATABRICKS_"))}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PIPELINE_ENV_FILE": str(home / "no.env"),
        "PIPELINE_USER_ID": USER_ID,
        # This checkout's DAGs and modules, not those of the checkout Airflow's venv was installed from (a worktree
        # shares the state folder, and so the venvs, with the main checkout).
        "PYTHONPATH": str(REPO_ROOT),
    }
    result = subprocess.run(
        [str(AIRFLOW_PYTHON), str(FACTS_SCRIPT), json.dumps(SCENARIOS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("DAG_FACTS ")]
    assert result.returncode == 0 and lines, f"DagBag probe failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(lines[-1].removeprefix("DAG_FACTS "))


@pytest.fixture(scope="module")
def local_facts(facts: dict) -> dict:
    return facts["local"]


@pytest.fixture(scope="module")
def aws_facts(facts: dict) -> dict:
    return facts["aws"]


def test_dag_imports_without_errors(local_facts: dict) -> None:
    assert local_facts["import_errors"] == {}
    assert local_facts["dag_ids"] == sorted([DAG_ID, MAINTENANCE_DAG_ID])
    assert Path(local_facts["fileloc"]).name == "pinterest_dag.py"


def test_maintenance_dag_runs_its_three_independent_steps_daily_with_retries_from_settings(local_facts: dict) -> None:
    maintenance = local_facts["maintenance"]
    assert Path(maintenance["fileloc"]).name == "maintenance_dag.py"
    assert (maintenance["schedule"], maintenance["catchup"]) == ("@daily", False)
    assert set(maintenance["tasks"]) == {"optimize_and_vacuum_delta", "prune_topics", "prune_airflow_logs"}
    for task_id, task in maintenance["tasks"].items():
        assert task["operator"] == "PythonOperator", task_id
        assert task["downstream"] == [], task_id  # one failing step does not hold up the others
        assert (task["retries"], task["retry_delay_seconds"]) == (3, 300), task_id


def test_aws_target_has_no_maintenance_dag(aws_facts: dict) -> None:
    # On AWS the bucket's lifecycle rule, MWAA's log retention and Databricks keep the bounds.
    assert aws_facts["dag_ids"] == [DAG_ID] and "maintenance" not in aws_facts


def test_schedule_catchup_and_tags(local_facts: dict) -> None:
    assert local_facts["schedule"] == "@daily"
    assert local_facts["catchup"] is False
    assert local_facts["max_active_runs"] == 1
    assert {"pinterest", "batch", "local"} <= set(local_facts["tags"])


def test_every_task_retries_with_delay_from_settings(local_facts: dict) -> None:
    for task_id, task in local_facts["tasks"].items():
        assert task["retries"] == 3, task_id
        assert task["retry_delay_seconds"] == 300, task_id


def test_task_order_is_wait_then_batch_then_check(local_facts: dict) -> None:
    tasks = local_facts["tasks"]
    assert set(tasks) == {"wait_for_new_objects", "run_batch_job", "check_results"}
    assert tasks["wait_for_new_objects"]["downstream"] == ["run_batch_job"]
    assert tasks["run_batch_job"]["downstream"] == ["check_results"]
    assert tasks["check_results"]["downstream"] == []


def test_sensor_has_a_timeout_and_skips_when_nothing_arrives(local_facts: dict) -> None:
    sensor = local_facts["tasks"]["wait_for_new_objects"]
    assert sensor["operator"] == "PythonSensor"
    assert sensor["timeout"] == 900
    assert sensor["soft_fail"] is True
    assert sensor["mode"] == "reschedule"


def test_local_target_runs_the_batch_job_in_python(local_facts: dict) -> None:
    assert local_facts["tasks"]["run_batch_job"]["operator"] == "PythonOperator"


def test_aws_target_renders_the_databricks_submit_run(aws_facts: dict) -> None:
    assert aws_facts["import_errors"] == {}
    assert aws_facts["tasks"]["run_batch_job"]["operator"] == "DatabricksSubmitRunOperator"
    assert aws_facts["tasks"]["run_batch_job"]["downstream"] == ["check_results"]
    assert aws_facts["rendered"]["conn_id"] == "databricks_prod"
    payload = aws_facts["rendered"]["payload"]
    assert payload["existing_cluster_id"] == "0123-456789-abcdefgh"
    assert payload["run_name"] == f"{DAG_ID}-batch-2026-11-26"
    assert payload["notebook_task"] == {
        "notebook_path": "/Workspace/pipeline/batch",
        "base_parameters": {
            "pipeline_user_id": USER_ID,
            "input": f"s3a://user-{USER_ID}-bucket",
            "results": f"s3a://user-{USER_ID}-bucket/analytics",
            "logical_date": "2026-11-26",
        },
    }


def test_aws_target_without_databricks_settings_is_a_clear_import_error(facts: dict) -> None:
    unconfigured = facts["aws_unconfigured"]
    assert unconfigured["dag_ids"] == []
    (error,) = unconfigured["import_errors"].values()
    assert "DATABRICKS_CLUSTER_ID and DATABRICKS_NOTEBOOK_PATH" in error


def test_airflow_folder_is_not_a_python_package() -> None:
    # A package named `airflow` at the repo root would shadow Airflow itself.
    assert not list((REPO_ROOT / "airflow").rglob("__init__.py"))
