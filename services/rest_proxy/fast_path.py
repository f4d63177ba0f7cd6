"""ASGI fast path for the hottest route, `POST /topics/{topic}` (v2 produce), wrapped around the FastAPI app.

On 2 cores the proxy's throughput is bounded by Python CPU per request. FastAPI's middleware stack (telemetry,
body limit, error middleware), routing and dependency solving cost more per single-record request than parsing
and producing it (cProfile), so this wrapper answers that one route itself, with the same `produce.produce`
function, error table and bytes on the wire, and hands everything else (lifespan, every other route, the OpenAPI
document that also describes this one) to FastAPI. The FastAPI route for it stays: it documents the contract and
serves the app when it runs without this wrapper (e.g. in TestClient without it).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from services.rest_proxy.errors import Error, RestError
from services.rest_proxy.parsing import V2_JSON
from services.rest_proxy.produce import produce

log = logging.getLogger("rest_proxy.fast_path")

PREFIX = "/topics/"
CONTENT_TYPE = V2_JSON.encode()


class FastProducePath:
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(PREFIX) and len(path) > len(PREFIX) and "/" not in path[len(PREFIX) :]:
                await self._produce(scope, receive, send, path[len(PREFIX) :])
                return
        await self.app(scope, receive, send)

    async def _produce(self, scope: Scope, receive: Receive, send: Send, topic: str) -> None:
        content_type = accept = content_length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"content-length":
                content_length = value
        extra: dict[str, str] = {}
        try:
            status = 200
            content = await produce(self.app.state.proxy, topic, None, content_type, accept, content_length, receive)
        except RestError as error:
            status, content, extra = error.status, error.body(), error.headers
        except Exception:
            log.exception("unhandled error producing to %s", topic)
            error = RestError(Error.INTERNAL)
            status, content = error.status, error.body()
        headers = [(b"content-type", CONTENT_TYPE), (b"content-length", str(len(content)).encode())]
        headers += [(name.encode(), value.encode()) for name, value in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
