"""HTTP plumbing shared by the v2 and v3 routes and the fast path: the proxy's state, body reading, the in-flight
byte budget, responses, OpenAPI bodies."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.types import Receive

from pipeline.settings import Settings
from services.rest_proxy.consumers import ConsumerManager
from services.rest_proxy.errors import Error, RestError
from services.rest_proxy.kafka_clients import ClusterMetadata
from services.rest_proxy.parsing import JSON, V2_JSON
from services.rest_proxy.producer import SharedProducer

# A produce request carries at most 100 records in practice; this bounds memory against a runaway client.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
# What a request is charged in the in-flight budget besides its body, per record, measured with tracemalloc and
# /proc/self/status on 200,000-record bodies: the general path holds about 500 bytes of Python objects per record
# (after parsing.dumps_exact), the producer about 110 bytes per queued record; the plain path about 50 + 110.
RECORD_OVERHEAD_BYTES = 640
# The values' copies (in Rust or as Python bytes, then in librdkafka's queue) come on top of the body itself.
BODY_COPIES = 3


class InFlightBytes:
    """The proxy's global budget of request bytes held at once (REST_PROXY_MAX_IN_FLIGHT_BYTES).

    A request takes its share while it is read and parsed (its body, then its records) and gives it back when it
    is answered; a request that does not fit is answered 429 with Retry-After at once, never queued, so the
    proxy's memory does not grow with the load. One that could never fit, even alone, is 413. Used from the event
    loop only, so no lock.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[Held]:
        held = Held(self)
        try:
            yield held
        finally:
            self.used -= held.bytes


@dataclass
class Held:
    """One request's share of the budget."""

    budget: InFlightBytes
    bytes: int = field(default=0)

    def take(self, size: int) -> None:
        budget = self.budget
        if self.bytes + size > budget.limit:
            raise RestError(Error.REQUEST_TOO_LARGE)
        if budget.used + size > budget.limit:
            raise RestError(
                Error.IN_FLIGHT_FULL,
                f"the proxy holds {budget.used} of its {budget.limit} bytes of requests in flight; retry later",
            )
        budget.used += size
        self.bytes += size

    def take_records(self, count: int) -> None:
        """The records' share, once they are counted (the body's was taken as it arrived)."""
        self.take(count * RECORD_OVERHEAD_BYTES)


@dataclass
class Proxy:
    settings: Settings
    producer: SharedProducer
    metadata: ClusterMetadata
    consumers: ConsumerManager
    in_flight: InFlightBytes


def proxy_of(request: Request) -> Proxy:
    return request.app.state.proxy


async def read_body(receive: Receive, content_length: bytes | str | None, held: Held | None = None) -> bytes:
    """The whole body, from a request's ASGI `receive` (`request.receive` in a route) and its Content-Length value.

    The one body reader of the proxy, for the FastAPI routes and the fast path alike: 413 as soon as the declared
    or the received size is above MAX_REQUEST_BYTES. With `held` (the request's share of the in-flight budget), the
    body's bytes are taken from the budget (BODY_COPIES times) before they are read: 429 when they do not fit.
    """
    declared = int(content_length) if content_length is not None and content_length.isdigit() else 0
    if declared > MAX_REQUEST_BYTES:
        raise RestError(Error.REQUEST_TOO_LARGE)
    taken = 0
    if held is not None and declared:
        held.take(declared * BODY_COPIES)
        taken = declared
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RestError(Error.MALFORMED_JSON, "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise RestError(Error.REQUEST_TOO_LARGE)
        if held is not None and size > taken:
            held.take((size - taken) * BODY_COPIES)
            taken = size
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class KafkaV2Response(Response):
    media_type = V2_JSON


class KafkaV3Response(Response):
    media_type = JSON


def v2_json(content: object, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type=V2_JSON)


def v3_json(content: object, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type=JSON)


# --- OpenAPI -------------------------------------------------------------------------------------------------
# Handlers read their bodies themselves (one pass: syntax and contract errors map to 400 and 422), so the
# request-body schemas are declared here and merged into the document by app.openapi().
REQUEST_MODELS: dict[str, type[BaseModel]] = {}


def request_body(model: type[BaseModel], media_types: list[str] | tuple[str, ...], required: bool = True) -> dict:
    REQUEST_MODELS[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": required, "content": {mt: {"schema": schema} for mt in media_types}}}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    from services.rest_proxy.models import ErrorMessage

    return {status: {"model": ErrorMessage, "description": "Confluent error body"} for status in statuses}
