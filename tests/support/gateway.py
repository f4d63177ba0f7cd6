"""Settings for an integration test of the API Gateway front door on the local stack: a test user of its own and a
temporary state folder (the user's invoke URL and key are never touched), LocalStack checked first; and reading back
a record the gateway put into Kinesis."""

from __future__ import annotations

import json

import httpx
import pytest

from pipeline.settings import Settings, load_settings


def gateway_test_settings(tmp_path_factory: pytest.TempPathFactory, user: str, **overrides: object) -> Settings:
    settings = load_settings(pipeline_user_id=user, state_dir=tmp_path_factory.mktemp(f"state-{user}"), **overrides)
    if settings.pipeline_target != "local":
        pytest.skip("gateway integration tests run against the local stack (PIPELINE_TARGET=local)")
    try:
        httpx.get(f"{settings.aws_endpoint_url}/_localstack/health", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        pytest.fail(f"LocalStack not answering at {settings.aws_endpoint_url} ({error}); run `make up` first")
    return settings


def read_back(kinesis, stream: str, shard_id: str, sequence_number: str) -> dict:
    """The record Kinesis stored at this position, with Data parsed as JSON."""
    iterator = kinesis.get_shard_iterator(
        StreamName=stream,
        ShardId=shard_id,
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=sequence_number,
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator, Limit=1)["Records"]
    assert records and records[0]["SequenceNumber"] == sequence_number
    return {"data": json.loads(records[0]["Data"]), "partition_key": records[0]["PartitionKey"]}
