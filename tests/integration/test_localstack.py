"""LocalStack on the running stack: API Gateway, Kinesis, STS and IAM answer, and a restart of it through the stack
(supervisord, or docker compose: services/stack.py) keeps every stream and record, since its Kinesis is the stack's Kinesis
store behind it (services/localstack/site/sitecustomize.py). LocalStack forgets API definitions on a restart
(open-source edition), so afterwards the stack's own API is provisioned again, as `make up` does. Kills of the store
and of LocalStack: tests/integration/test_kinesis_store.py."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from pipeline.settings import Settings
from services.kinesis.service import kinesis_client
from services.localstack.service import SERVICES
from services.stack import provision_stack_api
from tests.support.kinesis import ensure_stream, put_tagged, tagged_keys

STREAM = "streaming-7e57c0de0001-durability"


@pytest.fixture(scope="module")
def localstack(stack, settings: Settings) -> Settings:
    stack("localstack")
    ensure_stream(kinesis_client(settings), STREAM, shards=2)
    return settings


def test_health_lists_the_services_running(localstack):
    health = httpx.get(f"{localstack.localstack_url}/_localstack/health", timeout=10).json()
    assert health["version"] == "4.9.2"
    for name in SERVICES.split(","):
        assert health["services"][name] in ("running", "available"), name
    assert health["services"].get("s3") == "disabled", "S3 is served by the durable store, not LocalStack"


def test_a_restart_through_the_stack_keeps_streams_and_records(localstack, stack_control):
    run = uuid.uuid4().hex[:8]
    through_localstack = kinesis_client(localstack, endpoint=localstack.localstack_url)
    sent = put_tagged(through_localstack, STREAM, run, 40)
    started = time.monotonic()
    stack_control.restart("localstack")
    ready_s = stack_control.wait_ready("localstack")
    provision_stack_api()
    kept = {key for key in tagged_keys(through_localstack, STREAM) if key.startswith(run)}
    assert kept == sent, f"{len(sent - kept)} records put through LocalStack are missing after its restart"
    print(f"LocalStack restarted in {time.monotonic() - started:.1f} s (ready {ready_s:.1f} s); {len(sent)} kept")
