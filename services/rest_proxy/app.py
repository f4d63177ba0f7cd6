"""The proxy application: routes of both API versions, Confluent error bodies for every failure, lifecycle.

Every error leaves through one of the handlers below, so a client always gets `{"error_code", "message"}`:
RestError (our table), Starlette's HTTPException (unknown route 404, wrong method 405), FastAPI's
RequestValidationError (bad path/query parameter -> 422) and, as a last resort, any other exception (500, logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from pipeline.settings import Settings
from services.http_guard import guard
from services.rest_proxy import v2, v3
from services.rest_proxy.consumers import ConsumerManager
from services.rest_proxy.errors import Error, RestError, error_body
from services.rest_proxy.fast_path import FastProducePath
from services.rest_proxy.http import REQUEST_MODELS, InFlightBytes, Proxy
from services.rest_proxy.kafka_clients import ClusterMetadata, client_config, producer_config
from services.rest_proxy.parsing import JSON, V2_JSON
from services.rest_proxy.producer import SharedProducer

log = logging.getLogger("rest_proxy")

EXPIRY_INTERVAL_S = 30.0


def _error_response(request: Request, status: int, body: bytes) -> Response:
    media = JSON if request.url.path.startswith("/v3") else V2_JSON
    return Response(body, status_code=status, media_type=media)


async def _rest_error(request: Request, error: RestError) -> Response:
    response = _error_response(request, error.status, error.body())
    response.headers.update(error.headers)
    return response


async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
    known = {
        404: Error.NOT_FOUND,
        405: Error.METHOD_NOT_ALLOWED,
        406: Error.NOT_ACCEPTABLE,
        415: Error.UNSUPPORTED_MEDIA_TYPE,
    }
    if error.status_code in known:
        rest = RestError(known[error.status_code])
        response = _error_response(request, rest.status, rest.body())
    else:
        phrase = HTTPStatus(error.status_code).phrase if error.status_code in HTTPStatus._value2member_map_ else ""
        response = _error_response(
            request, error.status_code, error_body(error.status_code, f"HTTP {error.status_code} {phrase}")
        )
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _validation_error(request: Request, error: RequestValidationError) -> Response:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ()) if part not in ("path", "query", "header"))
        problems.append(f"{location}: {item.get('msg')}" if location else str(item.get("msg")))
    rest = RestError(Error.UNPROCESSABLE, "; ".join(problems) or "Unprocessable entity")
    return _error_response(request, rest.status, rest.body())


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    rest = RestError(Error.INTERNAL)
    return _error_response(request, rest.status, rest.body())


async def _expire_consumers(consumers: ConsumerManager) -> None:
    while True:
        await asyncio.sleep(EXPIRY_INTERVAL_S)
        try:
            await consumers.expire_idle()
        except Exception:
            log.exception("expiring idle consumers failed")


def _document_confluent_422(document: dict) -> None:
    """FastAPI documents its own 422 body; ours is Confluent's error body, so say that instead."""
    schemas = document["components"]["schemas"]
    for operations in document["paths"].values():
        for operation in operations.values():
            unprocessable = operation.get("responses", {}).get("422")
            if unprocessable:
                unprocessable["content"] = {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorMessage"}}
                }
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def create_app(settings: Settings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = SharedProducer(producer_config(settings))
        producer.start()
        consumers = ConsumerManager(client_config(settings), settings.rest_proxy_consumer_threads)
        in_flight = InFlightBytes(settings.rest_proxy_max_in_flight_bytes)
        app.state.proxy = Proxy(settings, producer, ClusterMetadata(settings), consumers, in_flight)
        expiry = asyncio.create_task(_expire_consumers(consumers))
        log.info("REST proxy for Kafka at %s", settings.kafka_bootstrap_servers)
        try:
            yield
        finally:
            expiry.cancel()
            await consumers.close_all()
            left = await producer.close()
            if left:
                log.warning("%d records were still undelivered at shutdown", left)

    app = FastAPI(
        title="Pinterest pipeline REST proxy",
        version="1.0.0",
        description="Confluent REST Proxy compatible API (v2 produce/topics/consumers, v3 clusters/produce).",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.include_router(v3.router)
    app.include_router(v2.router)
    app.add_exception_handler(RestError, _rest_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, model in REQUEST_MODELS.items():
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
                schemas.update(schema.pop("$defs", {}))
                schemas[name] = schema
            _document_confluent_422(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi
    return app


def serve(settings: Settings) -> ASGIApp:
    """What uvicorn serves: the app, its fast produce path, and in front of both the Host and Origin checks
    (services/http_guard.py) with the names of settings.rest_proxy_allowed_host_names."""
    return guard(FastProducePath(create_app(settings)), settings.rest_proxy_allowed_host_names)
