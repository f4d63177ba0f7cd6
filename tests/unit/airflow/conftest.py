"""Fixtures of the Airflow tests: the DAG probe's facts from the stack's Airflow venv (a missing venv fails the
tests: it is part of `make setup`)."""

from __future__ import annotations

import pytest

from tests.unit.airflow.dag_probe import AIRFLOW_PYTHON, dag_facts


@pytest.fixture(scope="session")
def facts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not AIRFLOW_PYTHON.exists():
        pytest.fail(f"{AIRFLOW_PYTHON} missing: run `bash services/airflow/setup.sh` (part of make setup)")
    return dag_facts(AIRFLOW_PYTHON, tmp_path_factory.mktemp("airflow_home"))


@pytest.fixture(scope="session")
def local_facts(facts: dict) -> dict:
    return facts["local"]


@pytest.fixture(scope="session")
def aws_facts(facts: dict) -> dict:
    return facts["aws"]
