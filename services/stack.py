"""One way to drive the running stack, whichever mode runs it: the integration tests and `make drill` use it.

`scripts/stack_mode.sh` says which mode: `native` (each service a process under supervisord, services/runner.py)
or `docker` (each service a container of docker-compose.yml, on the host's network). Both modes serve the same
127.0.0.1 ports, so readiness probes and clients are the same; only starting, stopping, killing and reading the
logs differ, and `Stack` is that difference:

- `SupervisorStack`: supervisorctl, supervisord's process table, `os.kill(pid, SIGKILL)`, the log files.
- `ComposeStack`: `docker compose` (through testcontainers' `DockerCompose` where it fits), with the environment
  the Makefile gives it (`DOCKER_STATE_DIR`, `DOCKER_EXTRA_CA_BUNDLE`), from the repository root.

States use supervisord's names in both modes (RUNNING, STARTING, BACKOFF, STOPPED, EXITED, FATAL, ...), so a test
reads them the same way. `instance(name)` is an opaque id of the running instance that changes across a restart
(native: the pid; Docker: the container and its State.StartedAt).

A kill -9 is a crash of the service's own process in both modes: supervisord restarts the program
(autorestart=unexpected); in Docker the container's main process (services.runner `run`) starts it again in place, as
supervisord does (a program that keeps failing ends the container, whose restart policy takes over). The tests still start a killed service that is not running
(as they did when supervisord gave up); `start` works on an exited container.

In Docker mode the stack's state folder (invoke URL, API key, Airflow password, stream status, data, logs) is the
bind-mounted `<state>/docker-state`: `stack_settings()` points settings there, and their `tools_dir` (venvs, jars)
at the host's state folder.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from testcontainers.compose import ComposeContainer, DockerCompose

from pipeline.settings import REPO_ROOT, Settings, load_settings

DOCKER_STATE = "docker-state"  # Docker mode's state folder, inside the host's (scripts/stack_run.sh, Makefile)
COMPOSE_PROFILES = ("stream",)  # the on-demand streaming job is a compose service of this profile
KILL_TIMEOUT = 15.0  # seconds for the old instance to be gone after a SIGKILL


class StackError(Exception):
    """A stack operation failed; the message says what was tried and where to look."""


# --- which stack, which state folder ---------------------------------------------------------------------------
@functools.cache  # asked before conftest points STATE_DIR at Docker mode's folder
def host_state_dir() -> Path:
    """The host's state folder (STATE_DIR, default .state): venvs, jars, the recorded mode, Docker mode's folder."""
    path = Path(load_settings().state_dir)
    return path if path.is_absolute() else REPO_ROOT / path


@functools.cache
def _detect_mode(state_dir: str, stack_env: str) -> str:
    done = subprocess.run(
        [str(REPO_ROOT / "scripts" / "stack_mode.sh")],
        cwd=REPO_ROOT,
        env={**os.environ, "STATE_DIR": state_dir},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    mode = done.stdout.strip()
    if done.returncode != 0 or mode not in ("native", "docker"):
        raise StackError(f"scripts/stack_mode.sh failed (exit {done.returncode}): {done.stderr.strip() or mode!r}")
    return mode


def stack_mode(state_dir: Path | None = None) -> str:
    """`native` or `docker`, as scripts/stack_mode.sh says (it honours STACK and <state>/stack_mode); asked once."""
    return _detect_mode(str(state_dir or host_state_dir()), os.environ.get("STACK", ""))


def stack_state_dir(mode: str, host_state: Path | None = None) -> Path:
    """The running stack's state folder as the host sees it."""
    host = host_state or host_state_dir()
    return host / DOCKER_STATE if mode == "docker" else host


def stack_settings(mode: str | None = None, **overrides: object) -> Settings:
    """`load_settings(**overrides)` whose state folder is the running stack's: unchanged in native mode, the
    bind-mounted `<state>/docker-state` in Docker mode (unless `state_dir` is given)."""
    if (mode or stack_mode()) == "docker":
        overrides.setdefault("install_dir", host_state_dir())  # the host's venvs and jars, not the image's
        overrides.setdefault("state_dir", stack_state_dir("docker"))
    return load_settings(**overrides)


def provision_stack_api() -> None:
    """The stack's own API, provisioned again as `make up` does: LocalStack forgets API definitions when it restarts
    (the invoke URL is stored in the stack's state folder)."""
    from services.provision import aws

    aws.provision_api(stack_settings(), dry_run=False)


