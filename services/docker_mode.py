"""Docker mode's view of the services: one container per service, each running `services.runner run NAME`
(services/foreground.py), which keeps `<run_dir>/<name>.ready` fresh while the service passes its readiness probe.
The container's healthcheck (scripts/docker_healthcheck.sh) and `status` read those markers."""

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


def container_states(settings: Settings) -> dict[str, dict]:
    """Docker mode (inside a container of the stack): each service's container keeps its ready marker fresh while
    it runs and passes its probe (`run_foreground`); a marker more than a few probes old means it is gone."""
    states = {}
    for marker in settings.run_dir.glob("*.ready"):
        fresh = time.time() - marker.stat().st_mtime < 4 * HEALTH_INTERVAL
        states[marker.stem] = {"name": marker.stem, "statename": "RUNNING" if fresh else "STOPPED", "pid": None}
    return states
