"""The DAG parses on the newest Airflow MWAA offers (3.0.6: botocore's MWAA model lists it as the last valid
AirflowVersion) and renders the same runner requests there as on the stack's Airflow.

The probe runs in a second venv built from services/airflow/requirements-mwaa.lock by services/airflow/mwaa_venv.sh
(a few seconds when uv's cache has the wheels; the fixture builds it when missing).
"""

from __future__ import annotations

import subprocess

import botocore.session
import pytest

from pipeline.settings import REPO_ROOT
from tests.unit.airflow.dag_probe import DAG_ID, SCENARIOS, dag_facts

MWAA_PYTHON = REPO_ROOT / ".state" / "venvs" / "airflow-mwaa" / "bin" / "python"
MWAA_AIRFLOW = "3.0.6"
ON_MWAA = ("aws", "aws_databricks")


@pytest.fixture(scope="module")
def mwaa_facts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    setup = subprocess.run(
        ["bash", str(REPO_ROOT / "services" / "airflow" / "mwaa_venv.sh")], capture_output=True, text=True
    )
    assert setup.returncode == 0, f"services/airflow/mwaa_venv.sh failed:\n{setup.stdout}\n{setup.stderr}"
    version = subprocess.run(
        [str(MWAA_PYTHON), "-c", "import airflow; print(airflow.__version__)"], capture_output=True, text=True
    )
    assert version.stdout.strip() == MWAA_AIRFLOW, version.stderr
    scenarios = {name: SCENARIOS[name] for name in ON_MWAA}
    return dag_facts(MWAA_PYTHON, tmp_path_factory.mktemp("mwaa_home"), scenarios)


def test_mwaa_s_newest_airflow_is_the_one_tested() -> None:
    model = botocore.session.get_session().get_service_model("mwaa")
    documentation = model.operation_model("CreateEnvironment").input_shape.members["AirflowVersion"].documentation
    versions = documentation.split("Valid values:")[1]
    assert f"<code>{MWAA_AIRFLOW}</code>." in versions, versions


@pytest.mark.parametrize("scenario", ON_MWAA)
def test_the_dag_parses_on_mwaa_and_renders_the_same_run(mwaa_facts: dict, facts: dict, scenario: str) -> None:
    on_mwaa = mwaa_facts[scenario]
    assert on_mwaa["import_errors"] == {}
    assert on_mwaa["dag_ids"] == [DAG_ID]
    assert on_mwaa["tasks"] == facts[scenario]["tasks"]
    assert on_mwaa["rendered"] == facts[scenario]["rendered"]