def current_stack(settings: Settings, mode: str | None = None) -> Stack:
    """The `Stack` of the mode in use (scripts/stack_mode.sh), acting with `settings` (readiness probes)."""
    if (mode or stack_mode()) == "docker":
        return ComposeStack(settings)
    return SupervisorStack(settings)


# --- the interface ---------------------------------------------------------------------------------------------
class Stack(ABC):
    """The running stack's services, by name (services/registry.py): state, start, stop, kill -9, logs."""

    mode: str
    # States from which a service will not become ready unless it is started: wait_ready stops waiting on them.
    down_states: tuple[str, ...] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def states(self) -> dict[str, str]:
        """Every service the stack knows: name -> supervisord-style state (RUNNING, STOPPED, ...)."""

    @abstractmethod
    def instance(self, name: str) -> str | None:
        """An opaque id of the service's running instance, different after a restart; None when not running."""

    @abstractmethod
    def start(self, name: str) -> str:
        """Start the service if it is not running (returns at once; `wait_ready` waits). Returns the output; a
        failure shows up in `wait_ready`."""

    @abstractmethod
    def stop(self, name: str) -> str:
        """Stop the service and wait until it is stopped. Returns the output."""

    @abstractmethod
    def restart(self, name: str) -> str:
        """Stop the service and start it again. Returns the output."""

    @abstractmethod
    def down(self, *names: str) -> None:
        """The stack's own partial stop (`make down`'s, dependents first); the other services keep running.
        Raises StackError when it fails."""

    @abstractmethod
    def _send_kill(self, name: str, instance: str) -> None:
        """SIGKILL the running instance."""

    def python_command(self, module: str, *args: str, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """`python -m module args` as the user's make targets run it in this mode, with `env` added: the command
        line and the environment to run it with."""
        return [sys.executable, "-m", module, *args], {**os.environ, **env}

    @abstractmethod
    def logs(self, name: str, lines: int = 40) -> str:
        """The last `lines` lines of the service's output."""

    @abstractmethod
    def log_hint(self, name: str) -> str:
        """Where a person finds the service's whole log."""

    # --- shared behaviour --------------------------------------------------------------------------------------
    def state(self, name: str) -> str:
        return self.states().get(name, "NOT CONFIGURED")

    def running(self, name: str) -> bool:
        return self.state(name) == "RUNNING"

    def services(self) -> dict:
        """The service definitions (services/registry.py) by name: readiness probes, ports, timeouts."""
        from services.registry import all_services

        return {service.name: service for service in all_services(self.settings)}

    def kill(self, name: str) -> str:
        """kill -9 of the running service, as a crash would; returns the killed instance's id once it is gone
        (supervisord or the container's restart policy may be bringing a new one up).
        Raises StackError if the service is not running or does not die."""
        old = self.instance(name)
        if old is None:
            raise StackError(f"{name} is {self.state(name)}, not running: nothing to kill")
        self._send_kill(name, old)
        deadline = time.monotonic() + KILL_TIMEOUT
        while self.instance(name) == old:
            if time.monotonic() > deadline:
                raise StackError(f"{name} still runs as {old} {KILL_TIMEOUT:.0f} s after a SIGKILL")
            time.sleep(0.1)
        return old

    def wait_ready(self, name: str, timeout: float | None = None, poll: float = 0.3) -> float:
        """Repeat the service's readiness probe until it passes; returns the seconds waited. Raises StackError naming
        the log when it does not pass within `timeout` (default: the service's own ready_timeout), or at once when
        the service is down (not running and not coming back by itself)."""
        service = self.services()[name]
        started = time.monotonic()
        deadline = started + (service.ready_timeout if timeout is None else timeout)
        last_error = "not checked yet"
        while time.monotonic() < deadline:
            state = self.state(name)
            if state in self.down_states:
                last_error = f"{name} is {state}"
                break
            try:
                service.ready(self.settings)
                return time.monotonic() - started
            except Exception as error:  # any failure of the probe means "not ready yet"
                last_error = str(error) or type(error).__name__
            time.sleep(poll)
        tail = "\n".join("    " + line for line in self.logs(name, 15).splitlines())
        raise StackError(
            f"{name} not ready at {service.where} after {time.monotonic() - started:.0f} s ({last_error}); "
            f"see {self.log_hint(name)}\n{tail}"
        )


# --- native mode: supervisord ----------------------------------------------------------------------------------
class SupervisorStack(Stack):
    """Native mode: each service is a program of supervisord (autorestart=unexpected), logs in the log folder."""

    mode = "native"
    down_states = ("FATAL", "EXITED", "BACKOFF", "STOPPED")  # as services.readiness.wait_ready

    def _info(self) -> dict[str, dict]:
        from services.readiness import process_states

        return process_states(self.settings)

    def supervisorctl(self, *args: str) -> str:
        from services.supervisor import conf_path, supervisor_bin

        done = subprocess.run(
            [supervisor_bin("supervisorctl"), "-c", str(conf_path(self.settings)), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        return (done.stdout + done.stderr).strip()

    def states(self) -> dict[str, str]:
        return {name: info["statename"] for name, info in self._info().items()}

    def instance(self, name: str) -> str | None:
        info = self._info().get(name, {})
        return str(info["pid"]) if info.get("statename") == "RUNNING" else None

    def start(self, name: str) -> str:
        return self.supervisorctl("start", name)

    def stop(self, name: str) -> str:
        return self.supervisorctl("stop", name)

    def restart(self, name: str) -> str:
        return self.supervisorctl("restart", name)

    def down(self, *names: str) -> None:
        try:
            subprocess.run(
                [sys.executable, "-m", "services.runner", "down", "--only", *names],
                env={**os.environ, "STATE_DIR": str(self.settings.state_dir)},
                check=True,
                timeout=180,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            raise StackError(f"services.runner down --only {' '.join(names)} failed: {error}") from error

    def _send_kill(self, name: str, instance: str) -> None:
        os.kill(int(instance), signal.SIGKILL)

    def logs(self, name: str, lines: int = 40) -> str:
        path = Path(self.log_hint(name))
        if not path.exists():
            return "(no log yet)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def log_hint(self, name: str) -> str:
        from services.supervisor import log_file

        return str(log_file(self.settings, name))


# --- Docker mode: docker compose -------------------------------------------------------------------------------
@dataclass
class ProjectCompose(DockerCompose):
    """testcontainers' DockerCompose, running its commands with the stack's compose environment."""

    env: dict[str, str] | None = None

    def _run_command(self, cmd, context=None):  # the one place testcontainers runs `docker compose`
        return subprocess.run(cmd, capture_output=True, check=True, cwd=context or str(self.context), env=self.env)


# docker's container states -> supervisord's names. Docker cannot tell a requested stop from an exit: an exited
# container is not coming back by itself (a crash under restart: on-failure shows as restarting), so it is STOPPED.
CONTAINER_STATES = {
    "running": "RUNNING",
    "restarting": "BACKOFF",  # the restart policy is bringing it back
    "created": "STOPPED",
    "exited": "STOPPED",
    "paused": "STOPPED",
    "removing": "STOPPING",
    "dead": "FATAL",
}


class ComposeStack(Stack):
    """Docker mode: each service is the compose service of the same name (restart: on-failure)."""

    mode = "docker"
    down_states = ("STOPPED", "FATAL")  # "restarting" (BACKOFF) comes back by itself here

    def __init__(self, settings: Settings, host_state: Path | None = None) -> None:
        super().__init__(settings)
        host = host_state or host_state_dir()
        self.ca_bundle = host / "docker" / "extra-ca.pem"
        self.env = {
            **os.environ,
            "DOCKER_STATE_DIR": str(host / DOCKER_STATE),
            "DOCKER_EXTRA_CA_BUNDLE": str(self.ca_bundle),
        }
        self.compose = ProjectCompose(
            context=str(REPO_ROOT),
            docker_command_path="docker",
            profiles=list(COMPOSE_PROFILES),
            wait=False,
            env=self.env,
        )

    def _prepare(self) -> ProjectCompose:
        # compose reads the build secret's file with the project; scripts/stack_run.sh creates it empty too
        if not self.ca_bundle.exists():
            self.ca_bundle.parent.mkdir(parents=True, exist_ok=True)
            self.ca_bundle.touch()
        return self.compose

    def compose_command(self, *args: str) -> list[str]:
        return [*self.compose.docker_compose_command(), *args]

    def python_command(self, module: str, *args: str, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """In a one-off container of the project image, as scripts/stack_run.sh runs `make seed`, `make emulate`,
        ...: `env` is passed in with -e; a host folder it names (a test's own state folder) is mounted at the same
        path, so the command and the test see the same files."""
        self._prepare()
        options = ["--rm", "--no-deps", "-T"]
        for key, value in env.items():
            options += ["-e", f"{key}={value}"]
            if value.startswith("/") and Path(value).is_dir() and not Path(value).is_relative_to(REPO_ROOT):
                options += ["-v", f"{value}:{value}"]
        return self.compose_command("run", *options, "cli", "python", "-m", module, *args), self.env

    def _call(self, *args: str, timeout: float = 300) -> tuple[int, str]:
        """Run `docker compose <args>` from the repository root with the stack's environment: (exit code, output)."""
        self._prepare()
        command = self.compose_command(*args)
        try:
            done = subprocess.run(
                command, cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, check=False, timeout=timeout
            )
        except subprocess.TimeoutExpired as error:
            raise StackError(f"`{' '.join(command)}` did not finish in {timeout:.0f} s") from error
        return done.returncode, (done.stdout + done.stderr).strip()

    def _run(self, *args: str) -> str:
        code, output = self._call(*args)
        if code != 0:
            raise StackError(f"`{' '.join(self.compose_command(*args))}` failed (exit {code}): {output}")
        return output

    def _containers(self) -> dict[str, ComposeContainer]:
        """The service containers (not `docker compose run` ones) by service name, a running one first."""
        try:
            listed = self._prepare().get_containers(include_all=True)
        except subprocess.CalledProcessError as error:
            detail = (error.stderr or b"").decode(errors="replace").strip()
            raise StackError(f"`docker compose ps` failed (exit {error.returncode}): {detail}") from error
        found: dict[str, ComposeContainer] = {}
        for container in listed:
            name = container.Service
            if not name or f"-{name}-run-" in (container.Name or ""):
                continue
            if name not in found or container.State == "running":
                found[name] = container
        return found

    def states(self) -> dict[str, str]:
        return {
            name: CONTAINER_STATES.get((c.State or "").lower(), (c.State or "UNKNOWN").upper())
            for name, c in self._containers().items()
        }

    def instance(self, name: str) -> str | None:
        container = self._containers().get(name)
        if container is None or container.State != "running":
            return None
        done = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.Running}} {{.State.StartedAt}}", container.ID],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        running, _, started_at = done.stdout.strip().partition(" ")
        if done.returncode != 0 or running != "true":
            return None
        # The runner restarts a crashed program inside its container (as supervisord does natively) and records the
        # program's pid in the bind-mounted state folder: a new pid is a new instance in the same container.
        pid_file = self.settings.state_dir / "run" / f"{name}.pid"
        pid = pid_file.read_text().strip() if pid_file.exists() else "?"
        return f"{container.ID[:12]}@{started_at}/{pid}"

    def start(self, name: str) -> str:
        # `start` starts the existing container, also when it stayed exited (a SIGKILL through docker turns the
        # restart policy off until the next start); with no container at all (never created, or removed), create
        # and start it alone, never recreating one.
        code, output = self._call("start", name)
        if code != 0:
            code, output = self._call("up", "--detach", "--no-deps", "--no-recreate", name)
        return output if code == 0 else f"exit {code}: {output}"

    def stop(self, name: str) -> str:
        return self._call("stop", name)[1]

    def restart(self, name: str) -> str:
        return self._call("restart", "--no-deps", name)[1]

    def down(self, *names: str) -> None:
        self._run("stop", *names)  # compose stops them in reverse dependency order, and only them

    def _send_kill(self, name: str, instance: str) -> None:
        # SIGKILL to the service's own process inside its container (its pid is in <run_dir>/<name>.pid, written by
        # services.runner's `run`), as a crash would: the runner starts it again in place, as supervisord does
        # natively. (`docker kill` would kill the whole container and mark it stopped by hand.)
        pid_file = f"/app/.state/run/{name}.pid"
        self._run("exec", "-T", name, "sh", "-c", f'kill -9 "$(cat {pid_file})"')

    def logs(self, name: str, lines: int = 40) -> str:
        try:
            stdout, stderr = self._prepare().get_logs(name)
        except subprocess.CalledProcessError as error:
            return f"(docker compose logs {name} failed with exit {error.returncode})"
        return "\n".join((stdout + stderr).splitlines()[-lines:])

    def log_hint(self, name: str) -> str:
        return f"docker compose logs {name}"
