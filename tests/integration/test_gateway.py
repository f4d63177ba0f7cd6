"""The API Gateway front door against the running stack (LocalStack executing the definition `make provision`
sends to AWS): records PUT through `/streams/...` are read back from Kinesis and equal what was sent, bad input is
a 4xx that writes nothing, `/{proxy+}` reaches the Kafka REST proxy, and the optional API key is enforced.

Uses its own user ids (test streams, topics and API) and a temporary state folder, so the user's invoke URL and
data are never touched."""

from __future__ import annotations

import json

import boto3
import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.kafka_clients import kafka_python_config
from pipeline.settings import TABLES, Settings
from services.provision import aws
from services.provision.kafka import provision_topics
from tests.support.gateway import gateway_test_settings, read_back
from tests.support.kinesis import stream_records

pytestmark = pytest.mark.integration

TEST_USER = "7e57c0de0001"
KEY_TEST_USER = "7e57c0de0002"
GATEWAY_DATABASE = "pinterest_data_gateway"  # a source database of its own for the emulator
ROW = {
    "index": 10794,
    "unique_id": "c4bd2577-a7bb-4409-bb7a-17d5ed7e1cf1",
    "title": 'Café "Nissan" GT-R…',
    "description": "Nissan GT-R. Sick.",
    "follower_count": "26k",
    "downloaded": 1,
    "save_location": "Local save in /data/vehicles",
    "category": "vehicles",
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> tuple[Settings, str]:
    settings = gateway_test_settings(tmp_path_factory, TEST_USER)
    aws.provision_streams(settings, dry_run=False)
    aws.provision_api(settings, dry_run=False)
    url = settings.resolved_invoke_url()
    assert url
    return settings, url


@pytest.fixture(scope="module")
def kinesis(gateway):
    settings, _ = gateway
    return boto3.client("kinesis", **settings.boto3_client_kwargs("kinesis"))


def latest_iterators(kinesis, stream: str) -> list[str]:
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    return [
        kinesis.get_shard_iterator(StreamName=stream, ShardId=s["ShardId"], ShardIteratorType="LATEST")["ShardIterator"]
        for s in shards
    ]


def test_put_record_lands_in_kinesis_unchanged(gateway, kinesis):
    settings, url = gateway
    stream = settings.stream("pin")
    body = {"StreamName": stream, "Data": ROW, "PartitionKey": str(ROW["index"])}
    response = httpx.put(f"{url}/streams/{stream}/record", json=body, timeout=30)
    assert response.status_code == 200, response.text
    stored = read_back(kinesis, stream, response.json()["ShardId"], response.json()["SequenceNumber"])
    assert stored == {"data": ROW, "partition_key": "10794"}


def test_put_records_land_in_kinesis_unchanged(gateway, kinesis):
    settings, url = gateway
    stream = settings.stream("geo")
    # 12 keys: MD5 puts "0".."5" on the same shard of two, so fewer would not show the spread.
    rows = [
        {"ind": i, "country": f"Côte d'Ivoire {i}", "latitude": -45.5 + i, "timestamp": f"2019-01-01 00:00:{i:02d}"}
        for i in range(12)
    ]
    body = {"records": [{"data": row, "partition-key": str(row["ind"])} for row in rows]}
    response = httpx.put(f"{url}/streams/{stream}/records", json=body, timeout=30)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["FailedRecordCount"] == 0
    assert len(result["Records"]) == len(rows)
    stored = [read_back(kinesis, stream, r["ShardId"], r["SequenceNumber"]) for r in result["Records"]]
    assert stored == [{"data": row, "partition_key": str(row["ind"])} for row in rows]
    assert len({r["ShardId"] for r in result["Records"]}) > 1, "partition keys should spread over the shards"


def test_list_and_describe_streams(gateway):
    settings, url = gateway
    listed = httpx.get(f"{url}/streams", timeout=30)
    assert listed.status_code == 200, listed.text
    assert set(settings.streams) <= set(listed.json()["StreamNames"])
    described = httpx.get(f"{url}/streams/{settings.stream('user')}", timeout=30)
    assert described.status_code == 200, described.text
    assert described.json()["StreamDescription"]["StreamStatus"] == "ACTIVE"


@pytest.mark.parametrize(
    ("route", "content", "content_type"),
    [
        ("record", b"this is not json", "application/json"),
        ("record", b'{"Data": {"ind": 1}', "application/json"),
        ("record", json.dumps({"Data": {"ind": 1}}).encode(), "application/json"),
        ("record", json.dumps({"PartitionKey": "1"}).encode(), "application/json"),
        ("record", json.dumps({"Data": None, "PartitionKey": "1"}).encode(), "application/json"),
        ("record", b"ind=1", "text/plain"),
        ("records", json.dumps({"records": [{"data": {"ind": 1}}]}).encode(), "application/json"),
        ("records", json.dumps({"records": []}).encode(), "application/json"),
        ("records", json.dumps([{"data": {"ind": 1}, "partition-key": "1"}]).encode(), "application/json"),
    ],
)
def test_bad_body_is_a_4xx_and_writes_nothing(gateway, kinesis, route, content, content_type):
    settings, url = gateway
    stream = settings.stream("user")
    iterators = latest_iterators(kinesis, stream)
    response = httpx.put(
        f"{url}/streams/{stream}/{route}", content=content, headers={"Content-Type": content_type}, timeout=30
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json().get("message")
    written = [r for it in iterators for r in kinesis.get_records(ShardIterator=it)["Records"]]
    assert written == []


def test_unknown_stream_is_kinesis_error_as_4xx(gateway):
    settings, url = gateway
    missing = f"streaming-{settings.pipeline_user_id}-missing"
    body = {"StreamName": missing, "Data": ROW, "PartitionKey": "1"}
    response = httpx.put(f"{url}/streams/{missing}/record", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["__type"] == "ResourceNotFoundException"
    described = httpx.get(f"{url}/streams/{missing}", timeout=30)
    assert described.status_code == 400
    assert described.json()["__type"] == "ResourceNotFoundException"


def test_reprovisioning_keeps_one_api_and_the_invoke_url(gateway):
    settings, url = gateway
    aws.provision_api(settings, dry_run=False)
    assert settings.resolved_invoke_url() == url
    apigw = boto3.client("apigateway", **settings.boto3_client_kwargs("apigateway"))
    names = [api["name"] for api in apigw.get_rest_apis(limit=500)["items"]]
    assert names.count(settings.api_name) == 1
    assert httpx.get(f"{url}/streams", timeout=30).status_code == 200
    # The overwritten definition still validates bodies (its validator replaced the old one).
    stream = settings.stream("pin")
    rejected = httpx.put(f"{url}/streams/{stream}/record", json={"PartitionKey": "1"}, timeout=30)
    assert rejected.status_code == 400, rejected.text


def test_proxy_route_reaches_the_kafka_rest_proxy(gateway):
    settings, url = gateway
    try:
        httpx.get(f"{settings.rest_proxy_url}/topics", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        pytest.fail(f"REST proxy not answering at {settings.rest_proxy_url} ({error}); run `make up` first")
    provision_topics(settings, dry_run=False)
    topic = settings.topic("pin")

    listed = httpx.get(f"{url}/topics", timeout=30)
    assert listed.status_code == 200, listed.text
    assert topic in listed.json()

    response = httpx.post(
        f"{url}/topics/{topic}",
        content=json.dumps({"records": [{"value": ROW}]}),
        headers={"Content-Type": "application/vnd.kafka.json.v2+json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    (offset,) = response.json()["offsets"]
    assert offset["error_code"] is None

    consumer = KafkaConsumer(**kafka_python_config(settings, "test-gateway"), enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, offset["partition"])
        consumer.assign([partition])
        consumer.seek(partition, offset["offset"])
        batch = consumer.poll(timeout_ms=10000, max_records=1)
        (message,) = batch[partition]
        assert json.loads(message.value) == ROW
    finally:
        consumer.close()

    missing = httpx.post(
        f"{url}/topics/{settings.pipeline_user_id}.missing",
        content=json.dumps({"records": [{"value": ROW}]}),
        headers={"Content-Type": "application/vnd.kafka.json.v2+json"},
        timeout=30,
    )
    assert missing.status_code == 404
    assert missing.json()["error_code"] == 40401


def test_api_key_is_required_when_configured(gateway, tmp_path_factory):
    _, other_users_url = gateway
    settings = gateway_test_settings(tmp_path_factory, KEY_TEST_USER, api_key_required=True)
    apigw = boto3.client("apigateway", **settings.boto3_client_kwargs("apigateway"))
    try:
        aws.provision_api(settings, dry_run=False)
        url = settings.resolved_invoke_url()
        key = settings.resolved_api_key()
        assert key
        assert httpx.get(f"{url}/streams", timeout=30).status_code == 403
        assert httpx.get(f"{url}/streams", headers={"x-api-key": "wrong" * 5}, timeout=30).status_code == 403
        assert httpx.get(f"{url}/streams", headers={"x-api-key": key}, timeout=30).status_code == 200
        unkeyed = httpx.get(f"{url}/topics", timeout=30)
        assert unkeyed.status_code == 403
        assert url != other_users_url
    finally:
        _delete_api(settings, apigw)
    # Another user's API is a different API: deleting this one left it alone.
    assert httpx.get(f"{other_users_url}/streams", timeout=30).status_code == 200


def _delete_api(settings: Settings, apigw) -> None:
    for plan in apigw.get_usage_plans()["items"]:
        if plan["name"] == settings.usage_plan_name:
            stages = [f"{s['apiId']}:{s['stage']}" for s in plan.get("apiStages", [])]
            operations = [{"op": "remove", "path": "/apiStages", "value": stage} for stage in stages]
            if operations:
                apigw.update_usage_plan(usagePlanId=plan["id"], patchOperations=operations)
            apigw.delete_usage_plan(usagePlanId=plan["id"])
    for key in apigw.get_api_keys(nameQuery=settings.api_key_name)["items"]:
        apigw.delete_api_key(apiKey=key["id"])
    for api in apigw.get_rest_apis(limit=500)["items"]:
        if api["name"] == settings.api_name:
            apigw.delete_rest_api(restApiId=api["id"])


def test_single_record_requests_with_8_in_flight_are_all_acknowledged_and_land(gateway, kinesis, run_module):
    """The original pipeline's client sends one record per request: 1,000 posts (3,000 records) through the gateway
    with 8 requests in flight, all acknowledged, none failed, each in its stream."""
    settings, url = gateway
    aws.recreate_streams(settings)
    env = {"API_INVOKE_URL": url, "PIPELINE_USER_ID": TEST_USER, "MYSQL_DATABASE": GATEWAY_DATABASE}
    seeded = run_module("services.mysql.seed", "--rows", "300", "--seed", "7", env=env)
    assert seeded.returncode == 0, seeded.stdout[-2000:] + seeded.stderr[-2000:]
    sent = run_module(
        "emulator", "--mode", "stream", "--count", "1000", "--burst", "--batch-size", "1", "--concurrency", "8",
        "--quiet", env=env,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout[-2000:] + sent.stderr[-2000:]
    assert "acked 3,000, failed 0" in sent.stdout, sent.stdout[-2000:]
    landed = {table: sum(1 for _ in stream_records(kinesis, settings.stream(table))) for table in TABLES}
    assert landed == dict.fromkeys(TABLES, 1000)
