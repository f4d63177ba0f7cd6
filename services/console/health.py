"""The console's Services page: each service's state and health (the checks of `make status`) and its log's tail."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pipeline.settings import Settings
from services.commands import service_health
from services.readiness import process_states
from services.registry import all_services
from services.supervisor import log_file

TAIL_BYTES = 512 * 1024


def health(settings: Settings) -> list[dict]:
    """`service_health` of every service, the probes run side by side (a stopped service's probe waits for its
    timeout; the page should not wait for each in turn)."""
    services = all_services(settings)
    states = process_states(settings)
    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = pool.map(lambda service: service_health(settings, [service], states)[0], services)
    return list(rows)


def log_tail(settings: Settings, name: str, lines: int) -> str:
    """The last `lines` lines of the service's log file (both modes write one: services/foreground.py)."""
    names = {service.name for service in all_services(settings)}
    if name not in names:
        return f"unknown service {name!r}; services: {', '.join(sorted(names))}"
    path = log_file(settings, name)
    if not path.exists():
        return f"(no log yet at {path})"
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - TAIL_BYTES))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
