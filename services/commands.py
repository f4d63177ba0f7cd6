"""The stack's commands over supervisord (native mode): up, down (all, or `--only` some), status and clean.
`services.runner` is their command line; the services come from `services.registry`."""

from __future__ import annotations

import shutil
import time
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor

from pipeline.private import private_dir
from pipeline.processes import alive
from pipeline.settings import Settings
from services.contract import Service
from services.docker_mode import in_docker_stack
from services.readiness import check_ports_free, port_in_use, process_states, wait_ready
from services.supervisor import (
    log_file,
    pid_path,
    rpc,
    start_supervisor,
    stop_if_active,
    supervisor_running,
    write_supervisor_config,
)


def _waves(services: list[Service]) -> list[list[Service]]:
    done: set[str] = set()
    names = {s.name for s in services}
    remaining = list(services)
    waves = []
    while remaining:
        wave = [s for s in remaining if all(d in done or d not in names for d in s.depends_on)]
        if not wave:
            raise SystemExit("service dependencies form a cycle: " + ", ".join(s.name for s in remaining))
        waves.append(wave)
        done.update(s.name for s in wave)
        remaining = [s for s in remaining if s not in wave]
    return waves


def up(settings: Settings, configured: list[Service], services: list[Service]) -> None:
    """Start `services` (a subset of `configured`, in order) and wait until each is ready. Idempotent."""
    private_dir(settings.state_dir)  # secrets, data and logs: the owner's only
    for directory in (settings.data_dir, settings.log_dir, settings.run_dir):
        directory.mkdir(parents=True, exist_ok=True)
    states = process_states(settings)
    check_ports_free(settings, services, states)
    conf = write_supervisor_config(settings, configured)
    for service in services:
        if service.prepare:
            service.prepare(settings)
    start_supervisor(settings, conf)
    server = rpc(settings)
    for wave in _waves(services):
        for service in wave:
            if process_states(settings).get(service.name, {}).get("statename") not in ("RUNNING", "STARTING"):
                print(f"starting {service.name} ...", flush=True)
                try:
                    server.supervisor.startProcess(service.name, False)
                except xmlrpc.client.Fault as fault:
                    if "ALREADY_STARTED" not in fault.faultString:
                        raise SystemExit(
                            f"{service.name} failed to start ({fault.faultString}); see {log_file(settings, service.name)}"
                        ) from None
        with ThreadPoolExecutor(max_workers=len(wave)) as pool:
            waited = dict(zip([s.name for s in wave], pool.map(lambda s: wait_ready(settings, s), wave), strict=True))
        for service in wave:
            if service.after_ready:
                service.after_ready(settings)
            print(f"  {service.name:<22} ready ({waited[service.name]:.1f} s)  {service.where}", flush=True)
    print("stack is up; logs in", settings.log_dir)


def down(settings: Settings, services: list[Service]) -> None:
    if not supervisor_running(settings):
        print("stack is not running")
        return
    pid = int(pid_path(settings).read_text()) if pid_path(settings).exists() else None
    print("stopping services (data is kept) ...", flush=True)
    server = rpc(settings)
    for info in reversed(server.supervisor.getAllProcessInfo()):
        stop_if_active(server, info["name"], info["statename"])
    server.supervisor.shutdown()
    deadline = time.monotonic() + 30
    while pid and alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Some servers (e.g. Airflow's api-server workers) release their port a moment after supervisord reports them
    # stopped; wait for that, so `make down && make up` does not trip over our own ports.
    ports = [(s.name, p) for s in services for p in s.ports]
    while time.monotonic() < deadline and any(port_in_use(settings.bind_host, p) for _, p in ports):
        time.sleep(0.2)
    for name, port in ports:
        if port_in_use(settings.bind_host, port):
            print(f"  warning: port {port} ({name}) is still in use after the stop")
    print("stack is down")


def stop_only(settings: Settings, services: list[Service]) -> None:
    """`down --only NAME...`: stop those services and leave the rest of the stack (and supervisord) running."""
    if not supervisor_running(settings):
        print("stack is not running")
        return
    server = rpc(settings)
    states = {info["name"]: info["statename"] for info in server.supervisor.getAllProcessInfo()}
    for service in reversed(services):  # dependents first, as a full stop does
        if not stop_if_active(server, service.name, states.get(service.name)):
            print(f"  {service.name} is not running")


def status(settings: Settings, services: list[Service]) -> int:
    states = process_states(settings)
    if not states:
        print("stack is not running (make up starts it)")
        return 1
    width = max(len(s.name) for s in services) + 1
    rows = service_health(settings, services, states)
    for row in rows:
        pid = f"pid {row['pid']}" if row["pid"] else ""
        print(f"{row['name']:<{width}} {row['state']:<9} {row['health']:<10} {pid:<10} {row['where']}")
        print(f"{'':<{width}} log: {row['log']}")
    return 0 if all(row["ok"] for row in rows) else 1


def service_health(settings: Settings, services: list[Service], states: dict[str, dict]) -> list[dict]:
    """Per service: its process state, the result of its readiness probe and health check (real requests), its
    pid, where it serves and where its log is. `make status` prints it; the console shows it."""
    rows = []
    for service in services:
        info = states.get(service.name, {})
        state = info.get("statename", "NOT CONFIGURED")
        health, ok = "", False
        if state == "RUNNING":
            try:
                service.ready(settings)
                if service.health:
                    service.health(settings)
                health, ok = "ready", True
            except Exception as error:  # reported as NOT READY
                health = f"NOT READY ({error})"
        where_log = (
            f"docker compose logs {service.name}" if in_docker_stack() else str(log_file(settings, service.name))
        )
        rows.append(
            {
                "name": service.name,
                "state": state,
                "health": health,
                "ok": ok,
                "pid": info.get("pid"),
                "where": service.where,
                "log": where_log,
                "on_demand": service.on_demand,
            }
        )
    return rows


def clean(settings: Settings, services: list[Service]) -> None:
    down(settings, services)
    for directory in (settings.data_dir, settings.log_dir, settings.run_dir):
        if directory.exists():
            shutil.rmtree(directory)
            print("removed", directory)
    settings.invoke_url_file.unlink(missing_ok=True)
