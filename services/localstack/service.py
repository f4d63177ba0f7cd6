"""LocalStack 4.9.2 in host mode (no Docker, no account): Kinesis, API Gateway, STS and IAM on one port (4566), and
its Kinesis backend, kinesis-mock, on a fixed port of its own (4567, `AWS_ENDPOINT_URL_KINESIS`), which Kinesis
clients call directly (why: services/localstack/site/sitecustomize.py).

It runs from its own virtualenv (.state/venvs/localstack, made by services/localstack/install.sh) because
localstack-core pins packages the project's venv must not follow. Version, pins and flags are the ones measured in
docs/architecture.md (4.9.2 is the newest that runs on Python 3.11 with a working Kinesis). S3 is not served here: the
durable S3 store (services/s3) owns it. Kinesis streams and records survive restarts through kinesis-mock's own
persistence, made safe by services/localstack/launch.py; see docs/design/s3-and-localstack.md.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import boto3
import httpx
from botocore.config import Config

from pipeline.settings import REPO_ROOT, Settings
from services.contract import NotReady, Service

SITE_DIR = REPO_ROOT / "services" / "localstack" / "site"  # sitecustomize.py: kinesis-mock on a fixed port
SERVICES = "kinesis,apigateway,sts,iam"
# kinesis-mock rewrites its whole state (every record still retained, 24 h) each interval, blocking its event loop
# meanwhile; a longer interval costs less CPU, at the price of up to one interval of records if kinesis-mock itself is
# SIGKILLed (a stop, and a kill of LocalStack, still flush everything: see launch.py). The measurements behind 30 s
# are in docs/design/s3-and-localstack.md.
PERSIST_INTERVAL_SECONDS = 30


def filesystem_root(settings: Settings) -> Path:
    return settings.data_dir / "localstack"


def kinesis_state_dir(settings: Settings) -> Path:
    """Where kinesis-mock persists (LocalStack's `dirs.data`/kinesis when PERSISTENCE=1, in host mode)."""
    return filesystem_root(settings) / "var" / "lib" / "localstack" / "state" / "kinesis"


def venv_dir(settings: Settings) -> Path:
    return settings.tools_dir / "venvs" / "localstack"


def venv_python(settings: Settings) -> Path:
    return venv_dir(settings) / "bin" / "python"


def installed_libs(settings: Settings) -> Path:
    """LocalStack's static-libs tree (kinesis-mock), installed beside the venv by install.sh so `make clean` keeps it."""
    return venv_dir(settings) / "filesystem-root" / "usr"


def environment(settings: Settings) -> dict[str, str]:
    return {
        "OVERRIDE_IN_DOCKER": "0",
        "FILESYSTEM_ROOT": str(filesystem_root(settings)),
        "GATEWAY_LISTEN": f"{settings.bind_host}:{settings.localstack_port}",
        "GATEWAY_SERVER": "hypercorn",
        "DNS_ADDRESS": "0",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "SERVICES": SERVICES,
        "EAGER_SERVICE_LOADING": "1",
        # PERSISTENCE=1 moves LocalStack's data folder out of its temp folder (wiped on every start and stop), so
        # kinesis-mock's state file (KINESIS_PERSISTENCE defaults to on) survives. The open-source edition has no
        # other persistence, so nothing else changes.
        "PERSISTENCE": "1",
        "KINESIS_MOCK_PERSIST_INTERVAL": f"{PERSIST_INTERVAL_SECONDS}s",
        "AWS_DEFAULT_REGION": settings.aws_region,
        # services/localstack/site/sitecustomize.py: the default account's kinesis-mock listens on this port, where
        # AWS_ENDPOINT_URL_KINESIS points (it binds every interface, as LocalStack's random port did).
        "KINESIS_MOCK_PORT": str(settings.kinesis_mock_port),
        "PYTHONPATH": str(SITE_DIR),
    }


def prepare(settings: Settings) -> None:
    if not venv_python(settings).exists():
        raise SystemExit(
            f"LocalStack is not installed ({venv_python(settings)}); run `bash services/localstack/install.sh`."
        )
    libs = installed_libs(settings)
    if not list((libs / "lib" / "localstack" / "kinesis-local").glob("*/node_modules/kinesis-local/main.js")):
        raise SystemExit(
            "kinesis-mock is not installed; run `bash services/localstack/install.sh` (needs node and npm)."
        )
    link = filesystem_root(settings) / "usr"
    if link.is_symlink() and link.resolve() == libs.resolve():
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)  # an install from before the libs moved beside the venv
    link.unlink(missing_ok=True)
    link.symlink_to(libs)


