"""Every error the REST proxy can answer, in one table, with Confluent kafka-rest's codes and messages.

Confluent's proxy answers every 4xx/5xx with the body `{"error_code": <int>, "message": <str>}`; `error_code` is
either the HTTP status or a five-digit code whose first three digits are the status (40401 = 404 + "topic not
found"). The codes and wording below come from kafka-rest's `Errors.java`, rest-utils' `KafkaExceptionMapper`
(40401/40402/40403, 50002, 50003, 50302), the v2 API reference (per-record `error_code` 1 and 2) and the v3
OpenAPI document (`Cluster <id> cannot be found.`, 413, 415). Handlers raise `RestError(Error.X, detail=...)`;
nothing else in the proxy builds an error body.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import orjson
from confluent_kafka import KafkaError


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    error_code: int
    message: str  # may contain `{detail}` (and other named fields), filled by RestError


class Error(Enum):
    # 400: the body is not what the endpoint reads (Jackson's JsonParseException / BadRequestException).
    MALFORMED_JSON = ErrorSpec(400, 400, "{detail}")
    BAD_REQUEST = ErrorSpec(400, 400, "Bad Request: {detail}")
    # 404
    NOT_FOUND = ErrorSpec(404, 404, "HTTP 404 Not Found")
    TOPIC_NOT_FOUND = ErrorSpec(404, 40401, "Topic not found.")
    PARTITION_NOT_FOUND = ErrorSpec(404, 40402, "Partition not found.")
    CONSUMER_INSTANCE_NOT_FOUND = ErrorSpec(404, 40403, "Consumer instance not found.")
    # v3 reports an unknown topic with Kafka's UnknownTopicOrPartitionException mapped to 40403.
    UNKNOWN_TOPIC_OR_PARTITION = ErrorSpec(404, 40403, "This server does not host this topic-partition.")
    CLUSTER_NOT_FOUND = ErrorSpec(404, 404, "Cluster {cluster_id} cannot be found.")
    # 405/406/409
    METHOD_NOT_ALLOWED = ErrorSpec(405, 405, "HTTP 405 Method Not Allowed")
    NOT_ACCEPTABLE = ErrorSpec(406, 406, "HTTP 406 Not Acceptable")
    CONSUMER_FORMAT_MISMATCH = ErrorSpec(
        406,
        40601,
        "The requested embedded data format does not match the deserializer for this consumer instance",
    )
    CONSUMER_ALREADY_SUBSCRIBED = ErrorSpec(
        409,
        40901,
        "Consumer cannot subscribe the the specified target because it has already subscribed to other topics.",
    )
    CONSUMER_ALREADY_EXISTS = ErrorSpec(
        409, 40902, "Consumer with specified consumer ID already exists in the specified consumer group."
    )
    ILLEGAL_STATE = ErrorSpec(409, 40903, "Illegal state: {detail}")
    # 413/415
    RECORD_TOO_LARGE = ErrorSpec(413, 413, "{detail}")
    REQUEST_TOO_LARGE = ErrorSpec(413, 413, "Produce request size is larger than allowed threshold")
    UNSUPPORTED_MEDIA_TYPE = ErrorSpec(415, 415, "HTTP 415 Unsupported Media Type")
    # 429: rest-utils' TOO_MANY_REQUESTS_ERROR_CODE; here, too many live consumer instances in this proxy.
    TOO_MANY_CONSUMERS = ErrorSpec(429, 42901, "Too many consumer instances ({limit}); delete unused ones")
    # 429 as kafka-rest's RateLimitExceededException answers it (code 429, "<title>: <detail>"): here the proxy
    # already holds as many request bytes as REST_PROXY_MAX_IN_FLIGHT_BYTES allows. Sent with Retry-After.
    IN_FLIGHT_FULL = ErrorSpec(429, 429, "Request rate limit exceeded: {detail}")
    # 422: well-formed JSON that breaks the request's contract.
    UNPROCESSABLE = ErrorSpec(422, 422, "{detail}")
    KEY_SCHEMA_MISSING = ErrorSpec(422, 42201, "Request includes keys but does not include key schema")
    VALUE_SCHEMA_MISSING = ErrorSpec(422, 42202, "Request includes values but does not include value schema")
    INVALID_CONSUMER_CONFIG = ErrorSpec(422, 42204, "Invalid consumer configuration: {detail}")
    INVALID_SCHEMA = ErrorSpec(422, 42205, "Invalid schema: {detail}")
    EMPTY_PAYLOAD = ErrorSpec(422, 422, "Payload error. Request body is empty. Data is required.")
    # kafka-rest's PRODUCE_BATCH_EXCEPTION (42208, "Too many entries in batch."), its answer to a batch above
    # api.v3.produce.batch.maximum.entries; here a v2 produce above REST_PROXY_MAX_RECORDS_PER_REQUEST.
    TOO_MANY_RECORDS = ErrorSpec(
        422, 42208, "Too many entries in batch. More than {limit} records in one request; split it."
    )
    # 5xx: the broker, not the request, is at fault.
    INTERNAL = ErrorSpec(500, 500, "Internal Server Error")
    KAFKA_ERROR = ErrorSpec(500, 50002, "Kafka error: {detail}")
    KAFKA_RETRIABLE_ERROR = ErrorSpec(500, 50003, "{detail}")
    BROKER_NOT_AVAILABLE = ErrorSpec(503, 50302, "{detail}")

    @property
    def status(self) -> int:
        return self.value.status

    @property
    def error_code(self) -> int:
        return self.value.error_code


# Per-record `error_code` in a v2 produce response (the HTTP status stays 200).
RECORD_ERROR_NON_RETRIABLE = 1
RECORD_ERROR_RETRIABLE = 2
# Per-record `error_code` of a successful v3 delivery report.
V3_RECORD_OK = 200

# Message for a record larger than the producer accepts (Kafka's RecordTooLargeException wording).
RECORD_TOO_LARGE_DETAIL = (
    "The message is {size} bytes when serialized which is larger than {limit}, "
    "which is the value of the max.request.size configuration."
)


# Seconds a client is told to wait (Retry-After) before retrying a 429.
RETRY_AFTER_S = 1


class RestError(Exception):
    """An error answer: raise it from any handler; the app turns it into Confluent's error body."""

    def __init__(self, error: Error, detail: str = "", **fields: object) -> None:
        self.error = error
        self.message = error.value.message.format(detail=detail, **fields)
        super().__init__(self.message)

    @property
    def headers(self) -> dict[str, str]:
        """Headers of the answer besides the content type: Retry-After on a 429."""
        return {"retry-after": str(RETRY_AFTER_S)} if self.error.status == 429 else {}

    @property
    def status(self) -> int:
        return self.error.status

    def body(self) -> bytes:
        return error_body(self.error.error_code, self.message)


