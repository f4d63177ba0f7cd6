"""Integration fixtures: they attach to the running stack (`make up`, native or Docker mode: services/stack.py) and fail with
a clear message when a service the test needs is not ready. Tests never start or stop the stack as a whole; the fault
tests stop, kill and start single services through `stack_control`, the same way in both modes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.settings import REPO_ROOT, Settings, load_settings
from services.stack import Stack, StackError, current_stack, stack_settings
from services.stack import stack_mode as detect_stack_mode

TEST_USER_ID = "7e57c0de0001"
TEST_DATABASE = "pinterest_data_test"
TEST_USER_PREFIX = "7e57c0de"  # every user id the tests own starts with it


def pytest_configure(config):
    """In Docker mode every `load_settings()` of the tests and of the commands they run must see the containers'
    state folder (invoke URL, API key, Airflow password, data) and the host's tools (venvs, jars): set both in the
    environment once, before any test reads settings."""
    if detect_stack_mode() == "docker":
        docker_settings = stack_settings("docker")
        os.environ["STATE_DIR"] = str(docker_settings.state_dir)
        os.environ["INSTALL_DIR"] = str(docker_settings.tools_dir)


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack_mode() -> str:
    """`native` or `docker`: how the stack runs (scripts/stack_mode.sh, which honours STACK)."""
    return detect_stack_mode()


@pytest.fixture(scope="session")
def settings(stack_mode) -> Settings:
    """Settings of the running stack, with a test user id and database so tests never touch a user's data. In Docker
    mode its state folder is the containers' (`.state/docker-state`): invoke URL, API key, data, logs."""
    return stack_settings(stack_mode, pipeline_user_id=TEST_USER_ID, mysql_database=TEST_DATABASE)


@pytest.fixture(scope="session")
def stack_control(settings, stack_mode) -> Stack:
    """The running stack as a `Stack` (services/stack.py): states, start, stop, kill -9, logs of single services."""
    return current_stack(settings, stack_mode)


@pytest.fixture(scope="session")
def stack(settings, stack_control):
    """The running stack's services, by name; fails early, naming what to run, if one is not ready."""
    try:
        states = stack_control.states()
    except StackError as error:
        pytest.fail(f"cannot read the stack's state ({error}): run `make up` first")
    if not states:
        pytest.fail("the stack is not running: run `make up` first (make test does it for you)")
    services = stack_control.services()

    def require(*names: str) -> None:
        for name in names:
            if states.get(name) != "RUNNING":
                pytest.fail(f"service {name} is not running: run `make up`, then `make status`")
            services[name].ready(settings)

    return require


@pytest.fixture(scope="session")
def child_env(settings):
    """Environment for commands run as a user would run them, pointed at the test user id and database."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PIPELINE_ENV_FILE": os.devnull,
        "PIPELINE_USER_ID": settings.pipeline_user_id,
        "MYSQL_DATABASE": settings.mysql_database,
    }


@pytest.fixture(scope="session")
def run_module(child_env, settings, stack_control):
    """Run `python -m module args` where the user's make targets run it (natively with the venv, in Docker mode in
    a one-off container of the project image); returns the CompletedProcess (text output)."""

    def run(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
        if stack_control.mode == "docker":
            given = {"PIPELINE_USER_ID": settings.pipeline_user_id, "MYSQL_DATABASE": settings.mysql_database}
            command, command_env = stack_control.python_command(module, *args, env={**given, **(env or {})})
        else:
            command, command_env = [sys.executable, "-m", module, *args], {**child_env, **(env or {})}
        return subprocess.run(command, cwd=REPO_ROOT, env=command_env, capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture(scope="session", autouse=True)
def delete_test_streams():
    """After the session, delete the Kinesis streams of the tests' user ids, so test data does not pile up in the
    Kinesis store (services/kinesis) from run to run."""
    yield
    import boto3

    from services.provision.aws import delete_streams

    settings = load_settings()
    try:
        kinesis = boto3.client("kinesis", **settings.boto3_client_kwargs("kinesis"))
        names = kinesis.list_streams(Limit=1000).get("StreamNames", [])
        delete_streams(settings, [name for name in names if f"-{TEST_USER_PREFIX}" in name])
    except Exception as error:  # the stack may be down after a failed run: the cleanup must not hide the cause
        print(f"note: could not delete the tests' Kinesis streams: {error}")
