"""Apache Kafka 4 in KRaft mode, one node acting as broker and controller, run from Maven Central jars.

The jars come from services/kafka/fetch.sh (called by scripts/setup.sh) into <state>/jars/kafka. `prepare` writes
the broker's properties and, once, formats the log directory as a standalone KRaft quorum; readiness is a real
metadata request through the Kafka admin protocol.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from pathlib import Path

from pipeline.settings import REPO_ROOT, Settings
from services.contract import NotReady, Service

LOG4J_CONFIG = Path(__file__).resolve().parent / "log4j2.properties"
HEAP = ["-Xms256m", "-Xmx512m"]
# A JVM that ran out of heap is left half-working (threads dead, others stuck); exiting lets supervisord (natively)
# or the container's runner (Docker mode) restart it cleanly. The broker and the Connect worker share this command.
JVM_FLAGS = ["-XX:+ExitOnOutOfMemoryError", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]


def jars_dir(settings: Settings) -> Path:
    return settings.tools_dir / "jars" / "kafka"


def data_dir(settings: Settings) -> Path:
    return settings.data_dir / "kafka"


def config_path(settings: Settings) -> Path:
    return settings.run_dir / "kafka" / "server.properties"


def java_command(
    settings: Settings, main_class: str, *args: str, heap: list[str] = HEAP, extra_classpath: tuple[Path, ...] = ()
) -> list[str]:
    """A JVM on the Kafka classpath (and `extra_classpath` folders); shared with Kafka Connect, which runs from the same
    jars."""
    return [
        shutil.which("java") or "java",
        *heap,
        *JVM_FLAGS,
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp",
        ":".join(f"{folder}/*" for folder in [jars_dir(settings), *extra_classpath]),
        main_class,
        *args,
    ]


def server_properties(settings: Settings) -> dict[str, str]:
    host, port = settings.kafka_bootstrap_address
    controller = f"{host}:{settings.kafka_controller_port}"
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": controller,
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{controller}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir(settings)),
        "num.partitions": str(settings.kafka_partitions),
        # Topics are provisioned explicitly; an unknown topic must stay unknown (the REST proxy answers 40401).
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
        # Growth bound: each partition keeps at most this long and this much (settings KAFKA_RETENTION_*).
        "log.retention.hours": str(settings.kafka_retention_hours),
        "log.retention.bytes": str(settings.kafka_retention_bytes),
        "log.segment.bytes": str(settings.kafka_segment_bytes),
    }


def write_properties(path: Path, properties: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))


def check_installed(settings: Settings) -> None:
    """Fail early, saying how to fix it, when the JDK or the jars that fetch.sh installs are missing."""
    if shutil.which("java") is None:
        raise SystemExit("java not found: install a JDK 17+ (scripts/setup.sh does it through services/kafka/fetch.sh)")
    if not any(jars_dir(settings).glob("kafka-clients-*.jar")):
        raise SystemExit(
            f"Kafka jars missing in {jars_dir(settings)}: run `bash services/kafka/fetch.sh` (or make setup)"
        )


def new_cluster_id() -> str:
    """A random cluster id as Kafka's own `Uuid.randomUuid()` makes it: url-safe base64 of 16 random bytes, never
    starting with "-", which a command line would read as an option (1 start in 64 did, and failed the format)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def prepare(settings: Settings) -> None:
    check_installed(settings)
    write_properties(config_path(settings), server_properties(settings))
    if (data_dir(settings) / "meta.properties").exists():
        return
    data_dir(settings).mkdir(parents=True, exist_ok=True)
    cluster_id = new_cluster_id()
    print(f"formatting Kafka log directory {data_dir(settings)} (cluster {cluster_id}) ...", flush=True)
    command = java_command(
        settings,
        "kafka.tools.StorageTool",
        "format",
        f"--cluster-id={cluster_id}",
        "--config",
        str(config_path(settings)),
        "--standalone",
        heap=["-Xmx256m"],
    )
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    if result.returncode != 0:
        shutil.rmtree(data_dir(settings), ignore_errors=True)
        raise SystemExit(f"formatting Kafka storage failed:\n{result.stdout}\n{result.stderr}")


def admin_config(settings: Settings) -> dict[str, object]:
    """confluent-kafka admin settings for the local broker; quiet, because readiness polls while it is down."""
    return {"bootstrap.servers": settings.kafka_bootstrap_servers, "socket.timeout.ms": 3000, "log_level": 0}


def ready(settings: Settings) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        metadata = AdminClient(admin_config(settings)).list_topics(timeout=3)
    except KafkaException as error:
        raise NotReady(f"metadata request to {settings.kafka_bootstrap_servers} failed: {error}") from error
    if not metadata.brokers:
        raise NotReady(f"metadata from {settings.kafka_bootstrap_servers} lists no broker yet")


def service(settings: Settings) -> Service:
    host, port = settings.kafka_bootstrap_address
    return Service(
        name="kafka",
        command=java_command(settings, "kafka.Kafka", str(config_path(settings))),
        ports=(port, settings.kafka_controller_port),
        ready=ready,
        where=f"kafka://{host}:{port} (KRaft controller on {settings.kafka_controller_port})",
        prepare=prepare,
        ready_timeout=90,
        stop_timeout=30,
    )
