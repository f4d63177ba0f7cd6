"""The daily batch DAG's task logic: wait for new objects, run the batch job, check its nine results.

The DAG file (airflow/dags/pinterest_dag.py) only wires these functions into operators (docs/conventions.md: DAG files
declare, modules do). Nothing here imports Airflow, so every function is tested with the project's own venv; the
Airflow venv runs the same code because the repo is installed there editable (services/airflow/setup.sh).

Locally the batch job runs through the project venv's `spark-submit` (Airflow's venv has no pyspark on purpose,
docs/architecture.md); with `PIPELINE_TARGET=aws` the DAG submits the uploaded job package to `BATCH_RUNNER` (EMR
Serverless or Databricks) with the requests of `orchestration.runners`.
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline import layout
from pipeline.settings import REPO_ROOT, Settings, get_settings

log = logging.getLogger(__name__)

BATCH_JOB_FILE = REPO_ROOT / "spark_jobs" / "batch.py"
BATCH_JOB_TIMEOUT = timedelta(hours=2)
# The streaming tables' OPTIMIZE and VACUUM, run by the maintenance DAG (airflow/dags/maintenance_dag.py).
DELTA_MAINTENANCE_FILE = REPO_ROOT / "spark_jobs" / "maintenance.py"
DELTA_MAINTENANCE_TIMEOUT = timedelta(hours=1)


class MissingResultsError(RuntimeError):
    """The batch job finished but some of the nine query results are not in the bucket."""


def default_args(settings: Settings) -> dict[str, Any]:
    """Task defaults for the DAG: retries and their delay come from settings, not from literals in the DAG."""
    return {
        "owner": "pipeline",
        "retries": settings.airflow_retries,
        "retry_delay": timedelta(seconds=settings.airflow_retry_delay_seconds),
    }


def daily_dag_kwargs(settings: Settings, dag_id: str, description: str, kind: str) -> dict[str, Any]:
    """What both DAGs share: daily, no catch-up, one run at a time, retries from settings, tagged with their kind
    and target."""
    return {
        "dag_id": dag_id,
        "description": description,
        "schedule": "@daily",
        "start_date": datetime(2026, 1, 1),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": default_args(settings),
        "tags": ["pinterest", kind, settings.pipeline_target],
    }


def _s3_client(settings: Settings):
    import boto3

    return boto3.client("s3", **settings.boto3_client_kwargs("s3"))


def _objects(client, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


# --- wait for new objects ------------------------------------------------------------------------------------
def new_input_objects(settings: Settings, since: datetime | None, client=None) -> list[str]:
    """Keys of the sink's JSON objects under `topics/<id>.*` modified at or after `since` (all when None)."""
    client = client or _s3_client(settings)
    topic_prefixes = tuple(layout.topic_prefix(topic) for topic in settings.topics)
    return [
        item["Key"]
        for item in _objects(client, settings.bucket, layout.TOPICS_PREFIX)
        if item["Key"].startswith(topic_prefixes)
        and item["Key"].endswith(layout.OBJECT_SUFFIX)
        and (since is None or item["LastModified"] >= since)
    ]


def wait_for_new_objects(prev_start_date_success: datetime | None = None) -> bool:
    """PythonSensor callable: true once objects arrived since the last successful run began (any, on a first run)."""
    settings = get_settings()
    # Airflow passes a lazy proxy: `is None` is never true, but its truth value and isoformat() are the real ones.
    since = datetime.fromisoformat(prev_start_date_success.isoformat()) if prev_start_date_success else None
    keys = new_input_objects(settings, since)
    when = since.isoformat() if since else "the beginning (no successful run yet)"
    log.info("%d new object(s) in s3://%s/%s since %s", len(keys), settings.bucket, layout.TOPICS_PREFIX, when)
    return bool(keys)


# --- run the batch job locally -------------------------------------------------------------------------------
def spark_submit_path(settings: Settings) -> Path:
    if settings.spark_submit:
        return Path(settings.spark_submit)
    return settings.tools_dir / "venv" / "bin" / "spark-submit"


def spark_python(settings: Settings) -> Path:
    return spark_submit_path(settings).parent / "python"


