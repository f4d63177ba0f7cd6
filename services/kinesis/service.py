"""The stack's Kinesis store: kinesalite 3.3.3 (npm) on LevelDB, on its own port (4567, `AWS_ENDPOINT_URL_KINESIS`).

Why kinesalite and not LocalStack's kinesis-mock: kinesalite answers a put only after LevelDB has the records, so
every acknowledged record survives a kill -9 of any process, and its put and get costs stay flat with 100,000 records
held per shard; kinesis-mock snapshots its whole state on a timer (everything since the last snapshot is lost on a
kill -9) and its put cost grows with what it holds. The measurements and the caveats (no fsync; 17 actions, the ones
the pipeline uses) are in docs/design/kinesis-store.md.

Two doors, one set of streams: Kinesis clients (provisioning, the Spark source, benchmarks) call this port directly;
API Gateway's Kinesis integration calls LocalStack on 4566, which forwards every Kinesis request here
(services/localstack/site/sitecustomize.py). On AWS, Kinesis has its own endpoint too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
from botocore.config import Config

from pipeline.settings import REPO_ROOT, Settings
from services.contract import NotReady, Service

SERVER_JS = Path(__file__).with_name("server.js")
# AWS's default shard quota per account and region (kinesalite's own default of 10 would refuse the tests' streams).
SHARD_LIMIT = 500
# How long a stream stays CREATING/DELETING: kinesalite's default, close enough to AWS's to exercise the waiters.
STATE_CHANGE_MS = 500


def store_dir(settings: Settings) -> Path:
    return settings.data_dir / "kinesis"


def install_dir(settings: Settings) -> Path:
    return settings.tools_dir / "kinesis-store"


def set_aside_kinesis_mock_state(settings: Settings) -> None:
    """Before this store, LocalStack's kinesis-mock kept streams in a JSON snapshot. Its records are not imported
    (their sequence numbers cannot be kept, so a streaming checkpoint could not continue exactly-once from them):
    the snapshot is moved aside, once, with a message saying where, and provisioning creates the streams anew."""
    old = settings.data_dir / "localstack" / "var" / "lib" / "localstack" / "state" / "kinesis"
    if not any(old.glob("*.json")):
        return
    kept = settings.data_dir / "kinesis-mock-state-before-kinesalite"
    kept.parent.mkdir(parents=True, exist_ok=True)
    old.rename(kept)
    print(
        f"[kinesis] streams kept by the former Kinesis backend (kinesis-mock) are not carried over to the Kinesis "
        f"store; its snapshot is kept in {kept}. Provisioning creates the streams again, empty.",
        flush=True,
    )


def _node() -> str:
    return shutil.which("node") or "node"


def prepare(settings: Settings) -> None:
    if not (install_dir(settings) / "node_modules" / "kinesalite").is_dir():
        raise SystemExit(
            f"the Kinesis store is not installed ({install_dir(settings)}); run `bash services/kinesis/install.sh`."
        )
    if not shutil.which("node"):
        raise SystemExit("node not found: the Kinesis store (kinesalite) needs Node.js (`apt-get install nodejs`).")
    store_dir(settings).mkdir(parents=True, exist_ok=True)
    set_aside_kinesis_mock_state(settings)


def kinesis_client(settings: Settings, timeout: float = 10.0, endpoint: str | None = None):
    """A Kinesis client with short timeouts: on `AWS_ENDPOINT_URL_KINESIS` (this store), or on `endpoint`."""
    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1, "mode": "standard"})
    kwargs = settings.boto3_client_kwargs("kinesis") | ({"endpoint_url": endpoint} if endpoint else {})
    return boto3.client("kinesis", config=config, **kwargs)


def list_all_streams(client) -> set[str]:
    return {name for page in client.get_paginator("list_streams").paginate() for name in page["StreamNames"]}


def ready(settings: Settings) -> None:
    try:
        list_all_streams(kinesis_client(settings, timeout=2.0))
    except Exception as error:  # any failure means "not serving Kinesis yet"
        raise NotReady(f"Kinesis ListStreams on {settings.kinesis_url} failed: {error}") from error


def service(settings: Settings) -> Service:
    port = settings.kinesis_port
    command = [
        _node(),
        str(SERVER_JS),
        f"--host={settings.bind_host}",
        f"--port={port}",
        f"--path={store_dir(settings)}",
        f"--shardLimit={SHARD_LIMIT}",
        f"--createStreamMs={STATE_CHANGE_MS}",
        f"--deleteStreamMs={STATE_CHANGE_MS}",
        f"--updateStreamMs={STATE_CHANGE_MS}",
    ]
    return Service(
        name="kinesis",
        command=command,
        ports=(port,),
        ready=ready,
        where=f"{settings.kinesis_url} (kinesalite 3.3.3; LevelDB in {store_dir(settings)})",
        prepare=prepare,
        env={"NODE_PATH": str(install_dir(settings) / "node_modules")},
        directory=REPO_ROOT,
        ready_timeout=60,
        stop_timeout=10,
    )
