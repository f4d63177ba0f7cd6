"""The REST proxy against the running proxy and broker: produce then read back with kafka-python, every bad-input
case (right 4xx, Confluent body, nothing produced, still serving), the consumer API round trip, v3, and a bounded
schemathesis fuzz run that must find no 5xx.

Each run creates its own topic under the test user id (`7e57c0de0001.rest-proxy-<random>`) and deletes it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from pipeline.kafka_clients import kafka_python_config
from tests.support import SAMPLES_DIR
from tests.support.kafka import end_offsets

JSON_V2 = {"Content-Type": "application/vnd.kafka.json.v2+json"}
BINARY_V2 = {"Content-Type": "application/vnd.kafka.binary.v2+json"}
V2 = {"Content-Type": "application/vnd.kafka.v2+json"}
PARTITIONS = 3


@pytest.fixture(scope="module")
def proxy(stack, settings) -> httpx.Client:
    stack("kafka", "rest_proxy")
    with httpx.Client(base_url=settings.rest_proxy_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def admin(settings):
    client = KafkaAdminClient(**kafka_python_config(settings, "test-rest-proxy-admin"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def new_topic(proxy, admin, settings):
    """Creates topics under the test user id, visible to the proxy; deletes them after the module."""
    created = []

    def create() -> str:
        name = f"{settings.pipeline_user_id}.rest-proxy-{uuid.uuid4().hex[:8]}"
        admin.create_topics([NewTopic(name, PARTITIONS, 1)])
        created.append(name)
        deadline = time.monotonic() + 30
        while name not in proxy.get("/topics").json():  # the proxy sees it through a metadata refresh
            assert time.monotonic() < deadline, f"proxy never listed topic {name}"
            time.sleep(0.5)
        return name

    yield create
    admin.delete_topics(created)


@pytest.fixture(scope="module")
def topic(new_topic) -> str:
    return new_topic()


@pytest.fixture(scope="module")
def pin_rows() -> list[dict]:
    return [json.loads(line) for line in (SAMPLES_DIR / "original_pin.jsonl").read_text().splitlines() if line.strip()]


def read_back(settings, topic: str, positions: list[tuple[int, int]]) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of the records at the given (partition, offset) positions, read with kafka-python."""
    consumer = KafkaConsumer(**kafka_python_config(settings, "test-rest-proxy-reader"), enable_auto_commit=False)
    try:
        found: dict[tuple[int, int], tuple[bytes | None, bytes | None]] = {}
        for partition in {p for p, _ in positions}:
            wanted = sorted(o for p, o in positions if p == partition)
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, wanted[0])
            deadline = time.monotonic() + 20
            while any((partition, o) not in found for o in wanted) and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        found[(record.partition, record.offset)] = (record.key, record.value)
        return [found[position] for position in positions]
    finally:
        consumer.close()


