"""Fixtures of the orchestration tests: settings of a test user with its own state folder, and moto's in-process S3
with the user's bucket."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from pipeline.settings import Settings, load_settings

USER_ID = "7e57c0de0001"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # No endpoint: moto intercepts the plain AWS endpoints.
    return load_settings(
        pipeline_user_id=USER_ID,
        state_dir=tmp_path / "state",
        aws_endpoint_url="",
        aws_endpoint_url_s3="",
        spark_submit=None,
        s3_topics_retention_days=30,
        airflow_log_retention_days=7,
    )


@pytest.fixture
def s3(settings: Settings):
    with mock_aws():
        client = boto3.client("s3", **settings.boto3_client_kwargs("s3"))
        client.create_bucket(Bucket=settings.bucket)
        yield client