def error_body(error_code: int, message: str) -> bytes:
    return orjson.dumps({"error_code": error_code, "message": message})


# Kafka errors after which the same request may succeed (Java's RetriableException family plus librdkafka's local
# transport/timeout codes). librdkafka's delivery reports do not set `retriable()`, hence this explicit list.
RETRIABLE_KAFKA_ERRORS = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TIMED_OUT_QUEUE,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._QUEUE_FULL,
        KafkaError._PURGE_QUEUE,
        KafkaError._PURGE_INFLIGHT,
        KafkaError._WAIT_COORD,
        KafkaError._RESOLVE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.KAFKA_STORAGE_ERROR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_COORDINATOR,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.OFFSET_NOT_AVAILABLE,
    }
)


def is_retriable(error: KafkaError) -> bool:
    return error.retriable() or error.code() in RETRIABLE_KAFKA_ERRORS


# A failed delivery after which the record may be in Kafka (librdkafka's message status POSSIBLY_PERSISTED: sent, then
# timed out or purged in flight). Confluent's proxy answers these with the retriable code 2, and a client that
# re-sends then writes the record twice; we answer the non-retriable code 1 and say why in the error text, which
# the emulator reads (emulator/sender.py POSSIBLY_WRITTEN_MARK) to report the record as possibly written.
POSSIBLY_WRITTEN = "possibly written"


def possibly_written_error(code: int) -> KafkaError:
    reason = (
        f"{POSSIBLY_WRITTEN}: {KafkaError(code).str()} after the record was sent; not retriable (it may be in Kafka)"
    )
    return KafkaError(code, reason=reason, retriable=False)


def record_error_code(error: KafkaError) -> int:
    """The v2 per-record code for a failed delivery: 2 when retrying may succeed and cannot write twice, else 1."""
    if POSSIBLY_WRITTEN in error.str():
        return RECORD_ERROR_NON_RETRIABLE
    return RECORD_ERROR_RETRIABLE if is_retriable(error) else RECORD_ERROR_NON_RETRIABLE


def kafka_error(error: KafkaError) -> RestError:
    """A request-level error for a failed Kafka call (metadata, consumer): 50003 if retriable, else 50002."""
    return RestError(Error.KAFKA_RETRIABLE_ERROR if is_retriable(error) else Error.KAFKA_ERROR, error.str())
