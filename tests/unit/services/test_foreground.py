"""Docker mode's per-container runner (services/foreground.py) and the states `status` reads from its markers
(services/docker_mode.py), with a real child process: a program that runs but fails its probe is RUNNING (and the
status's own probe then says NOT READY), as supervisord reports it natively; only a program that passes its probe
has a ready marker, the one the container's healthcheck reads; both markers go when the program exits."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from pipeline.settings import load_settings
from services import docker_mode, foreground
from services.contract import NotReady, Service


@pytest.fixture
def settings(tmp_path):
    settings = load_settings(_env_file=None, state_dir=tmp_path / "state")
    settings.run_dir.mkdir(parents=True)
    return settings


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def run_in_thread(settings, service: Service) -> threading.Thread:
    state = {"stopping": False, "child": None}
    marker = docker_mode.ready_marker(settings, service.name)
    thread = threading.Thread(
        target=foreground._run_once, args=(settings, service, marker, state, lambda *_: None), daemon=True
    )
    thread.start()
    return thread


def program(seconds: float) -> list[str]:
    return [sys.executable, "-c", f"import time; time.sleep({seconds})"]


def test_a_running_program_that_fails_its_probe_is_running_not_ready_and_gone_once_it_exits(settings, tmp_path):
    probes = []

    def never_ready(_settings) -> None:
        probes.append(time.monotonic())
        raise NotReady("the store behind it is down")

    service = Service(name="door", command=program(3), ports=(), ready=never_ready, where="here", directory=tmp_path)
    thread = run_in_thread(settings, service)
    wait_for(lambda: probes)
    wait_for(lambda: docker_mode.running_marker(settings, "door").exists())
    states = docker_mode.container_states(settings)
    assert states["door"]["statename"] == "RUNNING"
    assert not docker_mode.ready_marker(settings, "door").exists(), "the healthcheck must not see it healthy"
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert "door" not in docker_mode.container_states(settings)
    assert not docker_mode.running_marker(settings, "door").exists()


def test_a_ready_program_has_both_markers(settings, tmp_path):
    service = Service(
        name="store", command=program(2), ports=(), ready=lambda _s: None, where="here", directory=tmp_path
    )
    thread = run_in_thread(settings, service)
    wait_for(lambda: docker_mode.ready_marker(settings, "store").exists())
    assert docker_mode.container_states(settings)["store"]["statename"] == "RUNNING"
    thread.join(timeout=15)
    assert not docker_mode.ready_marker(settings, "store").exists()
    assert not docker_mode.running_marker(settings, "store").exists()


def test_a_running_marker_not_refreshed_for_a_few_intervals_is_stopped(settings):
    """A container killed with SIGKILL leaves its marker behind: it ages into STOPPED."""
    marker = docker_mode.running_marker(settings, "gone")
    marker.write_text("123")
    old = time.time() - 5 * docker_mode.HEALTH_INTERVAL
    os.utime(marker, (old, old))
    docker_mode.ready_marker(settings, "ready-only").write_text("1")  # a ready marker alone is no process state
    assert docker_mode.container_states(settings) == {"gone": {"name": "gone", "statename": "STOPPED", "pid": None}}
