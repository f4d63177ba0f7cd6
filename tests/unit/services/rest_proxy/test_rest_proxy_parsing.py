"""REST proxy request parsing: media types, content negotiation, v2 and v3 produce bodies (no broker needed)."""

from __future__ import annotations

import base64
import json

import orjson
import pytest

from services.rest_proxy import parsing
from services.rest_proxy.errors import Error, RestError
from services.rest_proxy.parsing import (
    check_accept,
    parse_v2_produce,
    parse_v3_produce,
    requested_embedded_format,
    v2_produce_format,
)
from services.rest_proxy.producer import OutgoingRecord

LIMIT = 1_000_000
PIN = {"index": 7, "title": "Nissan GT-R. Sick.", "follower_count": "26k", "description": "… ünïcode"}


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def rest_error(call) -> RestError:
    with pytest.raises(RestError) as caught:
        call()
    return caught.value


# --- media types ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        ("application/vnd.kafka.json.v2+json", "json"),
        ("application/vnd.kafka.binary.v2+json", "binary"),
        ("Application/VND.kafka.json.v2+json; charset=utf-8", "json"),
        ("application/json", "json"),
        ("application/vnd.kafka.avro.v2+json", "avro"),
    ],
)
def test_v2_produce_media_types(content_type, fmt):
    assert v2_produce_format(content_type) == fmt


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/vnd.kafka.v2+json", "application/xml"])
def test_other_media_types_are_415(content_type):
    assert rest_error(lambda: v2_produce_format(content_type)).error is Error.UNSUPPORTED_MEDIA_TYPE


@pytest.mark.parametrize(
    "accept", [None, "*/*", "application/json", "application/vnd.kafka.v2+json", "text/html, application/*;q=0.5"]
)
def test_acceptable(accept):
    check_accept(accept, parsing.V2_ACCEPTABLE)


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "application/vnd.kafka.v2+json;q=0"])
def test_not_acceptable_is_406(accept):
    assert rest_error(lambda: check_accept(accept, parsing.V2_ACCEPTABLE)).error is Error.NOT_ACCEPTABLE


def test_requested_embedded_format():
    assert requested_embedded_format("application/vnd.kafka.json.v2+json") == "json"
    assert requested_embedded_format("application/vnd.kafka.binary.v2+json, */*") == "binary"
    assert requested_embedded_format("application/vnd.kafka.v2+json") is None


# --- v2 produce ----------------------------------------------------------------------------------------------
def test_json_records_become_compact_json_values_and_keys():
    records = parse_v2_produce(
        body({"records": [{"value": PIN}, {"key": "k1", "value": [1, 2], "partition": 2}, {"value": None}]}),
        "json",
        LIMIT,
    )
    assert records == [
        OutgoingRecord(None, orjson.dumps(PIN), None),
        OutgoingRecord(b'"k1"', b"[1,2]", 2),
        OutgoingRecord(None, None, None),
    ]
    assert orjson.loads(records[0].value) == PIN


def test_binary_records_are_base64_decoded():
    raw = bytes(range(256))
    document = {"records": [{"key": base64.b64encode(b"key").decode(), "value": base64.b64encode(raw).decode()}]}
    assert parse_v2_produce(body(document), "binary", LIMIT) == [OutgoingRecord(b"key", raw, None)]


def test_path_partition_overrides_record_partition():
    records = parse_v2_produce(body({"records": [{"value": 1, "partition": 0}, {"value": 2}]}), "json", LIMIT, 1)
    assert [r.partition for r in records] == [1, 1]


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        (b'{"records": [{"value": 1}', Error.MALFORMED_JSON, None),
        (b"not json at all", Error.MALFORMED_JSON, None),
        (b"", Error.MALFORMED_JSON, None),
        (b"{}", Error.UNPROCESSABLE, "records may not be empty"),
        (b'{"records": []}', Error.UNPROCESSABLE, "records may not be empty"),
        (b'{"records": null}', Error.UNPROCESSABLE, None),
        (b"[1, 2]", Error.UNPROCESSABLE, None),
        (b'{"records": [{"value": 1, "partition": "x"}]}', Error.UNPROCESSABLE, None),
        (b'{"records": [{"value": 1, "partition": -1}]}', Error.UNPROCESSABLE, None),
        (b'{"records": [5]}', Error.UNPROCESSABLE, None),
    ],
)
def test_bad_v2_bodies(raw, error, message):
    caught = rest_error(lambda: parse_v2_produce(raw, "json", LIMIT))
    assert caught.error is error
    if message:
        assert caught.message == message
    assert 400 <= caught.status < 500


