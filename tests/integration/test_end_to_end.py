"""End to end as a user runs it, for a dedicated user id: seed -> `make provision` -> the emulator through API
Gateway (batch: gateway -> REST proxy -> Kafka -> Connect -> S3; stream: gateway -> Kinesis) -> the audit
(`make verify`) and a read-back of every object and every Kinesis record, compared with the source rows."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from emulator.sampling import draws
from pipeline.layout import parse_object_key
from pipeline.settings import TABLES, load_settings
from tests.support.kafka import end_offsets

USER = "7e57c0dee2e0"
DATABASE = "pinterest_data_e2e"
ROWS = 500
POSTS = 120
SEED = 100


@pytest.fixture(scope="module")
def e2e(stack, run_module, tmp_path_factory):
    stack("mysql", "kafka", "rest_proxy", "connect", "s3", "localstack")
    state = tmp_path_factory.mktemp("e2e-state")
    env = {"PIPELINE_USER_ID": USER, "MYSQL_DATABASE": DATABASE, "STATE_DIR": str(state)}
    result = run_module("services.mysql.seed", "--rows", str(ROWS), "--seed", "9", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_module("services.provision", env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    settings = load_settings(pipeline_user_id=USER, mysql_database=DATABASE, state_dir=state)
    assert settings.resolved_invoke_url(), "provisioning stored no invoke URL"
    return settings, env


def source_rows(settings):
    from services.mysql import seed

    expected = {}
    for pin, geo, user in seed.generate(ROWS, 9):
        expected[pin[0]] = {
            "pin": dict(zip(seed.PIN_COLUMNS, pin, strict=True)),
            "geo": dict(zip(seed.GEO_COLUMNS, geo, strict=True)),
            "user": dict(zip(seed.USER_COLUMNS, user, strict=True)),
        }
    return expected


def key_of(table, row):
    return row["index"] if table == "pin" else row["ind"]


def test_batch_path_through_the_gateway_lands_in_s3_exactly_once(e2e, run_module):
    settings, env = e2e
    # A re-run on the same stack finds the earlier runs' records in the user's topics and bucket: the read-back
    # below takes the objects that start at or after where each partition ended before this run.
    before = {table: end_offsets(settings, settings.topic(table)) for table in TABLES}
    result = run_module(
        "emulator", "--mode", "batch", "--target", "gateway", "--count", str(POSTS), "--burst",
        "--batch-size", "20", "--seed", str(SEED), env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "API Gateway" in result.stdout and f"acked {POSTS * 3:,}, failed 0" in result.stdout

    audit = run_module("services.audit", "--wait", "60", env=env)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    # the ledger audit: every record the emulator had acknowledged is at its offset in S3, once
    assert f"OK: all {POSTS * 3} acknowledged records landed exactly once" in audit.stdout, audit.stdout

    s3 = boto3.client("s3", **settings.boto3_client_kwargs("s3"))
    expected = source_rows(settings)
    sampled = [d.index for d in draws(SEED, ROWS, POSTS)]
    for table in TABLES:
        topic = settings.topic(table)
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=f"topics/{topic}/")
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        assert keys, f"no objects for {topic}"
        values = []
        for key in keys:
            parsed = parse_object_key(key)
            assert parsed is not None and parsed[0] == topic, key
            if parsed[2] < before[table].get(parsed[1], 0):
                continue
            body = s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read().decode()
            lines = body.splitlines()
            assert all(line == json.dumps(json.loads(line), separators=(",", ":"), ensure_ascii=False)
                       or line == json.dumps(json.loads(line), separators=(",", ":")) for line in lines)  # fmt: skip
            values += [json.loads(line) for line in lines]
        assert sorted(key_of(table, v) for v in values) == sorted(sampled)
        for value in values:
            assert value == expected[key_of(table, value)][table]


def test_stream_path_through_the_gateway_lands_in_kinesis(e2e, run_module):
    settings, env = e2e
    posts = 40
    started = time.time()
    result = run_module("emulator", "--mode", "stream", "--count", str(posts), "--rate", "50", "--seed", "7", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"acked {posts * 3:,}, failed 0" in result.stdout

    kinesis = boto3.client("kinesis", **settings.boto3_client_kwargs("kinesis"))
    expected = source_rows(settings)
    sampled = sorted(d.index for d in draws(7, ROWS, posts))
    for table in TABLES:
        stream = settings.stream(table)
        records = []
        for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
            iterator = kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="AT_TIMESTAMP",
                Timestamp=started - 5,
            )["ShardIterator"]  # fmt: skip
            while iterator:
                page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
                records += page["Records"]
                if not page["Records"] or page.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = page.get("NextShardIterator")
        rows = [json.loads(r["Data"]) for r in records]
        assert sorted(key_of(table, r) for r in rows) == sampled, stream
        for row in rows:
            assert row == expected[key_of(table, row)][table]
        assert {r["PartitionKey"] for r in records} == {str(k) for k in sampled}
