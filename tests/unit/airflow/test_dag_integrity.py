"""DAG integrity: the DAG file loads in Airflow's own DagBag with the intended schedule, retries and task order,
and with PIPELINE_TARGET=aws renders the EMR Serverless job run or the Databricks submit-run payload from settings
(rendered, never run).

Airflow lives in its own venv (services/airflow/setup.sh), so these tests run `airflow_dag_facts.py` with that
venv's python and check the JSON it prints. A missing Airflow venv fails the tests: it is part of `make setup`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.settings import REPO_ROOT
from tests.unit.airflow.dag_probe import DAG_ID, MAINTENANCE_DAG_ID, ROLE_ARN, USER_ID


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


def test_aws_target_renders_the_emr_serverless_job_run(aws_facts: dict) -> None:
    assert aws_facts["import_errors"] == {}
    assert aws_facts["tasks"]["run_batch_job"]["operator"] == "EmrServerlessStartJobOperator"
    assert aws_facts["tasks"]["run_batch_job"]["downstream"] == ["check_results"]
    rendered = aws_facts["rendered"]
    assert rendered["region"] == "eu-west-1"
    assert rendered["waiter_seconds"] == 2 * 3600  # the operator waits as long as the batch job may run
    request = rendered["request"]
    assert (request["applicationId"], request["executionRoleArn"]) == ("00fabcdef1234567", ROLE_ARN)
    assert (request["name"], request["mode"]) == (f"{DAG_ID}-batch-2026-11-26", "BATCH")
    submit = request["jobDriver"]["sparkSubmit"]
    assert submit["entryPoint"] == f"s3://user-{USER_ID}-bucket/jobs/entry.py"
    assert submit["entryPointArguments"][-5:] == [
        "batch",
        "--input",
        f"s3a://user-{USER_ID}-bucket",
        "--results",
        f"s3a://user-{USER_ID}-bucket/analytics",
    ]


def test_aws_target_renders_the_databricks_submit_run(facts: dict) -> None:
    databricks = facts["aws_databricks"]
    assert databricks["import_errors"] == {}
    assert databricks["tasks"]["run_batch_job"]["operator"] == "DatabricksSubmitRunOperator"
    assert databricks["rendered"]["conn_id"] == "databricks_prod"
    payload = databricks["rendered"]["payload"]
    assert payload["run_name"] == f"{DAG_ID}-batch-2026-11-26"
    (task,) = payload["tasks"]
    assert task["existing_cluster_id"] == "0123-456789-abcdefgh"
    assert task["spark_python_task"]["python_file"] == f"s3://user-{USER_ID}-bucket/jobs/entry.py"
    assert task["spark_python_task"]["parameters"][-5:] == [
        "batch",
        "--input",
        f"s3a://user-{USER_ID}-bucket",
        "--results",
        f"s3a://user-{USER_ID}-bucket/analytics",
    ]
    assert "notebook_task" not in task


@pytest.mark.parametrize(
    ("scenario", "variables"),
    [
        ("aws_unconfigured", "EMR_SERVERLESS_APPLICATION_ID and EMR_SERVERLESS_EXECUTION_ROLE_ARN"),
        ("aws_databricks_unconfigured", "DATABRICKS_CLUSTER_ID"),
    ],
)
def test_aws_target_without_runner_settings_is_a_clear_import_error(facts: dict, scenario: str, variables: str) -> None:
    unconfigured = facts[scenario]
    assert unconfigured["dag_ids"] == []
    (error,) = unconfigured["import_errors"].values()
    assert variables in error


def test_airflow_folder_is_not_a_python_package() -> None:
    # A package named `airflow` at the repo root would shadow Airflow itself.
    assert not list((REPO_ROOT / "airflow").rglob("__init__.py"))
