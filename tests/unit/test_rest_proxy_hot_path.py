"""The v2 produce hot path: plain values (Python and Rust builds agree), one-partition results, the fast response."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import rest_proxy_json
from confluent_kafka import KafkaError
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rest_proxy.parsing import load_document, parse_v2_produce, plain_json_values
from services.rest_proxy.producer import Delivery, _OnePartitionRequest
from services.rest_proxy.v2 import offsets_response, produce_response

SAMPLES = Path(__file__).parent / "data" / "samples"
LIMIT = 1_000_000


def python_values(body: bytes, limit: int = LIMIT) -> list[bytes] | None:
    return plain_json_values(load_document(body), limit)


def both(body: bytes, limit: int = LIMIT) -> tuple[list[bytes] | None, list[bytes] | None]:
    return python_values(body, limit), rest_proxy_json.plain_json_values(body, limit)


def sample_body(name: str) -> bytes:
    rows = [line for line in (SAMPLES / name).read_text().splitlines() if line.strip()]
    return ('{"records":[' + ",".join('{"value":' + row + "}" for row in rows) + "]}").encode()


@pytest.mark.parametrize("name", ["original_pin.jsonl", "original_geo.jsonl", "original_user.jsonl"])
def test_sample_rows_serialize_identically_in_python_and_rust(name):
    python, native = both(sample_body(name))
    assert python is not None and native == python
    general = parse_v2_produce(sample_body(name), "json", LIMIT)
    assert [record.value for record in general] == python  # the general path writes the same bytes


@pytest.mark.parametrize(
    "body",
    [
        b'{"records":[{"value":{"k":1}},{"value":[1,"x",true,null]}]}',
        b' {"records" : [ {"value" : { "a" : 1.50 , "b" : "\\u00e9\\/\\n" } } ] , "key_schema": null} ',
    ],
)
def test_plain_bodies_give_the_values_orjson_would_write(body):
    python, native = both(body)
    expected = [orjson.dumps(record["value"]) for record in orjson.loads(body)["records"]]
    assert python == expected
    assert native == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"records":[{"value":1,"key":"k"}]}',  # a key: the general path
        b'{"records":[{"value":1,"partition":0}]}',
        b'{"records":[{"value":null}]}',  # no value
        b'{"records":[{"key":"k"}]}',
        b'{"records":[{}]}',
        b'{"records":["x"]}',
        b'{"records":[[1]]}',
        b'{"records":[]}',
        b'{"records":{}}',
        b'{"value_schema":"{}","records":[{"value":1}]}',
        b'{"records":[{"value":1}',  # malformed
        b"[1]",
        b"null",
        b"",
        b'{"records":[{"value":"' + b"x" * 100 + b'"}]}',  # too large for the limit below
    ],
)
def test_anything_else_takes_the_general_path_in_both_builds(body):
    assert both(body, limit=50) == (None, None)


@pytest.mark.parametrize(
    "body",
    [
        b'{"records":[{"value":{"k":1,"k":2}}]}',  # orjson keeps the last value
        b'{"records":[{"value":{"k":1,"\\u006b":2}}]}',  # the same key, once escaped
        b'{"records":[{"value":{' + b",".join(b'"k%d":%d' % (i, i) for i in range(65)) + b"}}]}",  # many keys
        b'{"records":[{"value":-0}]}',  # orjson writes 0
        b'{"records":[{"value":1e-7}]}',  # exponents are spelled differently
        b'{"records":[{"value":123456789012345678901234}]}',
    ],
)
def test_rust_leaves_what_it_could_write_differently_to_python(body):
    python, native = both(body)
    assert native is None and python is not None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(json_values.filter(lambda value: value is not None), min_size=1, max_size=5), st.booleans())
def test_rust_agrees_with_python_on_generated_documents(values, ascii_escapes):
    body = orjson.dumps({"records": [{"value": value} for value in values]})
    if ascii_escapes:  # the same document with \uXXXX escapes and spaces, as other clients write it
        import json

        body = json.dumps(orjson.loads(body), ensure_ascii=True, indent=1).encode()
    python, native = both(body)
    assert python == [orjson.dumps(value) for value in values]
    assert native is None or native == python


class FakeMessage:
    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def value(self) -> bytes:
        return self._value

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000 + self._offset)


def test_one_partition_results_come_out_in_record_order_even_when_reports_do_not():
    async def run():
        pending = _OnePartitionRequest(asyncio.get_running_loop().create_future(), 3)
        values = [b"a", b"b", b"c"]
        for value, offset in ((b"c", 12), (b"a", 10), (b"b", 11)):
            pending.report(None, FakeMessage(value, offset))
        assert pending.future.done()
        return pending.result(2, values)

    sent = asyncio.run(run())
    assert sent.partition == 2 and sent.offsets == [10, 11, 12] and sent.deliveries is None


def test_a_failed_record_is_matched_to_its_own_place_by_payload():
    error = KafkaError(KafkaError._MSG_TIMED_OUT)

    async def run():
        pending = _OnePartitionRequest(asyncio.get_running_loop().create_future(), 4)
        values = [b"a", b"dup", b"b", b"dup"]
        pending.report(error, FakeMessage(b"b", -1))  # a queued record timed out before the in-flight ones settled
        pending.report(None, FakeMessage(b"dup", 41))
        pending.report(None, FakeMessage(b"a", 40))
        pending.report(None, FakeMessage(b"dup", 42))
        return pending.result(0, values)

    deliveries = asyncio.run(run()).deliveries
    assert [(d.partition, d.offset) for d in deliveries] == [(0, 40), (0, 41), (None, None), (0, 42)]
    assert deliveries[2].error is error
    assert deliveries[0].timestamp_ms == 1_700_000_000_040


def test_the_fast_response_is_byte_for_byte_the_general_one():
    offsets = [7, 8, 1_234_567_890_123]
    general = orjson.dumps(produce_response([Delivery(1, offset, None, None) for offset in offsets]))
    assert offsets_response(1, offsets) == general
