#!/usr/bin/env bash
# Installs Airflow 3 into its OWN virtualenv (.state/venvs/airflow), called by scripts/setup.sh.
# Why a separate venv: Airflow pins hundreds of packages (sqlalchemy, fastapi, pydantic, ...) and its Spark provider
# pulls pyspark-client, which would overwrite pyspark in the project's venv (docs/architecture.md). The DAG calls the project
# venv's spark-submit instead. requirements.lock plays the role of Airflow's constraint file (the official
# constraints URL is not reachable here); regenerate it from requirements.in (see its header).
# The repo itself is installed editable without dependencies so task code can import `pipeline.settings` and
# `orchestration`. Idempotent: a stamp newer than the lock means nothing to do.
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE=${STATE_DIR:-.state}
PYTHON=${PYTHON:-python3.11}
venv="$STATE/venvs/airflow"
lock=services/airflow/requirements.lock
stamp="$venv/.installed"

log() { printf '[setup] %s\n' "$*"; }

if [ -f "$stamp" ] && [ "$stamp" -nt "$lock" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
log "installing Airflow 3 into $venv from $lock (about 570 MB)"
command -v "$PYTHON" >/dev/null || { log "$PYTHON not found: the project needs Python 3.11"; exit 1; }
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
if [ -x "$STATE/venv/bin/uv" ]; then uv="$STATE/venv/bin/uv"; elif command -v uv >/dev/null; then uv=uv; else
  "$venv/bin/python" -m pip install -q --disable-pip-version-check uv
  uv="$venv/bin/uv"
fi
"$uv" pip install -q --python "$venv/bin/python" -r "$lock"
"$uv" pip install -q --python "$venv/bin/python" --no-deps -e .
touch "$stamp"
