"""The console: a read-only web page of the running pipeline (services/console/app.py), on CONSOLE_PORT."""

from __future__ import annotations

import sys

import httpx

from pipeline.settings import REPO_ROOT, Settings
from services.contract import NotReady, Service


def ready(settings: Settings) -> None:
    url = f"{settings.console_url}/healthz"
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError as error:
        raise NotReady(f"GET {url} failed: {error}") from error
    if response.status_code != 200:
        raise NotReady(f"GET {url} answered {response.status_code}")


def service(settings: Settings) -> Service:
    return Service(
        name="console",
        command=[sys.executable, "-m", "services.console"],
        ports=(settings.console_port,),
        ready=ready,
        where=f"{settings.console_url} (open it in a browser; make open)",
        directory=REPO_ROOT,
        ready_timeout=60,
        stop_timeout=10,
    )
