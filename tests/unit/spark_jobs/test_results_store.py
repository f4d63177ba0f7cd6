"""The batch job's small objects under a results root (spark_jobs/results_store.py): the same writes and reads in a
local folder and in S3 (moto's in-process S3, as the orchestration tests use)."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from pipeline import layout
from pipeline.settings import load_settings
from spark_jobs import results_store

SETTINGS = load_settings(pipeline_user_id="7e57c0de0005", aws_endpoint_url="", aws_endpoint_url_s3="")


@pytest.fixture(params=["local", "s3a"])
def results_root(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "results")
        return
    with mock_aws():
        client = boto3.client("s3", **SETTINGS.boto3_client_kwargs("s3"))
        client.create_bucket(Bucket=SETTINGS.bucket)
        yield SETTINGS.results_uri


def test_the_newest_objects_come_back_in_name_order_and_a_write_replaces(results_root):
    folder = layout.history_prefix(results_root)
    assert results_store.read_newest(folder, ".json", 5, SETTINGS) == []  # nothing written yet
    for run_id in ("r3", "r1", "r2", "r4"):
        results_store.write_text(
            layout.history_record_path(results_root, run_id), f'"{run_id}"', "application/json", SETTINGS
        )
    results_store.write_text(layout.history_record_path(results_root, "r4"), '"r4 again"', "application/json", SETTINGS)
    results_store.write_text(layout.join(folder, "notes.txt"), "not a record", "text/plain", SETTINGS)
    assert results_store.read_newest(folder, ".json", 2, SETTINGS) == [("r3.json", '"r3"'), ("r4.json", '"r4 again"')]
    assert [name for name, _ in results_store.read_newest(folder, ".json", 10, SETTINGS)] == [
        "r1.json", "r2.json", "r3.json", "r4.json"
    ]  # fmt: skip


def test_an_object_in_s3_carries_its_content_type():
    with mock_aws():
        client = boto3.client("s3", **SETTINGS.boto3_client_kwargs("s3"))
        client.create_bucket(Bucket=SETTINGS.bucket)
        target = results_store.write_text(layout.report_path(SETTINGS.results_uri), "<p>é</p>", "text/html", SETTINGS)
        assert target == f"s3a://{SETTINGS.bucket}/analytics/report.html"
        stored = client.get_object(Bucket=SETTINGS.bucket, Key="analytics/report.html")
        assert stored["ContentType"] == "text/html; charset=utf-8"
        assert stored["Body"].read().decode("utf-8") == "<p>é</p>"
