"""End to end through Airflow: generated sink files in the bucket -> `airflow dags test` (the `make dag-test`
command) -> the sensor sees them, spark-submit runs the batch job, the check finds all nine results.

Uses its own user id (bucket `user-7e57c0de0a1f-bucket`), so it never touches a user's data or other tests' files.
Needs the S3 store and Airflow running, the Spark jars fetched; takes a few minutes (a real Spark job).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import boto3
import pytest

from orchestration import tasks
from pipeline.settings import Settings, load_settings
from tests.support.synthetic import write_topic_files

DAG_RUN_USER_ID = "7e57c0de0a1f"


@pytest.fixture(scope="module")
def run_settings(stack) -> Settings:
    stack("s3", "airflow-api", "airflow-scheduler", "airflow-dag-processor")
    return load_settings(pipeline_user_id=DAG_RUN_USER_ID)


@pytest.fixture(scope="module")
def fresh_bucket(run_settings: Settings):
    """The test user's bucket holding only freshly generated sink files (500 posts)."""
    client = boto3.client("s3", **run_settings.boto3_client_kwargs("s3"))
    bucket = run_settings.bucket
    if bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
    else:
        client.create_bucket(Bucket=bucket)
    with tempfile.TemporaryDirectory() as folder:
        write_topic_files(Path(folder), run_settings, posts=500, seed=11)
        for path in Path(folder).rglob("*.json"):
            client.upload_file(str(path), bucket, path.relative_to(folder).as_posix())
    return client


def test_dag_test_runs_the_batch_job_and_finds_all_nine_results(run_module, run_settings, fresh_bucket) -> None:
    assert all(count is None for count in tasks.result_row_counts(run_settings, fresh_bucket).values())
    result = run_module(
        "services.airflow",
        "dag-test",
        env={
            "PIPELINE_USER_ID": DAG_RUN_USER_ID,
            "AIRFLOW_RETRIES": "0",
            "AIRFLOW_SENSOR_TIMEOUT_SECONDS": "120",
        },
        timeout=1800,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert f"dag_id={DAG_RUN_USER_ID}_dag" in output and "state=success" in output, output[-5000:]
    assert "all 9 results present" in output
    counts = tasks.result_row_counts(run_settings, fresh_bucket)
    assert all(rows is not None for rows in counts.values()), counts
    assert counts["country_with_top_user"] == 1
    assert counts["popular_category_by_country"] > 0
