"""The REST proxy's error table: Confluent's codes, statuses and body shape, and Kafka error classification."""

from __future__ import annotations

import orjson
import pytest
from confluent_kafka import KafkaError

from services.rest_proxy.errors import (
    RECORD_ERROR_NON_RETRIABLE,
    RECORD_ERROR_RETRIABLE,
    Error,
    RestError,
    kafka_error,
    record_error_code,
)


@pytest.mark.parametrize("error", list(Error))
def test_every_code_starts_with_its_http_status(error):
    assert 400 <= error.status < 600
    assert str(error.error_code).startswith(str(error.status))


@pytest.mark.parametrize(
    ("error", "status", "code", "message"),
    [
        (Error.TOPIC_NOT_FOUND, 404, 40401, "Topic not found."),
        (Error.PARTITION_NOT_FOUND, 404, 40402, "Partition not found."),
        (Error.CONSUMER_INSTANCE_NOT_FOUND, 404, 40403, "Consumer instance not found."),
        (Error.UNKNOWN_TOPIC_OR_PARTITION, 404, 40403, "This server does not host this topic-partition."),
        (Error.NOT_ACCEPTABLE, 406, 406, "HTTP 406 Not Acceptable"),
        (Error.UNSUPPORTED_MEDIA_TYPE, 415, 415, "HTTP 415 Unsupported Media Type"),
        (Error.KEY_SCHEMA_MISSING, 422, 42201, "Request includes keys but does not include key schema"),
        (Error.VALUE_SCHEMA_MISSING, 422, 42202, "Request includes values but does not include value schema"),
        (Error.EMPTY_PAYLOAD, 422, 422, "Payload error. Request body is empty. Data is required."),
    ],
)
def test_confluent_codes_and_messages(error, status, code, message):
    rest = RestError(error)
    assert (rest.status, error.error_code, rest.message) == (status, code, message)


def test_body_is_confluents_error_message():
    body = orjson.loads(RestError(Error.INVALID_SCHEMA, "not a schema").body())
    assert body == {"error_code": 42205, "message": "Invalid schema: not a schema"}


def test_templated_messages():
    assert RestError(Error.CLUSTER_NOT_FOUND, cluster_id="abc").message == "Cluster abc cannot be found."
    assert RestError(Error.KAFKA_ERROR, "boom").message == "Kafka error: boom"


def test_codes_are_unique_per_meaning():
    # one table: a numeric code may be shared only by errors with the same HTTP status
    by_code: dict[int, set[int]] = {}
    for error in Error:
        by_code.setdefault(error.error_code, set()).add(error.status)
    assert all(len(statuses) == 1 for statuses in by_code.values())


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (KafkaError._MSG_TIMED_OUT, RECORD_ERROR_RETRIABLE),
        (KafkaError._TRANSPORT, RECORD_ERROR_RETRIABLE),
        (KafkaError.NOT_ENOUGH_REPLICAS, RECORD_ERROR_RETRIABLE),
        (KafkaError.LEADER_NOT_AVAILABLE, RECORD_ERROR_RETRIABLE),
        (KafkaError.MSG_SIZE_TOO_LARGE, RECORD_ERROR_NON_RETRIABLE),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, RECORD_ERROR_NON_RETRIABLE),
        (KafkaError._UNKNOWN_PARTITION, RECORD_ERROR_NON_RETRIABLE),
    ],
)
def test_per_record_codes_follow_confluents_v2_contract(code, expected):
    assert record_error_code(KafkaError(code)) == expected


def test_request_level_kafka_errors():
    assert kafka_error(KafkaError(KafkaError._TRANSPORT)).error is Error.KAFKA_RETRIABLE_ERROR
    assert kafka_error(KafkaError(KafkaError._TRANSPORT)).error.error_code == 50003
    assert kafka_error(KafkaError(KafkaError.INVALID_CONFIG)).error.error_code == 50002


def test_a_record_possibly_in_kafka_is_not_retriable_and_says_so():
    """librdkafka's POSSIBLY_PERSISTED status (sent, then timed out in flight): a client that re-sends on code 2 would
    write it twice, so it is answered with code 1 and a reason the emulator reads."""
    from services.rest_proxy.producer import _deliveries

    [delivery] = _deliveries([(None, None, None, KafkaError._MSG_TIMED_OUT, True)])
    assert record_error_code(delivery.error) == RECORD_ERROR_NON_RETRIABLE
    assert delivery.error.str().startswith("possibly written: Local: Message timed out")
    [queued] = _deliveries([(None, None, None, KafkaError._MSG_TIMED_OUT, False)])
    assert record_error_code(queued.error) == RECORD_ERROR_RETRIABLE, "timed out in the queue: never sent"
