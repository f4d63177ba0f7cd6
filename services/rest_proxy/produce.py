"""v2 produce, the proxy's hot request: one function that the FastAPI routes (`v2.py`) and the ASGI fast path
(`fast_path.py`) both call, so the two cannot answer differently.

Two paths (docs/design/rest_proxy.md): a body of plain values (every record `{"value": <not null>}`, no schema
fields, no partition in the path) is parsed and produced in Rust (`rest_proxy_produce`, services/rest_proxy/native);
everything else goes through `parsing.parse_v2_produce`, which owns every error and its Confluent body.

Limits, before anything is built per record: the body's bytes and then its records are taken from the in-flight
budget (`http.InFlightBytes`: 429 when full), and the one Rust pass that finds plain values also counts the records
and stops past REST_PROXY_MAX_RECORDS_PER_REQUEST (422, 42208).
"""

from __future__ import annotations

import orjson
from rest_proxy_produce import scan_produce
from starlette.types import Receive

from services.rest_proxy.errors import Error, RestError, record_error_code
from services.rest_proxy.http import Held, Proxy, read_body
from services.rest_proxy.parsing import (
    V2_ACCEPTABLE,
    V2_PRODUCE_MEDIA_TYPES,
    check_accept,
    media_type,
    parse_v2_produce,
    v2_partitions_used,
    v2_produce_format,
)
from services.rest_proxy.producer import Delivery


def produce_response(deliveries: list[Delivery]) -> dict[str, object]:
    offsets = []
    for delivery in deliveries:
        if delivery.error is None:
            offsets.append(
                {"partition": delivery.partition, "offset": delivery.offset, "error_code": None, "error": None}
            )
        else:
            offsets.append(
                {
                    "partition": None,
                    "offset": None,
                    "error_code": record_error_code(delivery.error),
                    "error": delivery.error.str(),
                }
            )
    return {"offsets": offsets, "key_schema_id": None, "value_schema_id": None}


async def produce(
    proxy: Proxy,
    topic: str,
    partition: int | None,
    content_type: str | None,
    accept: str | None,
    content_length: bytes | str | None,
    receive: Receive,
) -> bytes:
    """A whole v2 produce request -> the response body; raises RestError (and then produces nothing).

    `content_type`, `accept` and `content_length` are the request's headers, `receive` its ASGI channel: the body
    is read only for a produce media type (another one is answered 415 unread).
    """
    with proxy.in_flight.hold() as held:
        if media_type(content_type) in V2_PRODUCE_MEDIA_TYPES:
            body = await read_body(receive, content_length, held)
        else:
            body = b""
        check_accept(accept, V2_ACCEPTABLE)
        return await _produce_body(proxy, topic, partition, v2_produce_format(content_type), body, held)


async def _produce_body(proxy: Proxy, topic: str, partition: int | None, fmt: str, body: bytes, held: Held) -> bytes:
    limit = proxy.settings.rest_proxy_max_record_bytes
    max_records = proxy.settings.rest_proxy_max_records_per_request
    # Rust (services/rest_proxy/native): the values when the body is plain values, and the records counted; a count
    # of None (serde_json could not read the body) is charged as the most records a request may have.
    values, count = scan_produce(body, limit, max_records, fmt == "json" and partition is None)
    if count is not None and count > max_records:
        raise RestError(Error.TOO_MANY_RECORDS, limit=max_records)
    held.take_records(max_records if count is None else count)
    if values is not None:
        sent = await proxy.producer.send_values(topic, await proxy.metadata.require_partitions(topic), values)
        return sent if type(sent) is bytes else orjson.dumps(produce_response(sent))
    records = parse_v2_produce(body, fmt, limit, partition)
    if len(records) > max_records:  # serde_json could not count them; the general path did
        raise RestError(Error.TOO_MANY_RECORDS, limit=max_records)
    partition_count = await proxy.metadata.require_partitions(topic)
    if any(p >= partition_count for p in v2_partitions_used(records)):
        raise RestError(Error.PARTITION_NOT_FOUND)
    deliveries = await proxy.producer.send(topic, records)
    return orjson.dumps(produce_response(deliveries))