def test_validation_message_names_the_field():
    caught = rest_error(lambda: parse_v2_produce(b'{"records": [{"value": 1, "partition": "x"}]}', "json", LIMIT))
    assert caught.message.startswith("records.0.partition:")


def test_numeric_strings_are_coerced_like_jackson():
    assert parse_v2_produce(b'{"records": [{"value": 1, "partition": "2"}]}', "json", LIMIT)[0].partition == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [(1, "data=1 is not a base64 string."), ("!!", 'data="!!" is not a valid base64 string.')],
)
def test_bad_base64_is_400_like_confluent(value, message):
    caught = rest_error(lambda: parse_v2_produce(body({"records": [{"value": value}]}), "binary", LIMIT))
    assert (caught.status, caught.error.error_code, caught.message) == (400, 400, f"Bad Request: {message}")


def test_oversized_record_is_413_and_names_sizes():
    big = {"records": [{"value": "x" * 2000}]}
    caught = rest_error(lambda: parse_v2_produce(body(big), "json", 1024))
    assert caught.status == 413
    assert "2002 bytes" in caught.message and "1024" in caught.message


def test_one_oversized_record_rejects_the_whole_request():
    mixed = {"records": [{"value": 1}, {"value": "x" * 2000}]}
    assert rest_error(lambda: parse_v2_produce(body(mixed), "json", 1024)).status == 413


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({"records": [{"key": 1, "value": 1}], "value_schema": "{}"}, Error.KEY_SCHEMA_MISSING),
        ({"records": [{"value": 1}]}, Error.VALUE_SCHEMA_MISSING),
        ({"records": [{"value": 1}], "value_schema": '{"type": "int"}'}, Error.INVALID_SCHEMA),
    ],
)
def test_schema_formats(document, error):
    assert rest_error(lambda: parse_v2_produce(body(document), "avro", LIMIT)).error is error


@pytest.mark.parametrize(
    "raw",
    [
        b'{"records": [{"value": {"a": 1}}, {"key": "k", "value": [1], "partition": 1}]}',
        b'{"records": [{"value": 1, "partition": "2"}]}',
        b'{"records": [{"value": 1, "partition": true}]}',
        b'{"records": [{"value": 1, "partition": 1.0}]}',
        b'{"records": [{"value": 1, "extra": "ignored"}], "other": 1}',
        b'{"records": [{"value": 1}], "key_schema": 5}',
        b'{"records": [{"value": 1, "partition": 4294967296}]}',
        b'{"records": "no"}',
    ],
)
def test_fast_path_and_model_agree(raw, monkeypatch):
    def outcome():
        try:
            return parse_v2_produce(raw, "json", LIMIT)
        except RestError as error:
            return (error.status, error.message)

    fast = outcome()
    monkeypatch.setattr(parsing, "_plain_records", lambda _body: None)
    assert outcome() == fast


# --- v3 produce ----------------------------------------------------------------------------------------------
def test_v3_json_string_binary_and_headers():
    document = {
        "partition_id": 1,
        "headers": [{"name": "h", "value": base64.b64encode(b"v").decode()}],
        "key": {"type": "STRING", "data": "k"},
        "value": {"type": "JSON", "data": PIN},
        "timestamp": "2021-02-05T19:14:42Z",
    }
    record, key_type, value_type = parse_v3_produce(body(document), LIMIT)
    assert (key_type, value_type) == ("STRING", "JSON")
    assert record == OutgoingRecord(b"k", orjson.dumps(PIN), 1, [("h", b"v")], 1612552482000)


def test_v3_type_defaults_to_binary_like_confluent():
    record, _, value_type = parse_v3_produce(body({"value": {"data": base64.b64encode(b"raw").decode()}}), LIMIT)
    assert (record.value, value_type) == (b"raw", "BINARY")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", Error.EMPTY_PAYLOAD),
        (b"{", Error.MALFORMED_JSON),
        (b'{"value": {"type": "AVRO", "data": 1}}', Error.INVALID_SCHEMA),
        (b'{"value": {"type": "STRING", "data": 1}}', Error.BAD_REQUEST),
        (b'{"value": {"type": "NOPE", "data": 1}}', Error.UNPROCESSABLE),
        (b'{"partition_id": -1, "value": {"type": "JSON", "data": 1}}', Error.PARTITION_NOT_FOUND),
        (b'{"headers": [{"name": "h", "value": "!"}]}', Error.MALFORMED_JSON),
        (b'{"timestamp": "yesterday"}', Error.MALFORMED_JSON),
    ],
)
def test_bad_v3_bodies(raw, error):
    assert rest_error(lambda: parse_v3_produce(raw, LIMIT)).error is error
