"""Request bodies of both ingestion paths, byte for byte as the original emulator built them (docs/contract.md §2):
`json.dumps` with its default separators, datetimes as `YYYY-MM-DD HH:MM:SS`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from pipeline.settings import KEY_COLUMNS

KAFKA_JSON_CONTENT_TYPE = "application/vnd.kafka.json.v2+json"
STREAM_CONTENT_TYPE = "application/json"

Row = dict[str, Any]


def _default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(document: object) -> bytes:
    return json.dumps(document, default=_default, ensure_ascii=True).encode()


def kafka_records_body(rows: Sequence[Row]) -> bytes:
    """Body of `POST <invoke>/topics/<topic>`: `{"records": [{"value": {...}}, ...]}`."""
    return dumps({"records": [{"value": row} for row in rows]})


def stream_record_body(stream: str, row: Row, partition_key: str) -> bytes:
    """Body of `PUT <invoke>/streams/<stream>/record`."""
    return dumps({"StreamName": stream, "Data": row, "PartitionKey": partition_key})


def stream_records_body(rows: Sequence[Row], partition_keys: Sequence[str]) -> bytes:
    """Body of `PUT <invoke>/streams/<stream>/records` (PutRecords through the gateway's mapping template)."""
    records = [{"data": row, "partition-key": key} for row, key in zip(rows, partition_keys, strict=True)]
    return dumps({"records": records})


def row_key(table: str, row: Row) -> int:
    """The source row's key (`index` for pins, `ind` otherwise): the same for a post's three records."""
    return row[KEY_COLUMNS[table]]


def partition_key(table: str, row: Row) -> str:
    """Spread records over shards by the post's index (a constant key would pin everything to one shard)."""
    return str(row_key(table, row))
