"""The `bucket` provisioning step against moto's in-process AWS: us-east-1 takes no LocationConstraint, every other
region needs one (real S3 rejects both mistakes, and so does moto), and a second run changes nothing."""

from __future__ import annotations

import os

import boto3
import pytest
from moto import mock_aws

from pipeline.settings import load_settings
from services.provision.s3 import LIFECYCLE_RULE_ID, create_bucket_kwargs, provision_bucket
from tests.support.aws import fake_account

USER_ID = "7e57c0de0001"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path):
    fake_account(monkeypatch, tmp_path, ("AWS_", "PIPELINE_"))
    monkeypatch.setenv("PIPELINE_ENV_FILE", os.devnull)
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
    assert lines == [
        f"would ensure bucket user-{USER_ID}-bucket exists at AWS S3 in us-east-1 (region us-east-1)",
        "would set lifecycle rule pipeline-expire-topics: expire topics/ after 90 days",
        f"would tag the bucket {{'project': 'pinterest-pipeline', 'pipeline-user-id': '{USER_ID}'}}",
    ]
    assert boto3.client("s3", region_name="us-east-1").list_buckets()["Buckets"] == []


def test_on_aws_the_bucket_expires_the_sinks_objects_by_a_lifecycle_rule_and_keeps_other_rules(aws):
    settings = load_settings(pipeline_target="aws", pipeline_user_id=USER_ID, s3_topics_retention_days=30)
    client = boto3.client("s3", region_name="us-east-1")
    assert provision_bucket(settings, dry_run=False)[1] == (
        f"set lifecycle rule {LIFECYCLE_RULE_ID}: expire topics/ after 30 days"
    )
    theirs = {"ID": "users-own", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 1}}
    ours = client.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"]
    client.put_bucket_lifecycle_configuration(Bucket=settings.bucket, LifecycleConfiguration={"Rules": [theirs, *ours]})
    provision_bucket(settings, dry_run=False)  # again: converges, whatever the store's normal form of a rule
    rules = {rule["ID"]: rule for rule in client.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"]}
    assert set(rules) == {"users-own", LIFECYCLE_RULE_ID}
    assert rules[LIFECYCLE_RULE_ID]["Filter"] == {"Prefix": "topics/"}
    assert rules[LIFECYCLE_RULE_ID]["Expiration"] == {"Days": 30}

    keep_all = load_settings(pipeline_target="aws", pipeline_user_id=USER_ID, s3_topics_retention_days=0)
    assert provision_bucket(keep_all, dry_run=False)[1] == f"removed lifecycle rule {LIFECYCLE_RULE_ID}"
    remaining = client.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"]
    assert [rule["ID"] for rule in remaining] == ["users-own"]


def test_locally_no_lifecycle_rule_is_set(aws):
    # The local S3 store answers 501 to lifecycle calls: the maintenance DAG prunes instead.
    settings = load_settings(pipeline_user_id=USER_ID, aws_endpoint_url_s3="http://127.0.0.1:1")
    assert len(provision_bucket(settings, dry_run=True)) == 1
