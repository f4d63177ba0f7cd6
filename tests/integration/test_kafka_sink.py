"""The Kafka -> Connect -> S3 path on the running stack: the contract's layout, exactly-once (audit), latency, worker crash.

Uses its own user id so the audit sees only this module's topics and objects (the id's topics, bucket and connector
are reused across runs; the audit covers every offset ever written, so reruns keep checking old data too).
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time

import boto3
import httpx
import pytest
from confluent_kafka import Producer

from pipeline.layout import count_lines, parse_object_key, topic_prefix
from pipeline.settings import Settings, load_settings
from services.audit.sink_audit import audit_until_complete, render
from services.provision.kafka import (
    connector_config,
    deprovision_connector,
    deprovision_topics,
    provision_connector,
    provision_topics,
)
from services.provision.s3 import provision_bucket
from tests.support import SAMPLES_DIR

SINK_USER_ID = "7e57c0de5151"


@pytest.fixture(scope="module")
def sink(stack) -> Settings:
    settings = load_settings(pipeline_user_id=SINK_USER_ID)
    stack("kafka", "s3", "connect")
    for step in (provision_bucket, provision_topics, provision_connector):
        step(settings, False)
    return settings


def produce(settings: Settings, topic: str, values: list[bytes]) -> list[tuple[int, int]]:
    """Produce with acks=all and return (partition, offset) of every record, in order; fails on any error."""
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all", "enable.idempotence": True}
    )
    delivered: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def report(index: int):
        def callback(error, message) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                delivered[index] = (message.partition(), message.offset())

        return callback

    for index, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value, on_delivery=report(index))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)
    assert not errors and len(delivered) == len(values), f"produce failed: {errors[:3]}"
    return [delivered[i] for i in range(len(values))]


def sample_values(table: str) -> list[bytes]:
    path = SAMPLES_DIR / f"original_{table}.jsonl"
    return [line.encode() for line in path.read_text().splitlines() if line.strip()]


class S3Lines:
    """Reads the sink's objects of a topic once each (objects are immutable: a rewrite has the same content)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self.client = boto3.client("s3", **settings.boto3_client_kwargs("s3"))
        self.lines: dict[tuple[int, int], bytes] = {}
        self.seen: set[str] = set()

    def refresh(self) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=topic_prefix(self.topic)):
            for item in page.get("Contents", []):
                parsed = parse_object_key(item["Key"])
                if parsed is None or item["Key"] in self.seen:
                    continue
                body = self.client.get_object(Bucket=self.settings.bucket, Key=item["Key"])["Body"].read()
                assert count_lines(body) == body.count(b"\n"), f"{item['Key']} does not end with a newline"
                for i, line in enumerate(body.split(b"\n")[:-1]):
                    self.lines[(parsed[1], parsed[2] + i)] = line
                self.seen.add(item["Key"])


def test_records_land_once_as_compact_json_lines_in_confluent_layout(sink):
    expected: dict[str, dict[tuple[int, int], bytes]] = {}
    for table in ("pin", "geo", "user"):
        values = sample_values(table)
        if table == "pin":
            values.append(b'{"index": 1, "title": "broken')  # not JSON: must be written, not crash the task
        expected[sink.topic(table)] = dict(zip(produce(sink, sink.topic(table), values), values, strict=True))

    report = audit_until_complete(sink, wait_s=60)
    assert report.clean, render(sink, report)

    for topic, records in expected.items():
        s3 = S3Lines(sink, topic)
        s3.refresh()
        for position, value in records.items():
            line = s3.lines[position]
            try:
                parsed = json.loads(value)
            except ValueError:
                assert line == value, "an invalid value is written as it is"
                continue
            assert line == json.dumps(parsed, ensure_ascii=False, separators=(",", ":")).encode(), position
    keys = S3Lines(sink, sink.topic("pin"))
    keys.refresh()
    assert all(k.startswith(f"topics/{sink.topic('pin')}/partition=") for k in keys.seen)
    assert any(k.endswith("+0000000000.json") for k in keys.seen)


