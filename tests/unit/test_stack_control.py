"""services/stack.py without a stack: the `docker compose` command lines ComposeStack runs (subprocess.run
recorded, no Docker needed), its supervisord-style states, and `current_stack` choosing by scripts/stack_mode.sh."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest

from pipeline.settings import REPO_ROOT, load_settings

COMPOSE = ["docker", "compose", "--profile", "stream"]


@pytest.fixture(scope="module")
def stack():
    """The stack module (services/stack.py)."""
    from services import stack as module

    return module


class FakeDocker:
    """Stands in for subprocess.run: records each call and answers `docker compose ps/kill/start/...` and
    `docker inspect` from a small table of containers, as the Docker CLI would."""

    def __init__(self, containers: dict[str, str]) -> None:
        self.containers = {
            name: {"State": state, "started": 1, "id": f"{name}-id".ljust(16, "0")}
            for name, state in containers.items()
        }
        self.calls: list[dict] = []
        self.failing: set[str] = set()  # compose subcommands that exit 1
        self.mode_output = "native\n"

    def __call__(self, cmd, **kwargs):
        self.calls.append({"cmd": list(cmd), **kwargs})
        code, out = 0, ""
        if cmd[:2] == ["docker", "compose"]:
            args = [a for a in cmd[2:] if a not in ("--profile", "stream")]
            verb, rest = args[0], args[1:]
            if verb in self.failing:
                code, out = 1, f"{verb} failed"
            elif verb == "ps":
                out = "\n".join(
                    json.dumps({"ID": c["id"], "Name": f"pinterest-pipeline-{n}-1", "Service": n, "State": c["State"]})
                    for n, c in self.containers.items()
                )
            elif verb == "exec":  # `exec -T <name> sh -c 'kill -9 ...'`: the restart policy brings it back
                container = self.containers[rest[1]]
                container["State"], container["started"] = "running", container["started"] + 1
            elif verb in ("start", "up", "restart"):
                container = self.containers[rest[-1]]
                container["State"], container["started"] = "running", container["started"] + 1
            elif verb == "stop":
                for name in rest:
                    self.containers[name]["State"] = "exited"
            elif verb == "logs":
                out = "\n".join(f"{rest[-1]}  | line {i}" for i in range(100))
        elif cmd[:2] == ["docker", "inspect"]:
            container = next(c for c in self.containers.values() if c["id"] == cmd[-1])
            running = "true" if container["State"] == "running" else "false"
            out = f"{running} 2026-01-01T00:00:0{container['started']}Z"
        elif cmd[0].endswith("stack_mode.sh"):
            out = self.mode_output
        if kwargs.get("check") and code:
            raise subprocess.CalledProcessError(code, cmd, output=b"", stderr=out.encode())
        if not kwargs.get("text"):
            return subprocess.CompletedProcess(cmd, code, out.encode(), b"")
        return subprocess.CompletedProcess(cmd, code, out, "")

    def compose_calls(self) -> list[list[str]]:
        return [c["cmd"] for c in self.calls if c["cmd"][:2] == ["docker", "compose"]]


@pytest.fixture
def docker(monkeypatch):
    fake = FakeDocker({"kafka": "running", "s3": "running", "connect": "exited", "rest_proxy": "restarting"})
    monkeypatch.setattr(subprocess, "run", fake)
    return fake


@pytest.fixture
def compose(stack, docker, tmp_path):
    settings = load_settings(state_dir=tmp_path / "docker-state")
    return stack.ComposeStack(settings, host_state=tmp_path)


def test_every_compose_call_runs_from_the_repo_root_with_the_stack_environment(compose, docker, tmp_path):
    compose.states()
    compose.start("connect")
    compose.logs("kafka")
    assert docker.calls
    for call in docker.compose_calls():
        assert call[:4] == COMPOSE
    for call in (c for c in docker.calls if c["cmd"][:2] == ["docker", "compose"]):
        assert str(call["cwd"]) == str(REPO_ROOT)
        assert call["env"]["DOCKER_STATE_DIR"] == str(tmp_path / "docker-state")
        assert call["env"]["DOCKER_EXTRA_CA_BUNDLE"] == str(tmp_path / "docker" / "extra-ca.pem")
    assert (tmp_path / "docker" / "extra-ca.pem").is_file(), "compose needs the build secret's file to exist"


def test_states_use_supervisords_names(compose, docker):
    assert compose.states() == {"kafka": "RUNNING", "s3": "RUNNING", "connect": "STOPPED", "rest_proxy": "BACKOFF"}
    assert docker.compose_calls() == [[*COMPOSE, "ps", "--format", "json", "-a"]]
    assert compose.running("kafka") and not compose.running("connect")
    assert compose.state("mysql") == "NOT CONFIGURED"


def test_kill_is_a_sigkill_of_the_service_process_and_waits_for_the_old_instance(compose, docker):
    before = compose.instance("kafka")
    assert before is not None
    killed = compose.kill("kafka")
    assert killed == before
    kill = [*COMPOSE, "exec", "-T", "kafka", "sh", "-c", 'kill -9 "$(cat /app/.state/run/kafka.pid)"']
    assert kill in docker.compose_calls()
    after = compose.instance("kafka")
    assert after is not None and after != before


def test_kill_of_a_stopped_service_fails(stack, compose):
    with pytest.raises(stack.StackError, match="connect is STOPPED"):
        compose.kill("connect")


def test_start_stop_restart_and_the_partial_down(compose, docker):
    compose.start("connect")
    compose.stop("kafka")
    compose.restart("s3")
    compose.down("s3", "kafka", "connect")
    assert docker.compose_calls() == [
        [*COMPOSE, "start", "connect"],
        [*COMPOSE, "stop", "kafka"],
        [*COMPOSE, "restart", "--no-deps", "s3"],
        [*COMPOSE, "stop", "s3", "kafka", "connect"],
    ]


def test_start_creates_a_missing_container_alone(compose, docker):
    docker.failing.add("start")
    compose.start("connect")
    assert docker.compose_calls() == [
        [*COMPOSE, "start", "connect"],
        [*COMPOSE, "up", "--detach", "--no-deps", "--no-recreate", "connect"],
    ]


def test_a_failed_partial_down_raises(stack, compose, docker):
    docker.failing.add("stop")
    with pytest.raises(stack.StackError, match="stop failed"):
        compose.down("connect")


def test_logs_are_the_last_lines_of_compose_logs(compose, docker):
    assert compose.logs("kafka", lines=3).splitlines() == [f"kafka  | line {i}" for i in (97, 98, 99)]
    assert docker.compose_calls() == [[*COMPOSE, "logs", "kafka"]]
    assert compose.log_hint("kafka") == "docker compose logs kafka"


def test_wait_ready_stops_at_once_on_a_stopped_container(stack, compose, monkeypatch):
    probes = []
    service = dataclasses.replace(compose.services()["connect"], ready=probes.append)
    monkeypatch.setattr(compose, "services", lambda: {"connect": service})
    with pytest.raises(stack.StackError, match=r"connect is STOPPED.*docker compose logs connect"):
        compose.wait_ready("connect", timeout=5)
    assert probes == []


def test_supervisor_stack_hints_at_the_log_file(stack, tmp_path):
    native = stack.SupervisorStack(load_settings(state_dir=tmp_path))
    assert native.log_hint("kafka") == str(tmp_path / "logs" / "kafka.log")
    assert native.logs("kafka") == "(no log yet)"
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "kafka.log").write_text("".join(f"line {i}\n" for i in range(50)))
    assert native.logs("kafka", lines=2) == "line 48\nline 49"
    assert native.states() == {}  # no supervisord in this state folder


@pytest.mark.parametrize(("mode", "implementation"), [("native", "SupervisorStack"), ("docker", "ComposeStack")])
def test_current_stack_follows_stack_mode_sh(stack, docker, tmp_path, monkeypatch, mode, implementation):
    monkeypatch.setenv("STACK", f"test-{mode}")  # a cache key of its own for this case
    monkeypatch.setattr(stack, "host_state_dir", lambda: tmp_path)
    docker.mode_output = f"{mode}\n"
    settings = load_settings(state_dir=tmp_path)
    assert stack.stack_mode() == mode
    assert type(stack.current_stack(settings)).__name__ == implementation
    (call,) = [c for c in docker.calls if c["cmd"][0].endswith("stack_mode.sh")]
    assert call["cmd"] == [str(REPO_ROOT / "scripts" / "stack_mode.sh")]
    assert str(call["cwd"]) == str(REPO_ROOT)
    assert call["env"]["STATE_DIR"] == str(tmp_path)


def test_stack_settings_point_at_docker_state_only_in_docker_mode(stack, tmp_path, monkeypatch):
    monkeypatch.setattr(stack, "host_state_dir", lambda: tmp_path)
    assert stack.stack_settings("docker", pipeline_user_id="7e57c0de0001").state_dir == tmp_path / "docker-state"
    assert stack.stack_settings("native").state_dir == load_settings().state_dir
