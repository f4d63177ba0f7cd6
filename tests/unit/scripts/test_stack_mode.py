"""scripts/stack_mode.sh: docker when an engine answers, native otherwise, STACK forces, `make up` is remembered.

A fake `docker` executable on PATH plays an engine that answers or not; nothing here needs Docker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.settings import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "stack_mode.sh"


def fake_docker(folder: Path, engine_up: bool) -> None:
    """`docker info` and `docker compose version` succeed only when the engine is up."""
    docker = folder / "docker"
    docker.write_text(f"#!/bin/sh\nexit {0 if engine_up else 1}\n")
    docker.chmod(0o755)


def run(tmp_path: Path, engine: bool | None, stack: str | None = None, recorded: str | None = None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if engine is not None:
        fake_docker(bin_dir, engine)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    if recorded:
        (state / "stack_mode").write_text(recorded + "\n")
    # Only the tools the script uses, so a real docker on this machine's PATH cannot answer for the fake one.
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    for tool in ("dirname", "timeout", "grep", "cat"):
        if not (tools / tool).exists():
            (tools / tool).symlink_to(shutil.which(tool))
    env = {"PATH": f"{bin_dir}:{tools}", "STATE_DIR": str(state)}
    if stack is not None:
        env["STACK"] = stack
    return subprocess.run([shutil.which("bash"), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("engine", "stack", "recorded", "expected"),
    [
        (True, None, None, "docker"),  # an engine answers
        (False, None, None, "native"),  # docker CLI present, engine down
        (None, None, None, "native"),  # no docker CLI at all
        (True, "native", None, "native"),  # forced
        (True, "auto", None, "docker"),
        (True, None, "native", "native"),  # `make up` ran natively: down/status follow it
        (False, None, "docker", "docker"),  # ... and docker: `make down` still goes to compose
        (False, "native", "docker", "native"),  # STACK beats the record
    ],
)
def test_mode(tmp_path, engine, stack, recorded, expected):
    result = run(tmp_path, engine, stack, recorded)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_forcing_docker_without_an_engine_says_make_up_sets_one_up(tmp_path):
    result = run(tmp_path, engine=False, stack="docker")
    assert result.returncode == 0
    assert result.stdout.strip() == "docker"
    assert "no Docker engine" in result.stderr and "make up" in result.stderr


def test_an_unknown_stack_is_an_error(tmp_path):
    result = run(tmp_path, engine=True, stack="kubernetes")
    assert result.returncode == 2
    assert "not one of native, docker, auto" in result.stderr


def test_scripts_are_executable():
    for name in ("stack_mode.sh", "compose_up.sh"):
        assert os.access(REPO_ROOT / "scripts" / name, os.X_OK), name
