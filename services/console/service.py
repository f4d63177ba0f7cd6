"""The console: a read-only web page of the running pipeline (services/console/app.py), on CONSOLE_PORT."""

from __future__ import annotations

import sys

from pipeline.settings import REPO_ROOT, Settings
from services.contract import Service, get_ok


def ready(settings: Settings) -> None:
    get_ok(f"{settings.console_url}/healthz", timeout=2.0)


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
