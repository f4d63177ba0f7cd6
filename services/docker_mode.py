"""Docker mode's view of the services: one container per service, each running `services.runner run NAME`
(services/foreground.py), which keeps `<run_dir>/<name>.running` fresh while the service's program runs and
`<run_dir>/<name>.ready` fresh while it also passes its readiness probe. The container's healthcheck
(scripts/docker_healthcheck.sh) reads the ready marker; `status` reads the running markers for the process state,
as natively from supervisord, and runs each running service's probe itself."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pipeline.settings import Settings

HEALTH_INTERVAL = 5.0


def in_docker_stack() -> bool:
    """True inside a container of the Docker-mode stack (docker-compose.yml sets PIPELINE_STACK=docker)."""
    return os.environ.get("PIPELINE_STACK") == "docker"


def ready_marker(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.ready"


def running_marker(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.running"


def container_states(settings: Settings) -> dict[str, dict]:
    """Docker mode (inside a container of the stack): each service's container keeps its running marker fresh while
    its program runs (`run_foreground`), ready or not; a marker more than a few intervals old means it is gone.
    Whether it is ready is the status's own probe, as in native mode, where a running program that fails its probe
    is RUNNING and NOT READY."""
    states = {}
    for marker in settings.run_dir.glob("*.running"):
        fresh = time.time() - marker.stat().st_mtime < 4 * HEALTH_INTERVAL
        states[marker.stem] = {"name": marker.stem, "statename": "RUNNING" if fresh else "STOPPED", "pid": None}
    return states
