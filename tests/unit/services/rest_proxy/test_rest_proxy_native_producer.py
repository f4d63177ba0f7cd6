"""The native shared producer (rest_proxy_produce.Producer, real librdkafka) where no broker answers.

What a broker acknowledges is covered by tests/integration/test_rest_proxy.py against the real stack; here every
record must come back failed, in its own place, with librdkafka's code, including records that first met a full
local queue. Port 1 refuses connections at once, and a short message timeout settles the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest
import rest_proxy_produce
from confluent_kafka import KafkaError

from pipeline import kafka_clients
from pipeline.settings import load_settings
from services.rest_proxy.errors import RECORD_ERROR_RETRIABLE, record_error_code
from services.rest_proxy.kafka_clients import producer_config
from services.rest_proxy.producer import OutgoingRecord, SharedProducer

UNREACHABLE = {"bootstrap.servers": "127.0.0.1:1", "enable.idempotence": True, "acks": "all"}
TIMED_OUT = KafkaError._MSG_TIMED_OUT


def body(values: list[object]) -> bytes:
    return orjson.dumps({"records": [{"value": value} for value in values]})


def settle(producer: rest_proxy_produce.Producer, request: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if request in producer.poll():
            return
        producer.resume(request)
        time.sleep(0.02)
    pytest.fail(f"request {request} did not settle in {timeout_s} s")


def native(**config: object) -> tuple[rest_proxy_produce.Producer, list[tuple[int, str, bool]]]:
    errors: list[tuple[int, str, bool]] = []
    producer = rest_proxy_produce.Producer({**UNREACHABLE, **config}, lambda *error: errors.append(error))
    return producer, errors


def test_every_record_of_a_request_fails_in_its_own_place_when_no_broker_answers():
    producer, errors = native(**{"message.timeout.ms": 300})
    values = rest_proxy_produce.plain_values(body([{"a": 1}, 2, "three"]), 1_000_000)
    request, queued = producer.produce_values("t", 0, values)
    assert queued and len(values) == 0  # the values moved into the producer
    settle(producer, request)
    assert producer.take(request) == [(None, None, None, TIMED_OUT, False)] * 3  # never sent: not persisted
    assert any(code == KafkaError._TRANSPORT for code, _, fatal in errors if not fatal)  # error_cb was served
    with pytest.raises(KeyError):
        producer.take(request)  # taken once


def test_records_that_met_a_full_queue_are_queued_later_in_order_and_all_settle():
    producer, _ = native(**{"message.timeout.ms": 200, "queue.buffering.max.messages": 2})
    request, queued = producer.produce_values("t", 1, rest_proxy_produce.plain_values(body(list(range(7))), 1000))
    assert not queued  # 2 fit, 5 wait in the request's backlog
    settle(producer, request)
    assert producer.take(request, True) == [(None, None, None, TIMED_OUT, False)] * 7


def test_a_discarded_request_is_forgotten():
    producer, _ = native(**{"message.timeout.ms": 200})
    request = producer.open_request(1)
    assert producer.produce(request, 0, "t", -1, b"key", b"value", [("h", b"1"), ("empty", None)], 1_700_000_000_000)
    producer.discard(request)
    time.sleep(0.4)
    assert request not in producer.poll()
    with pytest.raises(KeyError):
        producer.take(request)


def test_a_request_with_no_records_settles_at_once():
    producer, _ = native()
    request = producer.open_request(0)
    assert request in producer.poll()
    assert producer.take(request, True) == []


def test_the_shared_producer_reports_each_failed_record_as_retriable():
    async def run():
        shared = SharedProducer({**UNREACHABLE, "message.timeout.ms": 300})
        shared.start()
        try:
            sent = await shared.send_values("t", 3, rest_proxy_produce.plain_values(body(["a", "b"]), 1000))
            general = await shared.send("t", [OutgoingRecord(b"k", b"v"), OutgoingRecord(None, b"w", 2, None, 5)])
            return sent, general
        finally:
            await shared.close(timeout=1)

    sent, general = asyncio.run(run())
    assert type(sent) is list  # not the all-acknowledged response body
    for delivery in sent + general:
        assert delivery.partition is None and delivery.offset is None
        assert delivery.error.code() == TIMED_OUT
        assert record_error_code(delivery.error) == RECORD_ERROR_RETRIABLE


def test_config_values_become_librdkafka_strings_and_bad_ones_are_refused():
    with pytest.raises(ValueError, match="acks"):
        rest_proxy_produce.Producer({**UNREACHABLE, "acks": "sometimes"}, print)


def test_an_oauthbearer_producer_asks_the_oauth_callback_for_its_token():
    """The MSK IAM wiring (KAFKA_AUTH=iam): librdkafka asks for a token before it connects, through `poll`."""
    asked: list[object] = []

    def oauth_cb(config):
        asked.append(config)
        return "a-token", time.time() + 900

    errors: list[tuple[int, str, bool]] = []
    producer = rest_proxy_produce.Producer(
        {**UNREACHABLE, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "OAUTHBEARER"},
        lambda *error: errors.append(error),
        oauth_cb,
    )
    deadline = time.monotonic() + 10
    while not asked and time.monotonic() < deadline:
        producer.poll()
        time.sleep(0.05)
    assert asked, "the token callback was never called"
    producer.poll()
    assert not [error for error in errors if error[0] == KafkaError._INVALID_ARG], errors  # the token was accepted


def test_each_record_gets_its_own_outcome_when_outcomes_differ():
    """A value over message.max.bytes is refused when queued; the others time out: each code in its own place."""
    producer, _ = native(**{"message.timeout.ms": 300, "message.max.bytes": 1000})
    values = ["small", "x" * 2000, "also small", "y" * 3000]
    request, queued = producer.produce_values("t", 0, rest_proxy_produce.plain_values(body(values), 1_000_000))
    assert queued
    settle(producer, request)
    too_large = KafkaError.MSG_SIZE_TOO_LARGE
    assert [entry[3] for entry in producer.take(request)] == [TIMED_OUT, too_large, TIMED_OUT, too_large]


async def _replaced(shared: SharedProducer, first: rest_proxy_produce.Producer) -> None:
    """The poller replaces a failed producer at its next round (within its idle interval, 0.1 s)."""
    for _ in range(50):
        if shared._producer is not first:
            return
        await asyncio.sleep(0.02)
    pytest.fail("the failed producer was not replaced")


async def _with_shared(config: dict[str, object], body_of_test):
    shared = SharedProducer({**UNREACHABLE, **config})
    shared.start()
    try:
        return await asyncio.wait_for(body_of_test(shared), 20)
    finally:
        await shared.close(timeout=1)


def test_a_fatal_error_replaces_the_producer_and_fails_its_queued_records_as_retriable():
    async def scenario(shared: SharedProducer):
        first = shared._producer
        waiting = asyncio.ensure_future(shared.send_values("t", 1, rest_proxy_produce.plain_values(body([1, 2]), 100)))
        await asyncio.sleep(0.1)
        first.test_fatal_error("raised by the test")
        sent = await waiting  # long before the 60 s message timeout: purged from the replaced producer
        await _replaced(shared, first)
        return sent

    sent = asyncio.run(_with_shared({"message.timeout.ms": 60_000}, scenario))
    for delivery in sent:
        assert delivery.error.code() != TIMED_OUT
        assert record_error_code(delivery.error) == RECORD_ERROR_RETRIABLE


def test_a_request_waiting_on_a_full_queue_when_the_producer_fails_is_still_answered():
    async def scenario(shared: SharedProducer):
        first = shared._producer
        waiting = asyncio.ensure_future(
            shared.send_values("t", 1, rest_proxy_produce.plain_values(body([1, 2, 3]), 99))
        )
        await asyncio.sleep(0.1)  # one record queued, two in the request's backlog
        first.test_fatal_error("raised by the test")
        sent = await waiting  # its records met the failed producer: refused (_FATAL) or purged
        await _replaced(shared, first)
        return sent

    sent = asyncio.run(_with_shared({"message.timeout.ms": 60_000, "queue.buffering.max.messages": 1}, scenario))
    assert len(sent) == 3
    assert all(record_error_code(delivery.error) == RECORD_ERROR_RETRIABLE for delivery in sent)


def test_a_cancelled_request_leaves_nothing_in_the_producer():
    async def scenario(shared: SharedProducer):
        waiting = asyncio.ensure_future(shared.send_values("t", 1, rest_proxy_produce.plain_values(body([1]), 99)))
        await asyncio.sleep(0.1)
        assert shared._producer.open_requests() == 1
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        return shared._producer.open_requests(), len(shared._waiting), shared._in_flight

    assert asyncio.run(_with_shared({"message.timeout.ms": 60_000}, scenario)) == (0, 0, 0)


def test_the_msk_iam_settings_build_a_tls_producer_that_signs_its_token(monkeypatch):
    """KAFKA_AUTH=iam: SASL_SSL with OAUTHBEARER needs librdkafka built with OpenSSL, and the signer is asked."""
    signed: list[str] = []

    def sign(region: str) -> tuple[str, int]:
        signed.append(region)
        return f"token-for-{region}", int(time.time() * 1000) + 900_000

    monkeypatch.setattr(kafka_clients, "msk_iam_token", sign)
    settings = load_settings(
        pipeline_target="aws",
        kafka_bootstrap_servers="b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com:9098",
        kafka_auth="iam",
        aws_region="eu-west-1",
    )
    config = producer_config(settings)
    assert config["security.protocol"] == "SASL_SSL" and callable(config["oauth_cb"])
    shared = SharedProducer(config)  # refused here if librdkafka lacked SSL or OAUTHBEARER
    deadline = time.monotonic() + 10
    while not signed and time.monotonic() < deadline:
        shared._producer.poll()
        time.sleep(0.05)
    assert signed == ["eu-west-1"]