def spark_submit_args(settings: Settings, env: Mapping[str, str]) -> list[str]:
    """The job's own spark-submit arguments (its fetched jars), asked from spark_jobs.session in the Spark venv."""
    result = subprocess.run(
        [str(spark_python(settings)), "-m", "spark_jobs.session", "--submit-args"],
        env=dict(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"python -m spark_jobs.session --submit-args failed: {result.stderr.strip()[-2000:]}")
    return shlex.split(result.stdout)


def spark_submit_command(settings: Settings, submit_args: list[str], job: Path = BATCH_JOB_FILE) -> list[str]:
    return [str(spark_submit_path(settings)), *submit_args, str(job)]


def spark_submit_env(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """The job's environment: the Spark venv's python for driver and workers, not the Airflow venv's."""
    venv_bin = spark_submit_path(settings).parent
    python = str(spark_python(settings))
    env = {key: value for key, value in base.items() if key not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")}
    env.update(
        PYSPARK_PYTHON=python,
        PYSPARK_DRIVER_PYTHON=python,
        SPARK_LOCAL_IP=base.get("SPARK_LOCAL_IP", settings.bind_host),
        PATH=os.pathsep.join([str(venv_bin), base.get("PATH", os.defpath)]),
    )
    return env


def run_command(command: list[str], env: Mapping[str, str], cwd: Path = REPO_ROOT) -> None:
    """Run `command`, streaming its output into the task log; raise with the exit code on failure."""
    log.info("running: %s", " ".join(command))
    with subprocess.Popen(
        command, env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            log.info("%s", line.rstrip())
    if process.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} exited with code {process.returncode}; see the output above")


def run_local_spark_job(job: Path) -> None:
    """Local target: spark-submit `job` with the project venv (its defaults come from settings)."""
    settings = get_settings()
    submit = spark_submit_path(settings)
    if not submit.exists():
        raise FileNotFoundError(f"{submit} not found: run `make setup` (or set SPARK_SUBMIT in .env)")
    env = spark_submit_env(settings, os.environ)
    run_command(spark_submit_command(settings, spark_submit_args(settings, env), job), env)


def run_local_batch_job() -> None:
    """Local target: the batch job (its defaults read the bucket from settings)."""
    run_local_spark_job(BATCH_JOB_FILE)


def run_local_delta_maintenance() -> None:
    """Local target: OPTIMIZE and VACUUM the streaming job's Delta tables (spark_jobs/maintenance.py)."""
    run_local_spark_job(DELTA_MAINTENANCE_FILE)


# --- check the results ---------------------------------------------------------------------------------------
def _parquet_rows(client, bucket: str, key: str) -> int:
    import pyarrow.parquet as pq

    data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows


def result_row_counts(settings: Settings, client=None) -> dict[str, int | None]:
    """Rows per query result (from the Parquet footers), None for a query with no Parquet file."""
    client = client or _s3_client(settings)
    counts: dict[str, int | None] = {}
    for name in layout.QUERY_NAMES:
        parts = [
            item["Key"]
            for item in _objects(client, settings.bucket, layout.result_prefix(name))
            if item["Key"].endswith(".parquet")
        ]
        if not parts:
            counts[name] = None
            continue
        counts[name] = sum(_parquet_rows(client, settings.bucket, key) for key in parts)
    return counts


def check_results() -> dict[str, int]:
    """Fail unless all nine results are in the bucket; log (and return, as XCom) each one's row count."""
    settings = get_settings()
    counts = result_row_counts(settings)
    location = f"s3://{settings.bucket}/{layout.RESULTS_PREFIX}"
    for name, rows in counts.items():
        log.info("%-46s %s", name, "MISSING" if rows is None else f"{rows} rows")
    missing = [name for name, rows in counts.items() if rows is None]
    if missing:
        raise MissingResultsError(
            f"{len(missing)} of {len(layout.QUERY_NAMES)} results missing in {location}: {missing}"
        )
    empty = [name for name, rows in counts.items() if rows == 0]
    if empty:
        log.warning("results with no rows (is the input too small?): %s", ", ".join(empty))
    log.info("all %d results present in %s", len(layout.QUERY_NAMES), location)
    return {name: rows for name, rows in counts.items() if rows is not None}
