#!/usr/bin/env bash
# A second Airflow venv (.state/venvs/airflow-mwaa) with the newest Airflow MWAA offers (3.0.6), only to check that
# the DAG parses there too (tests/unit/airflow/test_dag_on_mwaa.py). It runs nothing. Python: the project's 3.11
# (MWAA 3.0.6 runs 3.12, which this machine may not have; the DAG and its modules are plain 3.11+ code).
# Idempotent: a stamp newer than the lock means nothing to do.
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE=${STATE_DIR:-.state}
PYTHON=${PYTHON:-python3.11}
venv="$STATE/venvs/airflow-mwaa"
lock=services/airflow/requirements-mwaa.lock
stamp="$venv/.installed"
if [ -f "$stamp" ] && [ "$stamp" -nt "$lock" ]; then
  exit 0
fi
echo "[setup] installing Airflow 3.0.6 (MWAA's newest) into $venv from $lock"
if [ -x "$STATE/venv/bin/uv" ]; then uv="$STATE/venv/bin/uv"; else uv=uv; fi
[ -x "$venv/bin/python" ] || "$uv" venv -q --python "$PYTHON" "$venv"
"$uv" pip install -q --python "$venv/bin/python" -r "$lock"
touch "$stamp"
