"""Host and Origin checks for the HTTP services the project owns (the REST proxy; a console later), as ASGI middleware.

Why: a service on 127.0.0.1 is still reachable from any web page the user opens. DNS rebinding gives a page's own
host name the loopback address, so the browser sends requests (and reads answers) with that name in `Host`; and a
cross-site page can send "simple" requests (a POST with an empty or text/plain body, no preflight) whose answers it
cannot read but whose effects happen. So:
- `Host` must be one of the service's names: Starlette's TrustedHostMiddleware (400 "Invalid host header" else);
- a request with an `Origin` header (browsers send it on cross-origin requests and on every POST) must come from a
  page on one of those names (any port: the same machine's own pages), else 403. `Origin: null` (sandboxed
  frames, file pages, some redirects) is refused too. Clients that are not browsers send no Origin and pass.
TrustedHostMiddleware does not look at Origin; the small check below does, with the same list of names.
A service keeps its own content-type rules (the REST proxy requires its JSON media types on every POST, 415).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

import orjson
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send


def host_patterns(names: Iterable[str]) -> list[str]:
    """Names as TrustedHostMiddleware compares them: lower case, IPv6 literals in brackets (as in a Host header)."""
    patterns = []
    for name in names:
        name = name.strip().lower()
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"
        if name:
            patterns.append(name)
    return patterns


class OriginCheck:
    """403 for a request whose Origin header names a host outside `allowed_hosts`."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(pattern.strip("[]") for pattern in host_patterns(allowed_hosts))

    def allows(self, origin: str) -> bool:
        try:
            host = urlsplit(origin).hostname  # lower case, no brackets, no port
        except ValueError:
            return False
        return host is not None and host in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"origin" and not self.allows(value.decode("latin-1")):
                    await self._refuse(send, value.decode("latin-1"))
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send: Send, origin: str) -> None:
        body = orjson.dumps({"error_code": 403, "message": f"Origin {origin[:200]!r} is not allowed"})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def guard(app: ASGIApp, allowed_hosts: Iterable[str]) -> ASGIApp:
    """`app` behind the Host check (TrustedHostMiddleware) and then the Origin check, with the same names."""
    patterns = host_patterns(allowed_hosts)
    return TrustedHostMiddleware(OriginCheck(app, patterns), allowed_hosts=patterns, www_redirect=False)
