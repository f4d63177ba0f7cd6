"""The durable S3 endpoint: S3Proxy (org.gaul:s3proxy, Maven Central) with its filesystem backend.

Why not LocalStack's S3: the open-source LocalStack keeps objects in memory and forgets them on restart, while our
users' bucket must survive `make down`/`make up` and a kill -9. S3Proxy stores each object as a file under
`.state/data/s3/<bucket>/<key>` (written to a temporary file, then renamed), so a stopped or killed process loses
nothing that it acknowledged. It speaks path-style S3 to boto3, the AWS SDK v2 (the Kafka Connect sink) and
Hadoop s3a (Spark) on the one setting `AWS_ENDPOINT_URL_S3`. See docs/design/s3-and-localstack.md.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import boto3
from botocore.config import Config

from pipeline.settings import REPO_ROOT, Settings
from services.contract import NotReady, Service

PROPERTIES = Path(__file__).with_name("s3proxy.properties")
JVM_OPTIONS = (
    "-Xms32m",
    "-Xmx384m",
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    # logback prints its own configuration status on every start; nothing in it is actionable.
    "-Dlogback.statusListenerClass=ch.qos.logback.core.status.NopStatusListener",
)


def store_dir(settings: Settings) -> Path:
    return settings.data_dir / "s3"


def quarantine_dir(settings: Settings) -> Path:
    return settings.data_dir / "s3-unfinished-uploads"


def jar_path(settings: Settings) -> Path:
    """The S3Proxy jar that services/s3/fetch.sh placed (exactly one version is kept)."""
    folder = settings.tools_dir / "jars" / "s3proxy"
    found = sorted(folder.glob("s3proxy-*-jar-with-dependencies.jar"))
    return found[-1] if found else folder / "s3proxy-jar-with-dependencies.jar"


def _java() -> str:
    return shutil.which("java") or "java"


def prepare(settings: Settings) -> None:
    if not jar_path(settings).exists():
        raise SystemExit(f"S3Proxy jar not found in {jar_path(settings).parent}; run `bash services/s3/fetch.sh`.")
    if not shutil.which("java"):
        raise SystemExit("java not found: S3Proxy needs Java 17+ (`apt-get install -y openjdk-17-jre-headless`).")
    store_dir(settings).mkdir(parents=True, exist_ok=True)


def s3_client(settings: Settings, timeout: float = 5.0):
    """A boto3 S3 client on the store, failing fast (readiness probes and tests must not hang)."""
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    return boto3.client("s3", config=config, **settings.boto3_client_kwargs("s3"))


def ready(settings: Settings) -> None:
    try:
        s3_client(settings, timeout=2.0).list_buckets()
    except Exception as error:  # any failure means "not serving S3 yet"
        raise NotReady(f"ListBuckets on {settings.s3_store_url} failed: {error}") from error


def service(settings: Settings) -> Service:
    port = settings.s3_store_port
    command = [
        sys.executable,
        "-m",
        "services.s3.launch",
        f"--store={store_dir(settings)}",
        f"--quarantine={quarantine_dir(settings)}",
        "--",
        _java(),
        *JVM_OPTIONS,
        f"-Ds3proxy.endpoint=http://{settings.bind_host}:{port}",
        f"-Djclouds.filesystem.basedir={store_dir(settings)}",
        "-jar",
        str(jar_path(settings)),
        "--properties",
        str(PROPERTIES),
    ]
    return Service(
        name="s3",
        command=command,
        ports=(port,),
        ready=ready,
        where=f"{settings.s3_store_url} (S3Proxy, path-style; objects in {store_dir(settings)})",
        prepare=prepare,
        directory=REPO_ROOT,
        ready_timeout=60,
        stop_timeout=15,
    )
