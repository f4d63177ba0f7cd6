"""Native stack runner: `python -m services.runner up|down|status|clean`.

The services are real processes supervised by `supervisord` (from PyPI); this module only writes its config,
asks it over its XML-RPC socket to start or stop programs, and checks readiness with a real request per service.
Each service lives in `services/<name>/service.py` and returns a `Service` description; `services.registry`
lists them in start order.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.processes import alive
from pipeline.settings import Settings, get_settings


class NotReady(Exception):
    """A readiness probe failed; the message says what was tried."""


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


def log_file(settings: Settings, name: str) -> Path:
    return settings.log_dir / f"{name}.log"


# --- supervisord ---------------------------------------------------------------------------------------------
def _conf_path(settings: Settings) -> Path:
    return settings.run_dir / "supervisord.conf"


def _socket_path(settings: Settings) -> Path:
    return settings.run_dir / "supervisor.sock"


def _pid_path(settings: Settings) -> Path:
    return settings.run_dir / "supervisord.pid"


def _quote(arg: str) -> str:
    # supervisor splits `command` with shlex; percent signs are config interpolation.
    import shlex

    return shlex.quote(arg).replace("%", "%%")


def write_supervisor_config(settings: Settings, services: list[Service]) -> Path:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "[unix_http_server]",
        f"file={_socket_path(settings)}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={settings.log_dir / 'supervisord.log'}",
        f"pidfile={_pid_path(settings)}",
        f"directory={settings.state_dir}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_socket_path(settings)}",
        "",
    ]
    base_env = {"PYTHONUNBUFFERED": "1"}
    for service in services:
        env = {**base_env, **service.env}
        env_line = ",".join(f'{key}="{value.replace("%", "%%")}"' for key, value in env.items())
        lines += [
            f"[program:{service.name}]",
            "command=" + " ".join(_quote(arg) for arg in service.command),
            f"directory={service.directory or settings.state_dir}",
            "autostart=false",
            "autorestart=unexpected",
            "startsecs=1",
            "startretries=1",
            f"stopwaitsecs={service.stop_timeout}",
            *([f"stopsignal={service.stop_signal}"] if service.stop_signal != "TERM" else []),
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={log_file(settings, service.name)}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=2",
            f"environment={env_line}",
            "",
        ]
    path = _conf_path(settings)
    path.write_text("\n".join(lines))
    return path


def _rpc(settings: Settings):
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{_socket_path(settings)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def supervisor_running(settings: Settings) -> bool:
    if not _socket_path(settings).exists():
        return False
    try:
        return _rpc(settings).supervisor.getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Fault):
        return False


def _supervisor_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def start_supervisor(settings: Settings, conf: Path) -> None:
    if supervisor_running(settings):
        subprocess.run([_supervisor_bin("supervisorctl"), "-c", str(conf), "update"], check=True, capture_output=True)
        return
    _socket_path(settings).unlink(missing_ok=True)
    subprocess.run([_supervisor_bin("supervisord"), "-c", str(conf)], check=True)
    deadline = time.monotonic() + 10
    while not supervisor_running(settings):
        if time.monotonic() > deadline:
            raise SystemExit(f"supervisord did not start; see {settings.log_dir / 'supervisord.log'}")
        time.sleep(0.1)


def in_docker_stack() -> bool:
    """True inside a container of the Docker-mode stack (docker-compose.yml sets PIPELINE_STACK=docker)."""
    return os.environ.get("PIPELINE_STACK") == "docker"


def process_states(settings: Settings) -> dict[str, dict]:
    if in_docker_stack():
        return _container_states(settings)
    if not supervisor_running(settings):
        return {}
    return {info["name"]: info for info in _rpc(settings).supervisor.getAllProcessInfo()}


def _container_states(settings: Settings) -> dict[str, dict]:
    """Docker mode (inside a container of the stack): each service's container keeps its ready marker fresh while
    it runs and passes its probe (`run_foreground`); a marker more than a few probes old means it is gone."""
    states = {}
    for marker in settings.run_dir.glob("*.ready"):
        fresh = time.time() - marker.stat().st_mtime < 4 * HEALTH_INTERVAL
        states[marker.stem] = {"name": marker.stem, "statename": "RUNNING" if fresh else "STOPPED", "pid": None}
    return states


# --- checks --------------------------------------------------------------------------------------------------
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


# --- commands ------------------------------------------------------------------------------------------------
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
    for directory in (settings.data_dir, settings.log_dir, settings.run_dir):
        directory.mkdir(parents=True, exist_ok=True)
    states = process_states(settings)
    check_ports_free(settings, services, states)
    conf = write_supervisor_config(settings, configured)
    for service in services:
        if service.prepare:
            service.prepare(settings)
    start_supervisor(settings, conf)
    rpc = _rpc(settings)
    for wave in _waves(services):
        for service in wave:
            if process_states(settings).get(service.name, {}).get("statename") not in ("RUNNING", "STARTING"):
                print(f"starting {service.name} ...", flush=True)
                try:
                    rpc.supervisor.startProcess(service.name, False)
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
    pid = int(_pid_path(settings).read_text()) if _pid_path(settings).exists() else None
    print("stopping services (data is kept) ...", flush=True)
    rpc = _rpc(settings)
    for info in reversed(rpc.supervisor.getAllProcessInfo()):
        _stop_if_active(rpc, info["name"], info["statename"])
    rpc.supervisor.shutdown()
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
    rpc = _rpc(settings)
    states = {info["name"]: info["statename"] for info in rpc.supervisor.getAllProcessInfo()}
    for service in reversed(services):  # dependents first, as a full stop does
        if not _stop_if_active(rpc, service.name, states.get(service.name)):
            print(f"  {service.name} is not running")


def _stop_if_active(rpc, name: str, state: str | None) -> bool:
    """Stop one supervised process (waiting for it) if it is running or starting; False when it was not."""
    if state not in ("RUNNING", "STARTING", "BACKOFF"):
        return False
    print(f"  stopping {name}", flush=True)
    try:
        rpc.supervisor.stopProcess(name, True)
    except xmlrpc.client.Fault as fault:
        print(f"  {name}: {fault.faultString}")
    return True


def status(settings: Settings, services: list[Service]) -> int:
    states = process_states(settings)
    if not states:
        print("stack is not running (make up starts it)")
        return 1
    unhealthy = 0
    width = max(len(s.name) for s in services) + 1
    for service in services:
        info = states.get(service.name, {})
        state = info.get("statename", "NOT CONFIGURED")
        health = ""
        if state == "RUNNING":
            try:
                service.ready(settings)
                health = "ready"
            except Exception as error:  # reported as NOT READY
                health = f"NOT READY ({error})"
                unhealthy += 1
        else:
            unhealthy += 1
        pid = f"pid {info['pid']}" if info.get("pid") else ""
        print(f"{service.name:<{width}} {state:<9} {health:<10} {pid:<10} {service.where}")
        where_log = f"docker compose logs {service.name}" if in_docker_stack() else log_file(settings, service.name)
        print(f"{'':<{width}} log: {where_log}")
    return 1 if unhealthy else 0


def clean(settings: Settings, services: list[Service]) -> None:
    down(settings, services)
    for directory in (settings.data_dir, settings.log_dir, settings.run_dir):
        if directory.exists():
            shutil.rmtree(directory)
            print("removed", directory)
    settings.invoke_url_file.unlink(missing_ok=True)


# --- one service in the foreground (Docker mode: one container per service) ------------------------------------
HEALTH_INTERVAL = 5.0


def _ready_marker(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.ready"


RESTART_AFTER_SECONDS = 10.0  # a child that ran this long and then failed is restarted in place, as supervisord does


def run_foreground(settings: Settings, service: Service) -> int:
    """`run NAME`: the container's main process. Runs the service as supervisord does natively: prepare, the same
    command and environment, readiness, after_ready, and a restart in place when the program exits unexpectedly
    (autorestart=unexpected), so whatever the program left running in the container (kinesis-mock beside a killed
    LocalStack launcher) is found by the next start exactly as natively. Output goes to stdout for `docker logs`;
    SIGTERM/SIGINT are forwarded as the service's stop signal; a program that fails again within
    RESTART_AFTER_SECONDS ends the container (exit code of the program), whose restart policy takes over.

    While the service runs, this process repeats the readiness probe (a real request) every HEALTH_INTERVAL seconds
    and keeps `<run_dir>/<name>.ready` fresh while it passes: the container's healthcheck only looks at that file's
    age, so health costs no new interpreter per check. `<run_dir>/<name>.pid` holds the program's pid."""
    import signal

    for directory in (settings.data_dir, settings.log_dir, settings.run_dir):
        directory.mkdir(parents=True, exist_ok=True)
    marker = _ready_marker(settings, service.name)
    stop_signal = getattr(signal, f"SIG{service.stop_signal}")
    state = {"stopping": False, "child": None}

    def forward(_signum, _frame) -> None:
        state["stopping"] = True
        marker.unlink(missing_ok=True)
        if state["child"] is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state["child"].pid, stop_signal)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        code, ran_for = _run_once(settings, service, marker, state, forward)
        if state["stopping"] or code == 0 or ran_for < RESTART_AFTER_SECONDS:
            return 128 - code if code < 0 else code
        print(f"{service.name} exited unexpectedly after {ran_for:.0f} s; restarting it", flush=True)