def test_a_record_per_second_reaches_s3_within_10_seconds(sink):
    topic = sink.topic("geo")
    s3 = S3Lines(sink, topic)
    s3.refresh()
    pending: dict[tuple[int, int], float] = {}
    latencies: list[float] = []
    next_produce = time.monotonic()
    produced = 0
    deadline = time.monotonic() + 12 + 30
    while (produced < 12 or pending) and time.monotonic() < deadline:
        if produced < 12 and time.monotonic() >= next_produce:
            value = json.dumps({"ind": 900000 + produced, "country": "Latency", "timestamp": "2022-01-01 00:00:00"})
            (position,) = produce(sink, topic, [value.encode()])
            pending[position] = next_produce
            produced += 1
            next_produce += 1.0
        s3.refresh()
        now = time.monotonic()
        for position in [p for p in pending if p in s3.lines]:
            latencies.append(now - pending.pop(position))
        time.sleep(0.1)
    assert not pending, f"{len(pending)} of 12 records not in S3 30 s after the last was produced"
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"produce-to-S3 latency at 1 record/s: p50 {latencies[len(latencies) // 2]:.1f} s, p95 {p95:.1f} s")
    assert p95 <= 10.0


def test_audit_stays_clean_when_the_connect_worker_is_killed_during_a_load(sink, stack_control):
    from services.connect import service as connect

    topic = sink.topic("user")
    s3 = S3Lines(sink, topic)
    s3.refresh()
    before = len(s3.seen)
    template = sample_values("user")
    values = [template[i % len(template)] for i in range(50_000)]
    started = time.monotonic()
    produce(sink, topic, values)
    produced_s = time.monotonic() - started

    deadline = time.monotonic() + 120
    while len(s3.seen) < before + 5 and time.monotonic() < deadline:  # the sink is mid-load
        time.sleep(0.5)
        s3.refresh()
    assert len(s3.seen) >= before + 5, "the sink wrote nothing for 2 minutes"
    assert stack_control.state("connect") == "RUNNING", f"connect is {stack_control.state('connect')}"
    stack_control.kill("connect")
    killed_at = time.monotonic()

    time.sleep(3)  # supervisord restarts an unexpected exit itself; start it if it gave up (or Docker left it exited)
    stack_control.start("connect")
    ready_deadline = time.monotonic() + 180
    while True:
        try:
            connect.ready(sink)
            break
        except Exception:
            if time.monotonic() > ready_deadline:
                raise
            time.sleep(1)

    report = audit_until_complete(sink, wait_s=300)
    print(
        f"50,000 records produced in {produced_s:.1f} s; worker killed; audit clean "
        f"{time.monotonic() - killed_at:.0f} s after the kill"
    )
    assert report.clean, render(sink, report)


