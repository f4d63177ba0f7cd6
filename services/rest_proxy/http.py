"""HTTP plumbing shared by the v2 and v3 routes and the fast path: the proxy's state, body reading, responses,
OpenAPI bodies."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class Proxy:
    settings: Settings
    producer: SharedProducer
    metadata: ClusterMetadata
    consumers: ConsumerManager


def proxy_of(request: Request) -> Proxy:
    return request.app.state.proxy


async def read_body(receive: Receive, content_length: bytes | str | None) -> bytes:
    """The whole body, from a request's ASGI `receive` (`request.receive` in a route) and its Content-Length value.

    The one body reader of the proxy, for the FastAPI routes and the fast path alike: 413 as soon as the declared
    or the received size is above MAX_REQUEST_BYTES.
    """
    if content_length is not None and content_length.isdigit() and int(content_length) > MAX_REQUEST_BYTES:
        raise RestError(Error.REQUEST_TOO_LARGE)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RestError(Error.MALFORMED_JSON, "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise RestError(Error.REQUEST_TOO_LARGE)
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
