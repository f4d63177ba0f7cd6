"""The DAG probe shared by the Airflow tests: `airflow_dag_facts.py` run once per Airflow venv for every scenario.

Airflow lives in its own venv (services/airflow/setup.sh), so the tests run the probe with that venv's python and
check the JSON it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from pipeline.settings import REPO_ROOT

AIRFLOW_PYTHON = REPO_ROOT / ".state" / "venvs" / "airflow" / "bin" / "python"
FACTS_SCRIPT = Path(__file__).with_name("airflow_dag_facts.py")
USER_ID = "7e57c0de0001"
DAG_ID = f"{USER_ID}_dag"
MAINTENANCE_DAG_ID = f"{USER_ID}_maintenance_dag"
ROLE_ARN = "arn:aws:iam::123456789012:role/7e57c0de0001-batch-job"
EMR_APPLICATION_ID = "00fabcdef1234567"
RENDER_DATE = "2026-11-26"
SCENARIOS = {
    "local": {"env": {"AIRFLOW_RETRIES": "3", "AIRFLOW_SENSOR_TIMEOUT_SECONDS": "900"}},
    "aws": {
        "env": {
            "PIPELINE_TARGET": "aws",
            "AWS_REGION": "eu-west-1",
            "BATCH_RUNNER": "emr-serverless",
            "EMR_SERVERLESS_APPLICATION_ID": EMR_APPLICATION_ID,
            "EMR_SERVERLESS_EXECUTION_ROLE_ARN": ROLE_ARN,
        },
        "render": RENDER_DATE,
    },
    "aws_databricks": {
        "env": {
            "PIPELINE_TARGET": "aws",
            "BATCH_RUNNER": "databricks",
            "DATABRICKS_CLUSTER_ID": "0123-456789-abcdefgh",
            "DATABRICKS_CONN_ID": "databricks_prod",
        },
        "render": RENDER_DATE,
    },
    "aws_unconfigured": {"env": {"PIPELINE_TARGET": "aws"}},
    "aws_databricks_unconfigured": {"env": {"PIPELINE_TARGET": "aws", "BATCH_RUNNER": "databricks"}},
}


def dag_facts(python: Path, home: Path, scenarios: dict = SCENARIOS) -> dict:
    """Facts per scenario, from one run of `python` (importing Airflow takes most of the time)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIPELINE_", "AIRFLOW", "DATABRICKS_", "EMR_", "BATCH_", "AWS_"))
    }
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
        [str(python), str(FACTS_SCRIPT), json.dumps(scenarios)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("DAG_FACTS ")]
    assert result.returncode == 0 and lines, f"DagBag probe failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(lines[-1].removeprefix("DAG_FACTS "))