def kinesis_client(settings: Settings, timeout: float = 10.0, endpoint: str | None = None):
    """A Kinesis client with short timeouts: on `AWS_ENDPOINT_URL_KINESIS` (kinesis-mock), or on `endpoint`."""
    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1, "mode": "standard"})
    kwargs = settings.boto3_client_kwargs("kinesis") | ({"endpoint_url": endpoint} if endpoint else {})
    return boto3.client("kinesis", config=config, **kwargs)


def list_all_streams(client) -> set[str]:
    return {name for page in client.get_paginator("list_streams").paginate() for name in page["StreamNames"]}


def ready(settings: Settings) -> None:
    health_url = f"{settings.localstack_url.rstrip('/')}/_localstack/health"
    try:
        health = httpx.get(health_url, timeout=2.0).json()
    except (httpx.HTTPError, ValueError) as error:
        raise NotReady(f"GET {health_url} failed: {error}") from error
    states = health.get("services", {})
    not_running = [name for name in SERVICES.split(",") if states.get(name) not in ("running", "available")]
    if not_running:
        raise NotReady(f"{health_url}: not running yet: {', '.join(not_running)}")
    # The first Kinesis call through LocalStack starts kinesis-mock, which loads the persisted streams.
    try:
        through_localstack = list_all_streams(kinesis_client(settings, endpoint=settings.localstack_url))
    except Exception as error:  # any failure means "Kinesis not serving yet"
        raise NotReady(f"Kinesis ListStreams on {settings.localstack_url} failed: {error}") from error
    direct = settings.kinesis_mock_url
    if direct.rstrip("/") == settings.localstack_url.rstrip("/"):
        return
    try:
        served = list_all_streams(kinesis_client(settings, endpoint=direct))
    except Exception as error:
        raise NotReady(
            f"Kinesis ListStreams on {direct} (kinesis-mock, AWS_ENDPOINT_URL_KINESIS) failed: {error}"
        ) from error
    if served != through_localstack:
        raise NotReady(
            f"Kinesis on {direct} serves other streams than LocalStack's Kinesis on {settings.localstack_url} "
            f"({len(served)} against {len(through_localstack)}): is another kinesis-mock on port {settings.kinesis_mock_port}? "
            "Stop it, or set AWS_ENDPOINT_URL_KINESIS to a free port."
        )


def service(settings: Settings) -> Service:
    return Service(
        name="localstack",
        command=[
            sys.executable,
            "-m",
            "services.localstack.launch",
            f"--kinesis-state={kinesis_state_dir(settings)}",
            f"--pid-file={settings.run_dir / 'localstack.pids'}",
            "--",
            str(venv_python(settings)),
            "-m",
            "localstack.runtime.main",
        ],
        ports=(settings.localstack_port, settings.kinesis_mock_port),
        ready=ready,
        where=(
            f"{settings.localstack_url} (LocalStack 4.9.2: {SERVICES}); Kinesis (kinesis-mock) also at "
            f"{settings.kinesis_mock_url}, state in {kinesis_state_dir(settings)}"
        ),
        prepare=prepare,
        env=environment(settings),
        directory=REPO_ROOT,
        ready_timeout=180,
        # The launcher lets kinesis-mock flush (up to 15 s) and then kills LocalStack itself; supervisord's SIGKILL
        # after this timeout is the last resort (LocalStack dies with the launcher, kinesis-mock is reaped next start).
        stop_timeout=30,
    )
