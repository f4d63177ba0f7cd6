"""The `bucket` provisioning step against moto's in-process AWS: us-east-1 takes no LocationConstraint, every other
region needs one (real S3 rejects both mistakes, and so does moto), and a second run changes nothing."""

from __future__ import annotations

import os

import boto3
import pytest
from moto import mock_aws

from pipeline.settings import load_settings
from services.provision.s3 import create_bucket_kwargs, provision_bucket

USER_ID = "7e57c0de0001"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path):
    for name in list(os.environ):
        if name.startswith(("AWS_", "PIPELINE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIPELINE_ENV_FILE", os.devnull)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with mock_aws():
        yield


def test_create_bucket_arguments_follow_the_region_rule():
    assert create_bucket_kwargs("b", "us-east-1") == {"Bucket": "b"}
    assert create_bucket_kwargs("b", "eu-west-1") == {
        "Bucket": "b",
        "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"},
    }


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_creates_the_bucket_in_the_region_once(aws, region):
    settings = load_settings(pipeline_target="aws", pipeline_user_id=USER_ID, aws_region=region)
    assert settings.s3_endpoint_url is None
    first = provision_bucket(settings, dry_run=False)
    second = provision_bucket(settings, dry_run=False)
    assert first[0].startswith(f"created bucket user-{USER_ID}-bucket")
    assert "already exists" in second[0]
    location = boto3.client("s3", region_name=region).get_bucket_location(Bucket=settings.bucket)
    assert (location["LocationConstraint"] or "us-east-1") == region


def test_dry_run_creates_nothing(aws):
    settings = load_settings(pipeline_target="aws", pipeline_user_id=USER_ID)
    lines = provision_bucket(settings, dry_run=True)
    assert lines == [f"would ensure bucket user-{USER_ID}-bucket exists at AWS S3 in us-east-1 (region us-east-1)"]
    assert boto3.client("s3", region_name="us-east-1").list_buckets()["Buckets"] == []
