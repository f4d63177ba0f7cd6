"""Kafka Connect in distributed mode (one worker) running the project's S3 sink plugin.

Same jars as the broker (<state>/jars/kafka, from services/kafka/fetch.sh); the plugin is built from
services/s3_sink into <state>/jars/connect-plugins. With `KAFKA_AUTH=iam` (a worker on the EC2 client, against MSK)
the worker, its sink consumers, producers and admin clients authenticate with SASL_SSL + AWS_MSK_IAM, and Amazon's
aws-msk-iam-auth (services/connect/pom.xml, in <state>/jars/connect-iam) joins the classpath; the internal topics
and the worker's group then carry the user id (`Settings.connect_storage_topic`, `connect_worker_group`), and their
replication factor is `KAFKA_REPLICATION_FACTOR`. Connectors are registered by provisioning
(services/provision/kafka.py), not here. Ready when the REST API lists connectors and our plugin is loaded;
healthy (what `make status` also checks) when no connector and no task is FAILED, e.g. a sink task that gave up
after S3 stayed unreachable while it opened its partitions. `up` does not wait for health: restarting the worker
does not cure a failed task, and provisioning, which runs after `up`, restarts it.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from pipeline.settings import Settings
from services.contract import NotReady, Service
from services.kafka import service as kafka

SINK_CLASS = "pipeline.s3sink.S3SinkConnector"
HEAP = ["-Xms256m", "-Xmx768m"]


# Amazon's MSK IAM client (https://github.com/aws/aws-msk-iam-auth): what MSK's IAM listener expects of a Java client.
IAM_AUTH = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "AWS_MSK_IAM",
    "sasl.jaas.config": "software.amazon.msk.auth.iam.IAMLoginModule required;",
    "sasl.client.callback.handler.class": "software.amazon.msk.auth.iam.IAMClientCallbackHandler",
}
# The worker's own clients, then those it makes for tasks: sink consumers, source producers, admin clients (DLQ topics).
CLIENT_PREFIXES = ("", "consumer.", "producer.", "admin.")


def plugins_dir(settings: Settings) -> Path:
    return settings.tools_dir / "jars" / "connect-plugins"


def iam_jars_dir(settings: Settings) -> Path:
    return settings.tools_dir / "jars" / "connect-iam"


def auth_properties(settings: Settings) -> dict[str, str]:
    """The client authentication of the worker and of every client it makes: none on the local broker."""
    if settings.kafka_auth != "iam":
        return {}
    return {prefix + key: value for prefix in CLIENT_PREFIXES for key, value in IAM_AUTH.items()}


def config_path(settings: Settings) -> Path:
    return settings.run_dir / "connect" / "worker.properties"


def worker_properties(settings: Settings) -> dict[str, str]:
    host, port = settings.connect_address
    replication = str(settings.kafka_replication_factor)
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": settings.connect_worker_group,
        # Raw bytes in and out: the sink writes each record value as its JSON line (see JsonLines.java).
        "key.converter": "org.apache.kafka.connect.converters.ByteArrayConverter",
        "value.converter": "org.apache.kafka.connect.converters.ByteArrayConverter",
        "config.storage.topic": settings.connect_storage_topic("configs"),
        "offset.storage.topic": settings.connect_storage_topic("offsets"),
        "status.storage.topic": settings.connect_storage_topic("status"),
        "config.storage.replication.factor": replication,
        "offset.storage.replication.factor": replication,
        "status.storage.replication.factor": replication,
        "offset.storage.partitions": "5",
        "status.storage.partitions": "1",
        # preCommit (which also uploads objects older than rotate.interval.ms) runs this often.
        "offset.flush.interval.ms": "2000",
        # One worker: give its tasks back at once after a crash instead of waiting for a lost member (5 min default).
        "scheduled.rebalance.max.delay.ms": "0",
        # A killed worker's sink consumer leaves the group after this, not after the 45 s default.
        "consumer.session.timeout.ms": "10000",
        "consumer.heartbeat.interval.ms": "3000",
        # Bigger batches per put(): fewer Connect round trips per object of flush.size records.
        "consumer.max.poll.records": "2000",
        "listeners": f"http://{host}:{port}",
        "rest.advertised.host.name": host,
        "rest.advertised.port": str(port),
        "plugin.path": str(plugins_dir(settings)),
        # Plugins declare themselves in META-INF/services; skipping the reflective scan saves seconds at start.
        "plugin.discovery": "service_load",
        **auth_properties(settings),
    }


def prepare(settings: Settings) -> None:
    kafka.check_installed(settings)
    if not any(plugins_dir(settings).glob("s3-sink/s3-sink-*.jar")):
        raise SystemExit(f"S3 sink plugin missing in {plugins_dir(settings)}: run `bash services/kafka/fetch.sh`")
    if settings.kafka_auth == "iam" and not any(iam_jars_dir(settings).glob("aws-msk-iam-auth-*.jar")):
        raise SystemExit(
            f"KAFKA_AUTH=iam, but the MSK IAM client is missing in {iam_jars_dir(settings)}: run "
            "`bash services/kafka/fetch.sh` (or make setup)"
        )
    kafka.write_properties(config_path(settings), worker_properties(settings))


def ready(settings: Settings) -> None:
    base = settings.connect_url.rstrip("/")
    try:
        connectors = httpx.get(f"{base}/connectors", timeout=3)
        plugins = httpx.get(f"{base}/connector-plugins", timeout=3)
    except httpx.HTTPError as error:
        raise NotReady(f"GET {base}/connectors failed: {error}") from error
    if connectors.status_code != 200 or plugins.status_code != 200:
        raise NotReady(f"GET {base}/connectors answered {connectors.status_code}: {connectors.text[:200]}")
    if SINK_CLASS not in {plugin["class"] for plugin in plugins.json()}:
        raise NotReady(f"Connect is up but the S3 sink plugin {SINK_CLASS} is not loaded from {plugins_dir(settings)}")


def trace_summary(trace: str | None) -> str:
    """A Connect error trace in one line: its first line, and the root cause (the last `Caused by:`) when there is
    one, since the first line of a sink task's trace is often Connect's generic "Exiting WorkerSinkTask ..."."""
    lines = [line.strip() for line in (trace or "").splitlines() if line.strip()]
    if not lines:
        return "no trace"
    causes = [line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by: ")]
    return lines[0] if not causes or causes[-1] == lines[0] else f"{lines[0]} (caused by {causes[-1]})"


def failures(statuses: dict[str, dict]) -> list[str]:
    """Each FAILED connector and task, with its trace in one line, from `GET /connectors?expand=status`."""
    found = []
    for name, entry in sorted(statuses.items()):
        status = entry.get("status", {})
        connector = status.get("connector", {})
        if connector.get("state") == "FAILED":
            found.append(
                f"connector {name} FAILED on {connector.get('worker_id')}: {trace_summary(connector.get('trace'))}"
            )
        for task in status.get("tasks", []):
            if task.get("state") == "FAILED":
                found.append(
                    f"connector {name} task {task.get('id')} FAILED on {task.get('worker_id')}: "
                    f"{trace_summary(task.get('trace'))}"
                )
    return found


def health(settings: Settings) -> None:
    base = settings.connect_url.rstrip("/")
    try:
        response = httpx.get(f"{base}/connectors", params={"expand": "status"}, timeout=3)
    except httpx.HTTPError as error:
        raise NotReady(f"GET {base}/connectors?expand=status failed: {error}") from error
    if response.status_code != 200:
        raise NotReady(f"GET {base}/connectors?expand=status answered {response.status_code}: {response.text[:200]}")
    failed = failures(response.json())
    if failed:
        raise NotReady(
            "; ".join(failed) + f". Once the cause is fixed, restart it: `make provision` or POST "
            f"{base}/connectors/<name>/restart?includeTasks=true&onlyFailed=true"
        )


def service(settings: Settings) -> Service:
    _host, port = settings.connect_address
    return Service(
        name="connect",
        command=kafka.java_command(
            settings,
            "org.apache.kafka.connect.cli.ConnectDistributed",
            str(config_path(settings)),
            heap=HEAP,
            extra_classpath=(iam_jars_dir(settings),) if settings.kafka_auth == "iam" else (),
        ),
        ports=(port,),
        ready=ready,
        health=health,
        where=f"{settings.connect_url} (Kafka Connect, plugin {SINK_CLASS})",
        prepare=prepare,
        depends_on=("kafka", "s3"),
        ready_timeout=120,
        stop_timeout=30,
    )
