"""The v2 produce hot path: plain values (Python and Rust builds agree), one-partition results, the fast response."""

from __future__ import annotations

import orjson
import pytest
import rest_proxy_produce
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rest_proxy.parsing import load_document, parse_v2_produce, plain_records_list
from services.rest_proxy.produce import produce_response
from services.rest_proxy.producer import Delivery
from tests.support import SAMPLES_DIR

LIMIT = 1_000_000


def plain_json_values(document: object, max_record_bytes: int) -> list[bytes] | None:
    """Every record is `{"value": <not null>}` -> the serialized values, or None: the reference for the proxy's hot path.

    The proxy runs the Rust build of this function (`rest_proxy_produce.plain_values`, services/rest_proxy/native);
    the tests below hold the two to the same bytes. None sends the request down the general path
    (`parse_v2_produce`), which accepts everything else and raises every error, so this shortcut never decides what
    is valid. A record too large also goes there, to get its error.
    """
    records = plain_records_list(document)
    if records is None:
        return None
    try:
        if sum(map(len, records)) != len(records):  # a record with other fields (key, partition) or none
            return None
        values = [record["value"] for record in records]  # TypeError/KeyError: not {"value": ...}
    except (TypeError, KeyError):
        return None
    if None in values:  # a null value is a record without a value: the general path
        return None
    encoded = list(map(orjson.dumps, values))
    if max(map(len, encoded)) > max_record_bytes:
        return None
    return encoded


def python_values(body: bytes, limit: int = LIMIT) -> list[bytes] | None:
    return plain_json_values(load_document(body), limit)


def both(body: bytes, limit: int = LIMIT) -> tuple[list[bytes] | None, list[bytes] | None]:
    return python_values(body, limit), rest_proxy_produce.plain_json_values(body, limit)


def sample_body(name: str) -> bytes:
    rows = [line for line in (SAMPLES_DIR / name).read_text().splitlines() if line.strip()]
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


def test_the_fast_response_is_byte_for_byte_the_general_one():
    offsets = [7, 8, 1_234_567_890_123]
    general = orjson.dumps(produce_response([Delivery(1, offset, None, None) for offset in offsets]))
    assert rest_proxy_produce.offsets_response(1, offsets) == general