class TcpRelay:
    """A TCP relay to the S3 store that the test can cut and restore: an S3 outage seen by the sink only, without
    touching the shared store's process."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server: socketserver.ThreadingTCPServer | None = None
        self.connections: list[socket.socket] = []

    def start(self) -> None:
        relay = self

        def pump(source: socket.socket, sink: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    sink.sendall(data)
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream = socket.create_connection(relay.target)
                relay.connections += [self.request, upstream]
                back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
                back.start()
                pump(self.request, upstream)
                back.join()

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def cut(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
                connection.close()
        self.connections.clear()


def test_audit_stays_clean_when_s3_is_unreachable_during_a_load(stack):
    from urllib.parse import urlsplit

    stack("kafka", "s3", "connect")
    direct = load_settings(pipeline_user_id="7e57c0de5152")
    endpoint = urlsplit(direct.s3_endpoint_url)
    relay = TcpRelay((endpoint.hostname, endpoint.port))
    relay.start()
    try:
        via_relay = load_settings(
            pipeline_user_id="7e57c0de5152",
            aws_endpoint_url_s3=f"http://127.0.0.1:{relay.port}",
            s3_sink_flush_size=500,
        )
        provision_bucket(direct, False)
        provision_topics(direct, False)
        provision_connector(via_relay, False)
        topic = direct.topic("pin")
        s3 = S3Lines(direct, topic)
        s3.refresh()
        before = len(s3.seen)
        template = sample_values("pin")
        produce(direct, topic, [template[i % len(template)] for i in range(20_000)])
        deadline = time.monotonic() + 120
        while len(s3.seen) < before + 3 and time.monotonic() < deadline:
            time.sleep(0.3)
            s3.refresh()
        relay.cut()
        time.sleep(10)  # uploads fail meanwhile; Connect keeps retrying the batch
        relay.start()
        report = audit_until_complete(direct, wait_s=180)
        assert report.clean, render(direct, report)
    finally:
        relay.cut()
        # The connector points at the relay's port, which is gone now: remove it (the next run re-creates it).
        httpx.delete(f"{direct.connect_url}/connectors/{direct.connector_name}", timeout=30)


def test_a_task_that_failed_while_s3_was_down_shows_in_status_until_restarted(stack, run_module):
    """The sink task retries listing S3 in open() for 2 minutes, then fails for good. Connect's health (what
    `make status` checks) must say so, naming the task and why, and be clean again once the task is restarted."""
    from urllib.parse import urlsplit

    from services.connect.service import failures, health
    from services.contract import NotReady

    stack("kafka", "s3", "connect")
    direct = load_settings(pipeline_user_id="7e57c0de5153")
    name = direct.connector_name
    endpoint = urlsplit(direct.s3_endpoint_url)
    relay = TcpRelay((endpoint.hostname, endpoint.port))
    relay.start()
    via_relay = load_settings(pipeline_user_id="7e57c0de5153", aws_endpoint_url_s3=f"http://127.0.0.1:{relay.port}")
    base = direct.connect_url.rstrip("/")

    def ours() -> list[str]:
        statuses = httpx.get(f"{base}/connectors", params={"expand": "status"}, timeout=10).json()
        return failures({key: value for key, value in statuses.items() if key == name})

    try:
        for step in (provision_bucket, provision_topics):
            step(direct, False)
        provision_connector(via_relay, False)
        health(direct)  # (assuming no other connector of the worker has failed)
        relay.cut()
        # A restarted task opens its partitions again, and listing S3 now fails until open() gives up.
        assert httpx.post(f"{base}/connectors/{name}/tasks/0/restart", timeout=30).status_code in (200, 202, 204)
        deadline = time.monotonic() + 240
        while not ours() and time.monotonic() < deadline:
            time.sleep(2)
        (failure,) = ours()
        assert failure.startswith(f"connector {name} task 0 FAILED")
        with pytest.raises(NotReady, match=f"connector {name} task 0 FAILED"):
            health(direct)
        shown = run_module("services.runner", "status")
        line = next(line for line in shown.stdout.splitlines() if line.startswith("connect "))
        assert f"NOT READY (connector {name} task 0 FAILED" in line, shown.stdout
        assert "cannot list" in line or "Unable to execute HTTP request" in line, line
        assert shown.returncode == 1

        relay.start()  # S3 is back: a restart (what provisioning does for a failed task) cures it
        provision_connector(via_relay, False)
        assert not ours()
        shown = run_module("services.runner", "status")
        assert name not in shown.stdout, shown.stdout
    finally:
        relay.cut()
        httpx.delete(f"{base}/connectors/{name}", timeout=30)


def test_connector_teardown_deletes_only_this_projects_sink(stack):
    """`make deprovision`'s connector step on a real worker: a same-named connector configured otherwise is kept;
    this user's sink is listed in the dry run, then deleted; a second teardown finds nothing."""
    stack("kafka", "s3", "connect")
    settings = load_settings(pipeline_user_id="7e57c0de5154")
    name, url = settings.connector_name, settings.connect_url
    provision_bucket(settings, False)
    provision_topics(settings, False)
    try:
        foreign = {**connector_config(settings), "topics": settings.topic("pin")}
        assert httpx.put(f"{url}/connectors/{name}/config", json=foreign, timeout=30).status_code in (200, 201)
        kept = deprovision_connector(settings, False)
        assert len(kept) == 1 and kept[0].startswith(f"keep Kafka Connect connector {name}:"), kept
        assert httpx.get(f"{url}/connectors/{name}", timeout=30).status_code == 200

        provision_connector(settings, False)  # now this project's sink of the user's three topics
        what = f"Kafka Connect connector {name} at {url} (matched by name and configuration)"
        assert deprovision_connector(settings, True) == [f"would delete {what}"]
        assert httpx.get(f"{url}/connectors/{name}", timeout=30).status_code == 200
        assert deprovision_connector(settings, False) == [f"deleted {what}"]
        assert httpx.get(f"{url}/connectors/{name}", timeout=30).status_code == 404
        assert deprovision_connector(settings, False) == []
    finally:
        httpx.delete(f"{url}/connectors/{name}", timeout=30)
        deprovision_topics(settings, False)
