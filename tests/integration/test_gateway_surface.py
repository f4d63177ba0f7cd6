"""The aws target's default gateway (`API_SURFACE=emulator`), executed by the running stack's LocalStack: the
emulator's routes work (produce to a named topic, PutRecord/PutRecords with partition keys that need escaping), and
nothing else of the REST proxy or Kinesis is routed. Also the `topics` step's teardown against the local broker:
it deletes this user's three topics and no other.

Uses its own user ids and a temporary state folder, so the user's invoke URL and data are never touched."""

from __future__ import annotations

import json

import boto3
import httpx
import pytest
from kafka import KafkaAdminClient

from pipeline.kafka_clients import kafka_python_config
from services.provision import aws
from services.provision.kafka import deprovision_topics, provision_topics
from tests.support.gateway import gateway_test_settings, read_back

pytestmark = pytest.mark.integration

SURFACE_USER = "7e57c0de0003"
TEARDOWN_USER = "7e57c0de0004"
NEIGHBOUR_USER = "7e57c0de0005"
KEYS = ['say "hi"', "it's", "back\\slash", 'x", "StreamName": "other']


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    settings = gateway_test_settings(tmp_path_factory, SURFACE_USER, api_surface="emulator")
    aws.provision_streams(settings, dry_run=False)
    provision_topics(settings, dry_run=False)
    aws.provision_api(settings, dry_run=False)
    yield settings, settings.resolved_invoke_url()
    apigw = boto3.client("apigateway", **settings.boto3_client_kwargs("apigateway"))
    for api in apigw.get_rest_apis(limit=500)["items"]:
        if api["name"] == settings.api_name:
            apigw.delete_rest_api(restApiId=api["id"])
    aws.delete_streams(settings, settings.streams)


def test_the_emulators_routes_work(gateway):
    settings, url = gateway
    produced = httpx.post(
        f"{url}/topics/{settings.topic('pin')}",
        content=json.dumps({"records": [{"value": {"ind": 1}}]}),
        headers={"Content-Type": "application/vnd.kafka.json.v2+json"},
        timeout=30,
    )
    assert produced.status_code == 200, produced.text
    assert produced.json()["offsets"][0]["error_code"] is None

    kinesis = boto3.client("kinesis", **settings.boto3_client_kwargs("kinesis"))
    stream = settings.stream("geo")
    for key in KEYS:
        one = httpx.put(f"{url}/streams/{stream}/record", json={"Data": {"ind": 1}, "PartitionKey": key}, timeout=30)
        assert one.status_code == 200, one.text
        many = httpx.put(
            f"{url}/streams/{stream}/records",
            json={"records": [{"data": {"ind": 2}, "partition-key": key}]},
            timeout=30,
        )
        assert many.status_code == 200 and many.json()["FailedRecordCount"] == 0, many.text
        for shard_id, sequence in [(one.json()["ShardId"], one.json()["SequenceNumber"])] + [
            (r["ShardId"], r["SequenceNumber"]) for r in many.json()["Records"]
        ]:
            assert read_back(kinesis, stream, shard_id, sequence)["partition_key"] == key


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/topics"),
        ("GET", "/topics/{topic}"),
        ("POST", "/topics/{other_topic}"),
        ("POST", "/consumers/group"),
        ("GET", "/streams"),
        ("GET", "/streams/{stream}"),
        ("POST", "/streams/{stream}"),
        ("DELETE", "/streams/{stream}"),
    ],
)
def test_nothing_else_is_routed(gateway, method, path):
    settings, url = gateway
    names = {
        "topic": settings.topic("pin"),
        "other_topic": f"{NEIGHBOUR_USER}.pin",
        "stream": settings.stream("pin"),
    }
    response = httpx.request(method, f"{url}{path.format(**names)}", json={}, timeout=30)
    assert response.status_code in (403, 404), (response.status_code, response.text)


def test_topics_teardown_deletes_this_users_topics_only(tmp_path_factory):
    mine = gateway_test_settings(tmp_path_factory, TEARDOWN_USER)
    neighbour = gateway_test_settings(tmp_path_factory, NEIGHBOUR_USER)
    provision_topics(mine, dry_run=False)
    provision_topics(neighbour, dry_run=False)

    planned = deprovision_topics(mine, dry_run=True)
    assert planned == [f"would delete Kafka topic {topic} (matched by name)" for topic in mine.topics]
    assert deprovision_topics(mine, dry_run=False) == [
        f"deleted Kafka topic {t} (matched by name)" for t in mine.topics
    ]

    admin = KafkaAdminClient(**kafka_python_config(mine, "test-teardown"))
    try:
        remaining = set(admin.list_topics())
    finally:
        admin.close()
    assert not remaining & set(mine.topics)
    assert set(neighbour.topics) <= remaining
    deprovision_topics(neighbour, dry_run=False)
