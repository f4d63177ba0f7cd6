"""The batch job on the running stack: seed -> emulator -> REST proxy -> Kafka -> Connect -> S3 -> `python -m
spark_jobs.batch` over s3a -> results read back from the bucket and compared with DuckDB over the same objects.

Uses its own user id (topics, bucket, connector) and its own MySQL database, so no user data is touched; the id's
topics keep growing across runs, which the comparison handles by reading whatever the bucket holds.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import boto3
import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline import layout, run_history
from pipeline.settings import TABLES, load_settings
from services.provision.kafka import provision_connector, provision_topics
from services.provision.s3 import provision_bucket
from spark_jobs.queries import QUERIES
from tests.support import duckdb_reference

BATCH_USER_ID = "7e57c0deba7c"
DATABASE = "pinterest_data_batch_test"
POSTS = 150


def _lines_in_bucket(client, bucket: str, prefix: str) -> int:
    """Lines in the objects under `prefix`. An object listed while the sink was still writing it can be gone by the
    time it is read (the store lists its temporary file): it is skipped here and counted by the next poll."""
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            try:
                total += client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().count(b"\n")
            except client.exceptions.NoSuchKey:
                continue
    return total


@pytest.fixture(scope="module")
def landed(stack, run_module):
    """POSTS posts sent through the real ingestion path; returns (settings, s3 client, lines per table in S3)."""
    settings = load_settings(pipeline_user_id=BATCH_USER_ID, mysql_database=DATABASE)
    stack("mysql", "kafka", "rest_proxy", "connect", "s3")
    for step in (provision_bucket, provision_topics, provision_connector):
        step(settings, False)
    client = boto3.client("s3", **settings.boto3_client_kwargs("s3"))
    prefixes = {t: f"topics/{settings.topic(t)}/" for t in TABLES}
    before = {t: _lines_in_bucket(client, settings.bucket, p) for t, p in prefixes.items()}
    env = {"PIPELINE_USER_ID": BATCH_USER_ID, "MYSQL_DATABASE": DATABASE}
    seeded = run_module("services.mysql.seed", "--rows", "500", "--seed", "9", env=env)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    sent = run_module("emulator", "--count", str(POSTS), "--burst", "--target", "proxy", "--quiet", env=env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    deadline = time.monotonic() + 120
    while True:
        now = {t: _lines_in_bucket(client, settings.bucket, p) for t, p in prefixes.items()}
        if all(now[t] - before[t] >= POSTS for t in TABLES):
            return settings, client, now
        if time.monotonic() > deadline:
            pytest.fail(f"records did not reach S3 within 120 s: before {before}, now {now}")
        time.sleep(3)


@pytest.fixture(scope="module")
def batch_run(landed, run_module):
    settings, client, lines = landed
    result = run_module(
        "spark_jobs.batch", "--master", "local[2]", env={"PIPELINE_USER_ID": BATCH_USER_ID}, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return settings, client, lines, result.stdout


def _download_topics(settings, client, folder: Path) -> None:
    for table in TABLES:
        prefix = f"topics/{settings.topic(table)}/"
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                target = folder / item["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(settings.bucket, item["Key"], str(target))


def _read_result(settings, client, name: str):
    keys = [
        item["Key"]
        for item in client.list_objects_v2(Bucket=settings.bucket, Prefix=f"analytics/{name}/").get("Contents", [])
        if item["Key"].endswith(".parquet")
    ]
    assert len(keys) == 1, keys  # overwrite mode: one part file, whatever ran before
    return pq.read_table(io.BytesIO(client.get_object(Bucket=settings.bucket, Key=keys[0])["Body"].read()))


def test_batch_results_in_the_bucket_match_duckdb_over_the_same_objects(batch_run, tmp_path):
    settings, client, lines, stdout = batch_run
    for table in TABLES:
        assert f"{table:<5} read {lines[table]:>9}" in stdout, stdout
    _download_topics(settings, client, tmp_path)
    connection = duckdb.connect()
    duckdb_reference.tables(
        connection, {t: f"{tmp_path}/topics/{settings.topic(t)}/partition=*/*.json" for t in TABLES}
    )
    for name in QUERIES:
        table = _read_result(settings, client, name)
        expected = connection.sql(duckdb_reference.QUERIES[name])
        assert table.column_names == expected.columns, name
        assert [tuple(row.values()) for row in table.to_pylist()] == expected.fetchall(), name


def test_report_is_uploaded_as_html(batch_run):
    settings, client, _, _ = batch_run
    report = client.get_object(Bucket=settings.bucket, Key="analytics/report.html")
    assert report["ContentType"].startswith("text/html")
    page = report["Body"].read().decode()
    assert all(f'id="{name}"' in page for name in QUERIES)


def test_run_history_quarantine_summary_and_report_sections_are_in_the_bucket(batch_run):
    """Issue 20: the run's history object and the quarantine summary next to the results, and the report's run
    sections; this user id has no streaming tables, so the streaming section says so."""
    settings, client, _, _ = batch_run
    history = client.list_objects_v2(Bucket=settings.bucket, Prefix=f"{layout.RESULTS_DIR}/{layout.HISTORY_DIR}/")
    keys = sorted(item["Key"] for item in history.get("Contents", []))
    assert keys, "no run record under analytics/history/"
    newest = client.get_object(Bucket=settings.bucket, Key=keys[-1])
    record = run_history.parse_run_record(newest["Body"].read().decode(), keys[-1])
    assert newest["ContentType"].startswith("application/json")
    summary_key = layout.quarantine_summary_path(layout.RESULTS_DIR)
    summary = run_history.parse_quarantine_summary(
        client.get_object(Bucket=settings.bucket, Key=summary_key)["Body"].read().decode()
    )
    assert summary["run_id"] == record["run_id"]
    for table in TABLES:
        assert summary["tables"][table]["quarantined"] == record["tables"][table]["quarantined"], table
    page = client.get_object(Bucket=settings.bucket, Key=layout.report_path(layout.RESULTS_DIR))["Body"].read().decode()
    assert record["run_id"] in page.split('<section id="history">')[1]
    assert "No streaming tables yet under " + settings.warehouse_uri in page
    assert '<section id="quarantine">' in page
