"""Provisioning step `bucket`: create the user's bucket (`user-<id>-bucket`) idempotently, locally and on AWS.

On AWS (`PIPELINE_TARGET=aws`) it also tags the bucket (`settings.resource_tags`, what teardown looks for) and sets
the bucket's lifecycle rule that expires the sink's objects under
`topics/` after `S3_TOPICS_RETENTION_DAYS` (0: no rule). Only the rule with our id is replaced; other rules stay.
Locally the S3 store implements no lifecycle rules (S3Proxy answers 501), so the maintenance DAG prunes instead
(orchestration/maintenance.py).

The same boto3 calls run against the local S3 store (S3Proxy) and a real account; only the endpoint differs, and
it comes from settings. AWS quirk handled here: us-east-1 rejects a `LocationConstraint` (it is the default
region), every other region requires one.
"""

from __future__ import annotations

import boto3
from botocore.exceptions import ClientError

from pipeline import layout
from pipeline.settings import Settings
from services.provision import teardown

# Re-creating one's own bucket: us-east-1 answers 200, other regions and S3-compatible stores this code.
ALREADY_OURS = {"BucketAlreadyOwnedByYou"}
LIFECYCLE_RULE_ID = "pipeline-expire-topics"
DELETE_BATCH = 1000  # DeleteObjects' limit


def create_bucket_kwargs(bucket: str, region: str) -> dict[str, object]:
    """CreateBucket arguments for `region`: no configuration in us-east-1, a LocationConstraint elsewhere."""
    kwargs: dict[str, object] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    return kwargs


def _bucket_exists(client, bucket: str) -> bool:
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404 or error.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
            return False
        if status == 403:
            raise SystemExit(
                f"bucket {bucket} exists but this account cannot access it (403). Bucket names are global on AWS: "
                "choose another PIPELINE_USER_ID or use credentials of the account that owns it."
            ) from None
        raise
    return True


def topics_lifecycle_rule(settings: Settings) -> dict[str, object]:
    """The bucket's rule that expires the sink's objects (and aborts uploads left unfinished) under `topics/`."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Filter": {"Prefix": layout.TOPICS_PREFIX},
        "Status": "Enabled",
        "Expiration": {"Days": settings.s3_topics_retention_days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
    }


def _current_rules(client, bucket: str) -> list[dict]:
    try:
        return client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise


def provision_lifecycle(settings: Settings, client, dry_run: bool) -> list[str]:
    """AWS target: ensure our rule (replace only the rule with our id); retention 0 removes it."""
    if settings.pipeline_target != "aws":
        return []
    days = settings.s3_topics_retention_days
    what = f"lifecycle rule {LIFECYCLE_RULE_ID}: expire {layout.TOPICS_PREFIX} after {days} days"
    if dry_run:
        return [f"would set {what}" if days else f"would remove lifecycle rule {LIFECYCLE_RULE_ID}"]
    rules = _current_rules(client, settings.bucket)
    others = [rule for rule in rules if rule.get("ID") != LIFECYCLE_RULE_ID]
    wanted = [*others, topics_lifecycle_rule(settings)] if days else others
    if rules == wanted:
        return [f"{what} already set" if days else f"no lifecycle rule {LIFECYCLE_RULE_ID}"]
    if wanted:
        client.put_bucket_lifecycle_configuration(Bucket=settings.bucket, LifecycleConfiguration={"Rules": wanted})
    else:
        client.delete_bucket_lifecycle(Bucket=settings.bucket)
    return [f"set {what}" if days else f"removed lifecycle rule {LIFECYCLE_RULE_ID}"]


def provision_tags(settings: Settings, client, dry_run: bool) -> list[str]:
    """AWS target: add the project's tags to the bucket's own (teardown deletes only a bucket that has them)."""
    if settings.pipeline_target != "aws":
        return []
    if dry_run:
        return [f"would tag the bucket {settings.resource_tags}"]
    current = bucket_tags(client, settings.bucket)
    if current.items() >= settings.resource_tags.items():
        return []
    tag_set = [{"Key": key, "Value": value} for key, value in (current | settings.resource_tags).items()]
    client.put_bucket_tagging(Bucket=settings.bucket, Tagging={"TagSet": tag_set})
    return [f"tagged the bucket {settings.resource_tags}"]


def bucket_tags(client, bucket: str) -> dict[str, str]:
    try:
        tag_set = client.get_bucket_tagging(Bucket=bucket)["TagSet"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchTagSet":
            return {}
        raise
    return {tag["Key"]: tag["Value"] for tag in tag_set}


def deprovision_bucket(settings: Settings, dry_run: bool) -> list[str]:
    """Delete the bucket, with every object version in it, if it carries the project's tags (with `dry_run`, list
    it and what it holds)."""
    client = boto3.client("s3", **settings.boto3_client_kwargs("s3"))
    if not _bucket_exists(client, settings.bucket):
        return []
    versions = [
        {"Key": item["Key"], "VersionId": item["VersionId"]}
        for page in client.get_paginator("list_object_versions").paginate(Bucket=settings.bucket)
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
    ]

    def delete() -> None:
        for start in range(0, len(versions), DELETE_BATCH):
            batch = versions[start : start + DELETE_BATCH]
            client.delete_objects(Bucket=settings.bucket, Delete={"Objects": batch, "Quiet": True})
        client.delete_bucket(Bucket=settings.bucket)

    what = f"S3 bucket {settings.bucket} and the {len(versions)} object version(s) in it"
    return teardown.sweep(settings, dry_run, [teardown.Found(what, bucket_tags(client, settings.bucket), delete)])


def provision_bucket(settings: Settings, dry_run: bool) -> list[str]:
    """Create `settings.bucket` if it does not exist, and on AWS its lifecycle rule; return what was done (or would
    be done)."""
    bucket = settings.bucket
    endpoint = settings.s3_endpoint_url or f"AWS S3 in {settings.aws_region}"
    if dry_run:
        return [
            f"would ensure bucket {bucket} exists at {endpoint} (region {settings.aws_region})",
            *provision_lifecycle(settings, None, dry_run=True),
            *provision_tags(settings, None, dry_run=True),
        ]
    client = boto3.client("s3", **settings.boto3_client_kwargs("s3"))
    if _bucket_exists(client, bucket):
        return [
            f"bucket {bucket} already exists at {endpoint}",
            *provision_lifecycle(settings, client, False),
            *provision_tags(settings, client, False),
        ]
    try:
        client.create_bucket(**create_bucket_kwargs(bucket, settings.aws_region))
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code in ALREADY_OURS:  # created concurrently by another provisioning run
            return [f"bucket {bucket} already exists at {endpoint}"]
        if code == "BucketAlreadyExists":
            raise SystemExit(
                f"bucket name {bucket} is taken by another AWS account (names are global); "
                "choose another PIPELINE_USER_ID"
            ) from None
        raise
    client.get_waiter("bucket_exists").wait(Bucket=bucket, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    return [
        f"created bucket {bucket} at {endpoint} (region {settings.aws_region})",
        *provision_lifecycle(settings, client, False),
        *provision_tags(settings, client, False),
    ]
