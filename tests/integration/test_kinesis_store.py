"""The Kinesis store (kinesalite, services/kinesis) on the running stack: both doors (the store's own port and
LocalStack's, which API Gateway uses) serve the same streams; every acknowledged record survives a kill -9 of the
store and of LocalStack, and `make down`/`make up`; the endpoint answers again within 30 s; and `make status` tells
the truth while the store is down. The streaming job under these kills: tests/integration/test_streaming.py."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from pipeline.settings import REPO_ROOT, Settings
from services.kinesis.service import kinesis_client
from services.stack import provision_stack_api
from tests.support.kinesis import ensure_stream, put_tagged, tagged_keys

STREAM = "streaming-7e57c0de0001-store"
ANSWER_AGAIN_SECONDS = 30


@pytest.fixture(scope="module")
def store(stack, settings: Settings) -> Settings:
    stack("kinesis", "localstack")
    ensure_stream(kinesis_client(settings), STREAM, shards=2)
    return settings


def put_acknowledged(settings: Settings, run: str, count: int, endpoint: str | None = None) -> set[str]:
    return put_tagged(kinesis_client(settings, endpoint=endpoint), STREAM, run, count)


def readable(settings: Settings, endpoint: str | None = None) -> set[str]:
    return tagged_keys(kinesis_client(settings, timeout=30, endpoint=endpoint), STREAM)


def seconds_until_it_answers(settings: Settings, endpoint: str, limit: float = 120) -> float:
    started = time.monotonic()
    while True:
        try:
            kinesis_client(settings, timeout=2, endpoint=endpoint).list_streams(Limit=1)
            return time.monotonic() - started
        except Exception:
            assert time.monotonic() - started < limit, f"{endpoint} did not answer within {limit:.0f} s"
            time.sleep(0.1)


def test_both_doors_serve_the_same_streams_and_records(store):
    assert store.kinesis_url != store.localstack_url, "clients call the store directly"
    run = uuid.uuid4().hex[:8]
    acked = put_acknowledged(store, f"{run}-localstack", 20, endpoint=store.localstack_url)
    acked |= put_acknowledged(store, f"{run}-direct", 20)
    direct = {key for key in readable(store) if key.startswith(run)}
    through_localstack = {key for key in readable(store, store.localstack_url) if key.startswith(run)}
    assert direct == through_localstack == acked


def test_acknowledged_records_survive_a_kill_9_of_the_store(store, stack_control):
    run = uuid.uuid4().hex[:8]
    acked = put_acknowledged(store, run, 500)
    killed = stack_control.kill("kinesis")  # right after the last acknowledgement
    answered = seconds_until_it_answers(store, store.kinesis_url)
    assert stack_control.instance("kinesis") != killed
    assert answered < ANSWER_AGAIN_SECONDS
    assert acked <= readable(store), f"{len(acked - readable(store))} acknowledged records lost"
    print(f"kill -9 of the store: it answered again after {answered:.1f} s; {len(acked)} of {len(acked)} kept")


def test_records_put_through_localstack_survive_a_kill_9_of_localstack(store, stack_control):
    run = uuid.uuid4().hex[:8]
    acked = put_acknowledged(store, run, 100, endpoint=store.localstack_url)
    killed = stack_control.kill("localstack")
    answered = seconds_until_it_answers(store, store.localstack_url)
    assert stack_control.instance("localstack") != killed
    assert answered < ANSWER_AGAIN_SECONDS
    assert acked <= readable(store, store.localstack_url)
    stack_control.wait_ready("localstack")
    provision_stack_api()
    print(f"kill -9 of LocalStack: its Kinesis answered again after {answered:.1f} s; {len(acked)} records kept")


def test_make_down_and_up_keep_every_stream_record(store, stack_control):
    run = uuid.uuid4().hex[:8]
    acked = put_acknowledged(store, run, 200)
    stack_control.down("localstack", "kinesis")  # `make down`'s own stop, for these two services
    assert not stack_control.running("kinesis") and not stack_control.running("localstack")
    for service in ("kinesis", "localstack"):
        stack_control.start(service)
        stack_control.wait_ready(service)
    provision_stack_api()
    kept = {key for key in readable(store) if key.startswith(run)}
    assert kept == acked, f"{len(acked - kept)} of {len(acked)} records lost across make down / make up"


def test_status_tells_the_truth_while_the_store_is_down(store, stack_control):
    stack_control.stop("kinesis")
    try:
        down = status_lines(stack_control)
        assert "ready" not in down["kinesis"].split(), down["kinesis"]
        assert "NOT READY" in down["localstack"], "LocalStack's Kinesis is the store behind it: not ready"
    finally:
        stack_control.start("kinesis")
    stack_control.wait_ready("kinesis")
    stack_control.wait_ready("localstack")
    up = status_lines(stack_control)
    assert up["kinesis"].split()[1:3] == ["RUNNING", "ready"], up["kinesis"]
    assert up["localstack"].split()[1:3] == ["RUNNING", "ready"], up["localstack"]


def status_lines(stack_control) -> dict[str, str]:
    """`make status` as the user runs it in this mode: the service lines by name."""
    command, env = stack_control.python_command("services.runner", "status", env={})
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line and not line.startswith(" ")}
    assert "kinesis" in lines and "localstack" in lines, result.stdout + result.stderr
    return lines