def _run_once(settings: Settings, service: Service, marker: Path, state: dict, forward) -> tuple[int, float]:
    """One start of the program, watched until it exits: (its exit code, seconds it ran)."""
    marker.unlink(missing_ok=True)
    if service.prepare:
        service.prepare(settings)
    print(f"starting {service.name}: {' '.join(service.command)}", flush=True)
    child = subprocess.Popen(
        service.command,
        cwd=service.directory or settings.state_dir,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **service.env},
        start_new_session=True,
    )
    state["child"] = child
    (settings.run_dir / f"{service.name}.pid").write_text(str(child.pid))
    started = time.monotonic()
    ready_once = False
    next_probe = started
    while child.poll() is None:
        if not state["stopping"] and time.monotonic() >= next_probe:
            try:
                service.ready(settings)
                if not ready_once:
                    ready_once = True
                    if service.after_ready:
                        service.after_ready(settings)
                    print(f"{service.name} ready ({time.monotonic() - started:.1f} s)  {service.where}", flush=True)
                marker.write_text(str(child.pid))
            except Exception as error:  # not ready (yet, or any more)
                if ready_once and marker.exists():
                    print(f"{service.name} NOT READY: {error}", flush=True)
                marker.unlink(missing_ok=True)
                if not ready_once and time.monotonic() - started > service.ready_timeout:
                    print(f"{service.name} not ready at {service.where} after {service.ready_timeout:.0f} s ({error})")
                    forward(None, None)
            next_probe = time.monotonic() + (HEALTH_INTERVAL if ready_once else 0.5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=0.5)
    marker.unlink(missing_ok=True)
    print(f"{service.name} exited with code {child.returncode}", flush=True)
    return child.returncode, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.runner", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "clean", "run"])
    parser.add_argument("name", nargs="?", help="run: the one service to run in the foreground (a container's command)")
    parser.add_argument("--only", nargs="*", help="service names to act on (default: all)")
    args = parser.parse_args(argv)
    settings = get_settings()
    from services.registry import all_services

    configured = services = all_services(settings)
    if args.command == "run":
        by_name = {s.name: s for s in services}
        if args.name not in by_name:
            raise SystemExit(f"run needs one service name of: {', '.join(by_name)}")
        return run_foreground(settings, by_name[args.name])
    if args.only:
        unknown = set(args.only) - {s.name for s in services}
        if unknown:
            raise SystemExit(f"unknown service(s): {', '.join(sorted(unknown))}")
        services = [s for s in services if s.name in args.only]
    else:
        running = {name for name, info in process_states(settings).items() if info["statename"] == "RUNNING"}
        services = [s for s in services if not s.on_demand or s.name in running]
    if args.command == "up":
        up(settings, configured, services)
    elif args.command == "down":
        if args.only:
            stop_only(settings, services)
        else:
            down(settings, configured)
    elif args.command == "status":
        return status(settings, services)
    else:
        clean(settings, configured)
    return 0


if __name__ == "__main__":
    sys.exit(main())
