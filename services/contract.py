"""What a service of the stack is: the description each `services/<name>/service.py` returns.

A leaf module: it imports nothing of the runner, so the service modules, the registry, supervisord's side and the
command line all depend on it and never on each other in a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pipeline.settings import Settings


class NotReady(Exception):
    """A readiness probe failed; the message says what was tried."""


def get_ok(url: str, timeout: float) -> httpx.Response:
    """A readiness probe's `GET url`: the 200 response, else NotReady naming the URL and the error or the answer."""
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as error:
        raise NotReady(f"GET {url} failed: {error}") from error
    if response.status_code != 200:
        raise NotReady(f"GET {url} answered {response.status_code}: {response.text[:200]}")
    return response


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    ports: tuple[int, ...]
    ready: Callable[[Settings], None]
    where: str
    prepare: Callable[[Settings], None] | None = None
    after_ready: Callable[[Settings], None] | None = None
    depends_on: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None
    ready_timeout: float = 60.0
    stop_timeout: int = 15
    # Started only when named with --only (e.g. the streaming job: `make stream`), never by a plain `up`.
    on_demand: bool = False
    # supervisor's stopsignal; the streaming job uses INT, which its Spark JVM ignores, so the driver stops cleanly.
    stop_signal: str = "TERM"
    # What a ready service can fall into while it runs and that `status` must show, but that `up` must not wait
    # for, because restarting the process does not cure it and what does runs after `up` (Connect: a FAILED
    # connector task, which provisioning restarts). Raises NotReady like `ready`.
    health: Callable[[Settings], None] | None = None