def positions_of(response: httpx.Response) -> list[tuple[int, int]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["key_schema_id"] is None and body["value_schema_id"] is None
    for entry in body["offsets"]:
        assert entry["error_code"] is None and entry["error"] is None, entry
    return [(entry["partition"], entry["offset"]) for entry in body["offsets"]]


# --- produce and read back -----------------------------------------------------------------------------------
def test_json_batch_round_trip(proxy, topic, settings, pin_rows):
    response = proxy.post(f"/topics/{topic}", json={"records": [{"value": row} for row in pin_rows]}, headers=JSON_V2)
    assert response.headers["content-type"] == "application/vnd.kafka.v2+json"
    positions = positions_of(response)
    assert len(positions) == len(pin_rows)
    assert len(set(positions)) == len(positions)
    stored = read_back(settings, topic, positions)
    assert [json.loads(value) for _, value in stored] == pin_rows
    assert all(key is None for key, _ in stored)


def test_keys_and_explicit_partition(proxy, topic, settings):
    records = [{"key": "user-1", "value": {"n": n}} for n in range(5)] + [{"value": {"n": 99}, "partition": 2}]
    positions = positions_of(proxy.post(f"/topics/{topic}", json={"records": records}, headers=JSON_V2))
    assert len({p for p, _ in positions[:5]}) == 1, "same key, same partition"
    assert positions[5][0] == 2
    stored = read_back(settings, topic, positions)
    assert stored[0] == (b'"user-1"', b'{"n":0}')
    assert stored[5] == (None, b'{"n":99}')


def test_binary_format_and_partition_path(proxy, topic, settings):
    raw = bytes(range(256))
    document = {"records": [{"key": base64.b64encode(b"k").decode(), "value": base64.b64encode(raw).decode()}]}
    positions = positions_of(proxy.post(f"/topics/{topic}/partitions/1", json=document, headers=BINARY_V2))
    assert positions[0][0] == 1
    assert read_back(settings, topic, positions) == [(b"k", raw)]


def test_plain_application_json_is_the_json_format(proxy, topic, settings):
    response = proxy.post(f"/topics/{topic}", json={"records": [{"value": {"plain": True}}]})
    assert read_back(settings, topic, positions_of(response)) == [(None, b'{"plain":true}')]


def test_v3_produce_and_clusters(proxy, topic, settings):
    clusters = proxy.get("/v3/clusters").json()
    assert clusters["kind"] == "KafkaClusterList"
    cluster_id = clusters["data"][0]["cluster_id"]
    assert proxy.get(f"/v3/clusters/{cluster_id}").json()["cluster_id"] == cluster_id
    record = {"key": {"type": "STRING", "data": "k3"}, "value": {"type": "JSON", "data": {"v": 3}}}
    response = proxy.post(f"/v3/clusters/{cluster_id}/topics/{topic}/records", json=record)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["error_code"] == 200 and report["topic_name"] == topic
    assert report["value"] == {"type": "JSON", "size": 7}
    assert read_back(settings, topic, [(report["partition_id"], report["offset"])]) == [(b"k3", b'{"v":3}')]
    missing = proxy.post(f"/v3/clusters/{cluster_id}/topics/no-such-topic-{uuid.uuid4().hex}/records", json=record)
    assert (missing.status_code, missing.json()["error_code"]) == (404, 40403)
    wrong = proxy.post(f"/v3/clusters/not-{cluster_id}/topics/{topic}/records", json=record)
    assert wrong.json() == {"error_code": 404, "message": f"Cluster not-{cluster_id} cannot be found."}


def test_topic_metadata(proxy, topic):
    assert topic in proxy.get("/topics").json()
    described = proxy.get(f"/topics/{topic}").json()
    assert described["name"] == topic
    assert [p["partition"] for p in described["partitions"]] == list(range(PARTITIONS))
    assert "retention.ms" in described["configs"]
    assert proxy.get("/topics/no-such-topic").json() == {"error_code": 40401, "message": "Topic not found."}


# --- bad input -----------------------------------------------------------------------------------------------
def bad_requests(topic: str, max_record_bytes: int) -> list[tuple[str, dict, bytes, int, int]]:
    """(path, headers, body, HTTP status, Confluent error_code) for every bad-input case of the issue."""
    good = b'{"records": [{"value": {"a": 1}}]}'
    oversized = json.dumps({"records": [{"value": 1}, {"value": "x" * (max_record_bytes + 1)}]}).encode()
    return [
        (f"/topics/{topic}", JSON_V2, b'{"records": [{"value": ', 400, 400),  # malformed JSON
        (f"/topics/{topic}", {"Content-Type": "text/plain"}, good, 415, 415),  # wrong Content-Type
        (f"/topics/{topic}", {}, good, 415, 415),  # no Content-Type at all
        (f"/topics/no-such-topic-{uuid.uuid4().hex}", JSON_V2, good, 404, 40401),  # unknown topic
        (f"/topics/{topic}", JSON_V2, oversized, 413, 413),  # oversized record (the whole request is refused)
        (f"/topics/{topic}", JSON_V2, b'{"value_schema": null}', 422, 422),  # missing records
        (f"/topics/{topic}", JSON_V2, b'{"records": []}', 422, 422),  # empty records
        (f"/topics/{topic}", JSON_V2, b'{"records": [{"value": 1, "partition": "one"}]}', 422, 422),
        (f"/topics/{topic}", JSON_V2, b'{"records": [{"value": 1, "partition": 99}]}', 404, 40402),
        (f"/topics/{topic}", BINARY_V2, b'{"records": [{"value": "not base64!"}]}', 400, 400),
        (f"/topics/{topic}", {"Content-Type": "application/vnd.kafka.avro.v2+json"}, good, 422, 42202),
        (f"/topics/{topic}", {**JSON_V2, "Accept": "text/html"}, good, 406, 406),
    ]


def test_bad_input_gets_confluent_errors_and_produces_nothing(proxy, topic, settings):
    before = end_offsets(settings, topic)
    for path, headers, body, status, code in bad_requests(topic, settings.rest_proxy_max_record_bytes):
        response = proxy.post(path, content=body, headers=headers)
        assert response.status_code == status, (path, headers, body[:80], response.text)
        assert set(response.json()) == {"error_code", "message"}
        assert response.json()["error_code"] == code, response.text
    time.sleep(1)
    assert end_offsets(settings, topic) == before, "a rejected request produced records"
    # ... and the proxy keeps serving
    positions_of(proxy.post(f"/topics/{topic}", json={"records": [{"value": "after"}]}, headers=JSON_V2))


# --- consumer API --------------------------------------------------------------------------------------------
def test_consumer_round_trip(proxy, new_topic, settings, admin):
    topic = new_topic()  # only JSON records in it: a json-format consumer cannot decode the binary tests' bytes
    produced = positions_of(
        proxy.post(f"/topics/{topic}", json={"records": [{"value": {"i": i}} for i in range(20)]}, headers=JSON_V2)
    )
    group = f"test-rest-proxy-{uuid.uuid4().hex[:8]}"
    created = proxy.post(
        f"/consumers/{group}", json={"name": "c1", "format": "json", "auto.offset.reset": "earliest"}, headers=V2
    )
    assert created.status_code == 200, created.text
    base = created.json()["base_uri"]
    assert base.endswith(f"/consumers/{group}/instances/c1")
    duplicate = proxy.post(f"/consumers/{group}", json={"name": "c1", "format": "json"}, headers=V2)
    assert (duplicate.status_code, duplicate.json()["error_code"]) == (409, 40902)
    subscribed = proxy.post(f"{base}/subscription", json={"topics": [topic]}, headers=V2)
    assert subscribed.status_code == 204, subscribed.text
    assert proxy.get(f"{base}/subscription").json() == {"topics": [topic]}

    accept = {"Accept": "application/vnd.kafka.json.v2+json"}
    mismatch = proxy.get(f"{base}/records", headers={"Accept": "application/vnd.kafka.binary.v2+json"})
    assert (mismatch.status_code, mismatch.json()["error_code"]) == (406, 40601)
    seen: dict[tuple[int, int], object] = {}
    deadline = time.monotonic() + 60
    while not set(produced) <= set(seen) and time.monotonic() < deadline:
        response = proxy.get(f"{base}/records", params={"timeout": 1000}, headers=accept)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/vnd.kafka.json.v2+json"
        for record in response.json():
            assert record["topic"] == topic
            seen[(record["partition"], record["offset"])] = record["value"]
    assert set(produced) <= set(seen), "the consumer did not read back every produced record"
    assert [seen[p] for p in produced] == [{"i": i} for i in range(20)]

    committed = proxy.post(f"{base}/offsets", headers=V2)
    assert committed.status_code == 200, committed.text
    committed_offsets = admin.list_group_offsets(group)[group]
    group_offsets = {tp.partition: meta.offset for tp, meta in committed_offsets.items() if tp.topic == topic}
    assert group_offsets == {p: end for p, end in end_offsets(settings, topic).items() if end}

    assert proxy.delete(base).status_code == 204
    gone = proxy.get(f"{base}/records", headers=accept)
    assert gone.json() == {"error_code": 40403, "message": "Consumer instance not found."}


# --- fuzzing -------------------------------------------------------------------------------------------------
# Operations whose answers name real topics. Schemathesis infers links from responses and would then produce
# fuzz records into other users' topics, so the fuzz run never calls them (test_topic_metadata and
# test_consumer_round_trip cover them).
FUZZ_EXCLUDED = (
    "listTopics",
    "getTopic",
    "listPartitions",
    "getPartition",
    "listBrokers",
    "readRecords",
    "commitOffsets",
)


def test_schemathesis_finds_no_server_error(proxy, settings, tmp_path):
    """Bounded fuzz run over the proxy's own OpenAPI document (positive and negative data): no 5xx anywhere.

    A 50003 (retriable Kafka error) is the proxy's correct answer while the broker is down, not a bug; on this shared
    machine other tests restart the broker, so a run whose only failures are 50003 is run once more.
    """
    for attempt in (1, 2):
        report_dir = tmp_path / f"attempt-{attempt}"
        result = _fuzz(settings, report_dir)
        if result.returncode == 0 or attempt == 2 or not _only_broker_unavailable(report_dir):
            break
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
    # ... and it never wrote into a topic that exists (other users' data)
    requested = set()
    for har in report_dir.glob("har-*.json"):
        for entry in json.loads(har.read_text())["log"]["entries"]:
            if entry["request"]["method"] == "POST":
                requested.add(unquote(urlsplit(entry["request"]["url"]).path))
    assert requested, "the HAR report recorded no request"
    existing = set(proxy.get("/topics").json())
    written = {path.split("/")[2] for path in requested if path.startswith("/topics/")}
    written |= {path.split("/")[5] for path in requested if path.startswith("/v3/") and path.count("/") >= 6}
    assert not written & existing, f"fuzz requests wrote to existing topics: {sorted(written & existing)}"


def _fuzz(settings, report_dir: Path) -> subprocess.CompletedProcess:
    excluded = [arg for operation in FUZZ_EXCLUDED for arg in ("--exclude-operation-id", operation)]
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{settings.rest_proxy_url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        os.environ.get("REST_PROXY_FUZZ_EXAMPLES", "15"),
        "--max-time",
        os.environ.get("REST_PROXY_FUZZ_SECONDS", "120"),
        "--generation-database",
        "none",
        "--seed",
        "7",
        "--workers",
        "1",  # hypothesis' lambda-source parsing has crashed schemathesis with 2 workers (SystemError in ast)
        "--request-timeout",
        "60",  # above the proxy's delivery timeout (30 s): a broker restart elsewhere must not look like a hang
        "--no-color",
        "--report",
        "junit,har",
        "--report-dir",
        str(report_dir),
        *excluded,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _only_broker_unavailable(report_dir: Path) -> bool:
    failures = "".join(path.read_text() for path in report_dir.glob("junit-*.xml"))
    server_errors = re.findall(r"\[5\d\d\][^`]*`([^`]*)`", failures)
    return bool(server_errors) and all('"error_code":50003' in body for body in server_errors)
