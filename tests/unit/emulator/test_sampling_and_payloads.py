import json

import pytest

from emulator import payloads
from emulator.sampling import draws

PIN = {"index": 7528, "unique_id": "fbe53c66-3442-4773-b19e-d3ec6f54dddf", "title": "No Title Data Available",
       "follower_count": "26k", "downloaded": 1, "category": "diy-and-crafts"}  # fmt: skip
GEO = {"ind": 7528, "timestamp": "2020-08-28 03:52:47", "latitude": -89.9787, "longitude": -173.293,
       "country": "Albania"}  # fmt: skip


def test_seed_100_reproduces_the_original_sequence():
    indices = [d.index for d in draws(100, 11154, 5)]
    assert indices == [7528, 2863, 5730, 8304, 8731]


def test_sleep_is_drawn_before_each_index_and_is_0_or_1():
    sample = list(draws(100, 11154, 50))
    assert {d.sleep_seconds for d in sample} == {0, 1}
    assert all(0 <= d.index < 11154 for d in sample)


def test_count_none_is_unbounded_and_empty_source_is_an_error():
    stream = draws(1, 10)
    assert len([next(stream) for _ in range(1000)]) == 1000
    with pytest.raises(ValueError, match="make seed"):
        next(draws(1, 0, 1))


def test_kafka_body_is_byte_exact():
    body = payloads.kafka_records_body([GEO])
    assert body == (
        b'{"records": [{"value": {"ind": 7528, "timestamp": "2020-08-28 03:52:47", "latitude": -89.9787, '
        b'"longitude": -173.293, "country": "Albania"}}]}'
    )


def test_kafka_body_keeps_several_records_in_order():
    body = json.loads(payloads.kafka_records_body([PIN, GEO]))
    assert body == {"records": [{"value": PIN}, {"value": GEO}]}


def test_stream_record_body_is_byte_exact():
    body = payloads.stream_record_body("streaming-0a1b2c3d4e5f-geo", GEO, "7528")
    assert body == (
        b'{"StreamName": "streaming-0a1b2c3d4e5f-geo", "Data": {"ind": 7528, "timestamp": "2020-08-28 03:52:47", '
        b'"latitude": -89.9787, "longitude": -173.293, "country": "Albania"}, "PartitionKey": "7528"}'
    )


def test_stream_records_body_uses_put_records_fields():
    body = json.loads(payloads.stream_records_body([PIN, GEO], ["1", "2"]))
    assert body == {"records": [{"data": PIN, "partition-key": "1"}, {"data": GEO, "partition-key": "2"}]}


def test_partition_key_spreads_by_index():
    assert payloads.partition_key("pin", PIN) == "7528"
    assert payloads.partition_key("geo", {**GEO, "ind": 3}) == "3"


def test_datetimes_are_sent_as_text():
    import datetime as dt

    body = payloads.kafka_records_body([{"ind": 1, "date_joined": dt.datetime(2015, 10, 24, 11, 23, 51)}])
    assert b'"date_joined": "2015-10-24 11:23:51"' in body


def test_unicode_is_escaped_like_json_dumps():
    body = payloads.kafka_records_body([{"description": "I ca…\u00a0"}])
    assert body == b'{"records": [{"value": {"description": "I ca\\u2026\\u00a0"}}]}'
