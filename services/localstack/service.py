"""LocalStack 4.9.2 in host mode (no Docker, no account): API Gateway, Kinesis, STS and IAM on one port (4566).

Kinesis requests to LocalStack (API Gateway's Kinesis integration makes them) are forwarded to the stack's durable
Kinesis store (services/kinesis, kinesalite on `AWS_ENDPOINT_URL_KINESIS`), which Kinesis clients also call directly:
one set of streams, two doors. LocalStack's own backend, kinesis-mock, never starts (why, and how:
services/localstack/site/sitecustomize.py and docs/design/kinesis-store.md). So LocalStack holds no stream data:
a stop or a kill -9 of it loses none, and it forgets only the API definitions, which `make up` provisions again.

It runs from its own virtualenv (.state/venvs/localstack, made by services/localstack/install.sh) because
localstack-core pins packages the project's venv must not follow. Version, pins and flags are the ones measured in
docs/architecture.md (4.9.2 is the newest that runs on Python 3.11). S3 is not served here: the durable S3 store
(services/s3) owns it.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from pipeline.settings import REPO_ROOT, Settings
from services.contract import NotReady, Service
from services.kinesis.service import kinesis_client, list_all_streams

SITE_DIR = REPO_ROOT / "services" / "localstack" / "site"  # sitecustomize.py: Kinesis forwarded to the store
SERVICES = "kinesis,apigateway,sts,iam"


def filesystem_root(settings: Settings) -> Path:
    return settings.data_dir / "localstack"


def venv_dir(settings: Settings) -> Path:
    return settings.tools_dir / "venvs" / "localstack"


def venv_python(settings: Settings) -> Path:
    return venv_dir(settings) / "bin" / "python"


def kinesis_backend_url(settings: Settings) -> str:
    """Where LocalStack forwards Kinesis requests: the Kinesis store, on the address the stack binds."""
    return f"http://{settings.bind_host}:{settings.kinesis_port}"


def environment(settings: Settings) -> dict[str, str]:
    return {
        "OVERRIDE_IN_DOCKER": "0",
        "FILESYSTEM_ROOT": str(filesystem_root(settings)),
        "GATEWAY_LISTEN": f"{settings.bind_host}:{settings.localstack_port}",
        "GATEWAY_SERVER": "twisted",
        "DNS_ADDRESS": "0",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "SERVICES": SERVICES,
        "EAGER_SERVICE_LOADING": "1",
        "AWS_DEFAULT_REGION": settings.aws_region,
        # services/localstack/site/sitecustomize.py forwards Kinesis here instead of starting kinesis-mock.
        "KINESIS_BACKEND_URL": kinesis_backend_url(settings),
        # ... and gives the gateway's integration calls this deadline, which AWS applies and LocalStack does not.
        "GATEWAY_TIMEOUT_MS": str(settings.gateway_timeout_ms),
        "PYTHONPATH": str(SITE_DIR),
    }


def prepare(settings: Settings) -> None:
    if not venv_python(settings).exists():
        raise SystemExit(
            f"LocalStack is not installed ({venv_python(settings)}); run `bash services/localstack/install.sh`."
        )
    filesystem_root(settings).mkdir(parents=True, exist_ok=True)


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
    # Kinesis through LocalStack is the store behind it: ready only when the forwarding reaches it.
    try:
        through_localstack = list_all_streams(kinesis_client(settings, timeout=5.0, endpoint=settings.localstack_url))
    except Exception as error:  # any failure means "Kinesis not serving through LocalStack yet"
        raise NotReady(
            f"Kinesis ListStreams on {settings.localstack_url} (forwarded to {kinesis_backend_url(settings)}) failed: "
            f"{error}"
        ) from error
    direct = settings.kinesis_url
    if direct.rstrip("/") == settings.localstack_url.rstrip("/"):
        return
    try:
        served = list_all_streams(kinesis_client(settings, timeout=5.0, endpoint=direct))
    except Exception as error:
        raise NotReady(f"Kinesis ListStreams on {direct} (the Kinesis store) failed: {error}") from error
    if served != through_localstack:
        raise NotReady(
            f"Kinesis on {direct} serves other streams than LocalStack's Kinesis on {settings.localstack_url} "
            f"({len(served)} against {len(through_localstack)}): does AWS_ENDPOINT_URL_KINESIS point at another "
            f"Kinesis than {kinesis_backend_url(settings)}?"
        )


def service(settings: Settings) -> Service:
    return Service(
        name="localstack",
        command=[str(venv_python(settings)), "-m", "localstack.runtime.main"],
        ports=(settings.localstack_port,),
        ready=ready,
        where=f"{settings.localstack_url} (LocalStack 4.9.2: {SERVICES}; Kinesis forwarded to {settings.kinesis_url})",
        prepare=prepare,
        depends_on=("kinesis",),
        env=environment(settings),
        directory=REPO_ROOT,
        ready_timeout=180,
        stop_timeout=20,
    )
