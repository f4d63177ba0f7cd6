"""Is each service up and ready? The process states (supervisord's natively, the ready markers in Docker mode),
the readiness wait with its clear error, and the check that a service's ports are free before it starts."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from pipeline.settings import Settings
from services.contract import Service
from services.docker_mode import container_states, in_docker_stack
from services.supervisor import log_file, program_states


def process_states(settings: Settings) -> dict[str, dict]:
    return container_states(settings) if in_docker_stack() else program_states(settings)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def check_ports_free(settings: Settings, services: list[Service], states: dict[str, dict]) -> None:
    problems = []
    for service in services:
        if states.get(service.name, {}).get("statename") in ("RUNNING", "STARTING"):
            continue
        for port in service.ports:
            if port_in_use(settings.bind_host, port):
                problems.append(
                    f"port {port} ({service.name}) on {settings.bind_host} is already taken by another process. "
                    f"Stop it (find it with: ss -ltnp 'sport = :{port}'; if it is the Docker-mode stack, `make down` "
                    "stops it) or change the port in .env."
                )
    if problems:
        raise SystemExit("Cannot start the stack:\n  " + "\n  ".join(problems))


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log yet)"
    content = path.read_text(errors="replace").splitlines()
    return "\n".join("    " + line for line in content[-lines:])


def wait_ready(settings: Settings, service: Service) -> float:
    """Poll the service's readiness probe until it passes; raise SystemExit naming the log when it does not."""
    started = time.monotonic()
    deadline = started + service.ready_timeout
    last_error = "not checked yet"
    while time.monotonic() < deadline:
        state = process_states(settings).get(service.name, {}).get("statename")
        if state in ("FATAL", "EXITED", "BACKOFF", "STOPPED"):
            last_error = f"process is {state}"
            break
        try:
            service.ready(settings)
            return time.monotonic() - started
        except Exception as error:  # any failure of the probe means "not ready yet"
            last_error = str(error) or type(error).__name__
        time.sleep(0.3)
    log = log_file(settings, service.name)
    raise SystemExit(
        f"{service.name} not ready at {service.where} after {time.monotonic() - started:.0f} s ({last_error}); "
        f"see {log}\n{tail(log)}"
    )
