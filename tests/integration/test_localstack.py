"""LocalStack on the running stack: Kinesis, API Gateway, STS and IAM answer, and a stream with its records survives
a restart of LocalStack through the stack (supervisord, or docker compose: stack.py) and a kill -9 of it
(kinesis-mock's persistence, made safe by services/localstack/launch.py). LocalStack forgets API definitions on a
restart (open-source edition), so after each restart the stack's own resources are provisioned again, as `make up`
does."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from stack import stack_settings

from pipeline.settings import Settings
from services.localstack.service import SERVICES, kinesis_client, ready
from tests.support.kinesis import stream_records

STREAM = "streaming-7e57c0de0001-durability"


@pytest.fixture(scope="module")
def localstack(stack, settings: Settings) -> Settings:
    stack("localstack")
    return settings


def _wait_ready(settings: Settings, timeout: float = 240) -> float:
    started = time.monotonic()
    while True:
        try:
            ready(settings)
            return time.monotonic() - started
        except Exception:
            if time.monotonic() - started > timeout:
                raise
            time.sleep(1)


def _reprovision_stack_resources() -> None:
    """What `make up` does after starting LocalStack: the user's streams and API (idempotent), with the stack's
    state folder (where the invoke URL is stored: `.state/docker-state` in Docker mode)."""
    try:
        from services.provision import aws
    except ImportError:
        return
    user_settings = stack_settings()
    aws.provision_streams(user_settings, dry_run=False)
    aws.provision_api(user_settings, dry_run=False)


def _ensure_stream(settings: Settings) -> None:
    kinesis = kinesis_client(settings)
    if STREAM not in kinesis.list_streams(Limit=100)["StreamNames"]:
        kinesis.create_stream(StreamName=STREAM, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def _put(settings: Settings, run: str, count: int, endpoint: str | None = None) -> set[str]:
    kinesis = kinesis_client(settings, endpoint=endpoint)
    sent = set()
    for i in range(count):
        body = {"run": run, "i": i}
        kinesis.put_record(StreamName=STREAM, Data=json.dumps(body).encode(), PartitionKey=str(i))
        sent.add(f"{run}/{i}")
    return sent


def _read_all(settings: Settings, endpoint: str | None = None) -> set[str]:
    kinesis = kinesis_client(settings, timeout=30, endpoint=endpoint)
    seen = set()
    for _, record in stream_records(kinesis, STREAM):
        body = json.loads(record["Data"])
        seen.add(f"{body['run']}/{body['i']}")
    return seen


def test_health_lists_the_services_running(localstack):
    health = httpx.get(f"{localstack.localstack_url}/_localstack/health", timeout=10).json()
    assert health["version"] == "4.9.2"
    for name in SERVICES.split(","):
        assert health["services"][name] in ("running", "available"), name
    assert health["services"].get("s3") == "disabled", "S3 is served by the durable store, not LocalStack"


def test_the_kinesis_endpoint_is_localstacks_own_kinesis_backend(localstack):
    """AWS_ENDPOINT_URL_KINESIS (kinesis-mock on its fixed port) and LocalStack's Kinesis serve the same streams:
    records put through either door are read, all of them, through both."""
    assert localstack.kinesis_mock_url != localstack.localstack_url, "the stack calls kinesis-mock directly"
    _ensure_stream(localstack)
    run = uuid.uuid4().hex[:8]
    sent = _put(localstack, f"{run}-ls", 10, endpoint=localstack.localstack_url)
    sent |= _put(localstack, f"{run}-direct", 10, endpoint=localstack.kinesis_mock_url)
    through_localstack = {key for key in _read_all(localstack, localstack.localstack_url) if key.startswith(run)}
    direct = {key for key in _read_all(localstack, localstack.kinesis_mock_url) if key.startswith(run)}
    assert through_localstack == direct == sent


def test_stream_and_records_survive_a_restart_through_supervisord(localstack, stack_control):
    _ensure_stream(localstack)
    run = uuid.uuid4().hex[:8]
    sent = _put(localstack, run, 40)  # restarted right away: the last records rely on the flush at stop
    stop_started = time.monotonic()
    stack_control.stop("localstack")
    stop_s = time.monotonic() - stop_started
    stack_control.start("localstack")
    ready_s = _wait_ready(localstack)
    _reprovision_stack_resources()
    assert sent <= _read_all(localstack), "records put before the restart are missing"
    print(f"LocalStack stopped in {stop_s:.1f} s, ready {ready_s:.1f} s after start; {len(sent)} records kept")


def test_stream_and_records_survive_a_kill_9_of_localstack(localstack, stack_control):
    _ensure_stream(localstack)
    run = uuid.uuid4().hex[:8]
    sent = _put(localstack, run, 20)
    killed = stack_control.kill("localstack")
    time.sleep(3)  # supervisord restarts an unexpected exit itself; start it if it gave up (or Docker left it exited)
    stack_control.start("localstack")
    ready_s = _wait_ready(localstack)
    assert stack_control.instance("localstack") != killed
    _reprovision_stack_resources()
    assert sent <= _read_all(localstack), "records put before the kill are missing"
    print(f"LocalStack killed with SIGKILL; ready {ready_s:.1f} s after the restart; {len(sent)} records kept")
