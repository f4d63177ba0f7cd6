"""HTTP plumbing shared by the v2 and v3 routes: the proxy's state, body reading, responses, OpenAPI bodies."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

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


async def read_body(request: Request, limit: int = MAX_REQUEST_BYTES) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        if length.isdigit() and int(length) > limit:
            raise RestError(Error.REQUEST_TOO_LARGE)
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RestError(Error.REQUEST_TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


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
