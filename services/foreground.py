"""One service in the foreground: `python -m services.runner run NAME`, a container's main process in Docker mode
(one container per service). It runs the service's very definition as supervisord does natively, and keeps a ready
marker that the container's healthcheck (scripts/docker_healthcheck.sh) and `status` read."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipeline.private import private_dir
from pipeline.settings import Settings
from services.contract import Service
from services.docker_mode import HEALTH_INTERVAL, ready_marker, running_marker
from services.supervisor import log_file

LOG_FILE_MAX_BYTES = 20 * 1024 * 1024  # then the file moves to <name>.log.1 (one kept), as supervisord does
RESTART_AFTER_SECONDS = 10.0  # a child that ran this long and then failed is restarted in place, as supervisord does


def run_foreground(settings: Settings, service: Service) -> int:
    """`run NAME`: the container's main process. Runs the service as supervisord does natively: prepare, the same
    command and environment, readiness, after_ready, and a restart in place when the program exits unexpectedly
    (autorestart=unexpected), so whatever the program left running in the container (a child process of a killed
    program) is found by the next start exactly as natively. Output goes to stdout for `docker logs`;
    SIGTERM/SIGINT are forwarded as the service's stop signal; a program that fails again within
    RESTART_AFTER_SECONDS ends the container (exit code of the program), whose restart policy takes over.

    While the service runs, this process repeats the readiness probe (a real request) every HEALTH_INTERVAL seconds
    and keeps `<run_dir>/<name>.ready` fresh while it passes: the container's healthcheck only looks at that file's
    age, so health costs no new interpreter per check. `<run_dir>/<name>.running` is kept fresh while the program
    runs, ready or not (`status` reads it). `<run_dir>/<name>.pid` holds the program's pid."""
    private_dir(settings.state_dir)
    for directory in (settings.data_dir, settings.log_dir, settings.run_dir):
        directory.mkdir(parents=True, exist_ok=True)
    marker = ready_marker(settings, service.name)
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
    running = running_marker(settings, service.name)
    running.unlink(missing_ok=True)
    if service.prepare:
        service.prepare(settings)
    print(f"starting {service.name}: {' '.join(service.command)}", flush=True)
    child = subprocess.Popen(
        service.command,
        cwd=service.directory or settings.state_dir,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **service.env},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    threading.Thread(target=_copy_output, args=(child.stdout, log_file(settings, service.name)), daemon=True).start()
    state["child"] = child
    (settings.run_dir / f"{service.name}.pid").write_text(str(child.pid))
    exited = threading.Event()
    keeper = threading.Thread(target=_keep_fresh, args=(running, str(child.pid), exited), daemon=True)
    keeper.start()
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
    exited.set()
    keeper.join()
    marker.unlink(missing_ok=True)
    running.unlink(missing_ok=True)
    print(f"{service.name} exited with code {child.returncode}", flush=True)
    return child.returncode, time.monotonic() - started


def _keep_fresh(path: Path, content: str, exited: threading.Event) -> None:
    """Rewrite `path` every HEALTH_INTERVAL until `exited`: in a thread of its own, so a slow probe never ages it."""
    while not exited.is_set():
        path.write_text(content)
        exited.wait(HEALTH_INTERVAL)


def _copy_output(output, path: Path) -> None:
    """The program's output to the container's stdout (`docker logs`) and to its log file in the state folder,
    where native mode keeps it too: the console and `make logs` read the same file in both modes. The pipe is always
    drained, so a full disk or a removed folder never blocks the program."""
    handle = None
    for line in iter(output.readline, b""):
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
        try:
            if handle is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = path.open("ab")
            handle.write(line)
            handle.flush()
            if handle.tell() > LOG_FILE_MAX_BYTES:
                handle.close()
                path.replace(path.with_name(path.name + ".1"))
                handle = None
        except OSError:
            handle = None
    if handle is not None:
        handle.close()
