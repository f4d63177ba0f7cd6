"""Provisioning steps `topics` and `connector`: the user's Kafka topics and the S3 sink connector, idempotently.

Topics `<id>.pin|geo|user` get `KAFKA_PARTITIONS` partitions (grown if they have fewer; Kafka cannot shrink them)
and the broker's default replication factor (1 on the local single node, the cluster's default on MSK). The
connector is registered with `PUT /connectors/<name>/config`, which creates or updates it, so running provisioning
again converges instead of failing; a failed task is restarted.
"""

from __future__ import annotations

import time
from functools import partial

import httpx
from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from pipeline import layout
from pipeline.kafka_clients import kafka_python_config
from pipeline.settings import Settings
from services.provision import teardown

SINK_CLASS = "pipeline.s3sink.S3SinkConnector"
RAW_BYTES = "org.apache.kafka.connect.converters.ByteArrayConverter"
CONNECTOR_RUNNING_TIMEOUT_S = 60.0
TOPICS_GONE_TIMEOUT_S = 30.0


def provision_topics(settings: Settings, dry_run: bool) -> list[str]:
    """Create each missing topic; grow the partition count of an existing one that has fewer than configured."""
    wanted = settings.kafka_partitions
    if dry_run:
        return [f"would ensure topic {topic} with {wanted} partitions" for topic in settings.topics]
    admin = KafkaAdminClient(**kafka_python_config(settings, "provision"))
    try:
        existing = {t["name"]: len(t["partitions"]) for t in admin.describe_topics() if t["error_code"] == 0}
        lines = []
        for topic in settings.topics:
            count = existing.get(topic)
            if count is None:
                try:
                    admin.create_topics({topic: {"num_partitions": wanted, "replication_factor": -1}})
                    lines.append(f"created topic {topic} ({wanted} partitions)")
                except TopicAlreadyExistsError:
                    lines.append(f"topic {topic} already exists (created concurrently)")
            elif count < wanted:
                admin.create_partitions({topic: wanted})
                lines.append(f"topic {topic}: grew from {count} to {wanted} partitions")
            elif count > wanted:
                lines.append(f"topic {topic} has {count} partitions, more than KAFKA_PARTITIONS={wanted}; kept")
            else:
                lines.append(f"topic {topic} already exists ({count} partitions)")
        return lines
    finally:
        admin.close()


def deprovision_topics(settings: Settings, dry_run: bool) -> list[str]:
    """Delete the user's three topics, with the records in them (with `dry_run`, list them). Kafka topics carry no
    tags: the names `<id>.pin|geo|user` are the only mark, so nothing else on the cluster is touched."""
    admin = KafkaAdminClient(**kafka_python_config(settings, "deprovision"))
    try:
        existing = set(admin.list_topics())
        found = [
            teardown.Found(f"Kafka topic {topic} (matched by name)", None, partial(admin.delete_topics, [topic]))
            for topic in settings.topics
            if topic in existing
        ]
        lines = teardown.sweep(settings, dry_run, found)
        if not dry_run:
            lines += _wait_gone(admin, [topic for topic in settings.topics if topic in existing])
        return lines
    finally:
        admin.close()


def _wait_gone(admin: KafkaAdminClient, topics: list[str]) -> list[str]:
    """Wait until the deleted topics have left the broker's metadata. The controller acknowledges DeleteTopics once
    the deletion is in its metadata log; the broker's cache, which answers `list_topics` and producers, follows a
    moment later, and a topic created again before then is refused as "marked for deletion". So "deleted" means
    "no longer listed"; a topic still listed after TOPICS_GONE_TIMEOUT_S is reported, one line each."""
    deadline = time.monotonic() + TOPICS_GONE_TIMEOUT_S
    remaining = set(admin.list_topics()) & set(topics)
    while remaining and time.monotonic() < deadline:
        time.sleep(0.2)
        remaining = set(admin.list_topics()) & set(topics)
    return [
        f"Kafka topic {topic} is still listed {TOPICS_GONE_TIMEOUT_S:.0f} s after its deletion; run deprovision again"
        for topic in sorted(remaining)
    ]


def connector_config(settings: Settings) -> dict[str, str]:
    """The S3 sink's configuration (see services/s3_sink/.../S3SinkConfig.java for every key)."""
    endpoint = settings.s3_endpoint_url or ""
    config = {
        "connector.class": SINK_CLASS,
        "tasks.max": "1",
        "topics": ",".join(settings.topics),
        "key.converter": RAW_BYTES,
        "value.converter": RAW_BYTES,
        "s3.bucket.name": settings.bucket,
        "s3.region": settings.aws_region,
        "store.url": endpoint,
        "s3.path.style.access.enabled": "true" if endpoint else "false",
        "topics.dir": layout.TOPICS_DIR,
        "flush.size": str(settings.s3_sink_flush_size),
        "flush.bytes": str(settings.s3_sink_flush_bytes),
        "rotate.interval.ms": str(settings.s3_sink_rotate_interval_ms),
    }
    credentials = settings.boto3_client_kwargs("s3")
    if "aws_access_key_id" in credentials:
        config["aws.access.key.id"] = credentials["aws_access_key_id"]
        config["aws.secret.access.key"] = credentials["aws_secret_access_key"]
    return config


def _wait_running(client: httpx.Client, name: str) -> str:
    deadline = time.monotonic() + CONNECTOR_RUNNING_TIMEOUT_S
    restarted = False
    state = "unknown"
    while time.monotonic() < deadline:
        response = client.get(f"/connectors/{name}/status")
        if response.status_code == 200:
            status = response.json()
            tasks = status.get("tasks", [])
            states = [status["connector"]["state"], *(task["state"] for task in tasks)]
            state = ", ".join(f"{task['id']}:{task['state']}" for task in tasks) or "no tasks yet"
            if tasks and all(s == "RUNNING" for s in states):
                return f"connector {name} RUNNING ({len(tasks)} task(s))"
            if "FAILED" in states and not restarted:
                client.post(f"/connectors/{name}/restart", params={"includeTasks": "true", "onlyFailed": "true"})
                restarted = True
        time.sleep(0.5)
    raise SystemExit(
        f"connector {name} is not RUNNING after {CONNECTOR_RUNNING_TIMEOUT_S:.0f} s (tasks: {state}); "
        f"see {client.base_url}connectors/{name}/status and the Connect log (.state/logs/connect.log)"
    )


def _current_config(client: httpx.Client, settings: Settings, advice: str) -> httpx.Response:
    """GET the connector's configuration (200, or 404 when there is none); an unreachable worker ends the step with
    its URL, the error and `advice`."""
    try:
        return client.get(f"/connectors/{settings.connector_name}/config")
    except httpx.HTTPError as error:
        raise SystemExit(f"Kafka Connect not reachable at {settings.connect_url} ({error}){advice}") from None


def provision_connector(settings: Settings, dry_run: bool) -> list[str]:
    """Create or update the S3 sink connector through Connect's REST API and wait until its tasks run."""
    if settings.connect_runner == "msk-connect":
        return ["skipped: CONNECT_RUNNER=msk-connect (the msk-connect step creates the connector)"]
    name = settings.connector_name
    config = connector_config(settings)
    shown = {k: ("***" if "secret" in k else v) for k, v in config.items()}
    if dry_run:
        return [f"would PUT {settings.connect_url}/connectors/{name}/config {shown}"]
    with httpx.Client(base_url=settings.connect_url, timeout=30) as client:
        current = _current_config(client, settings, "; is `make up` done?")
        if current.status_code == 200 and current.json() == {**config, "name": name}:
            action = "unchanged"
        else:
            response = client.put(f"/connectors/{name}/config", json=config)
            if response.status_code not in (200, 201):
                raise SystemExit(f"PUT /connectors/{name}/config answered {response.status_code}: {response.text}")
            action = "created" if response.status_code == 201 else "updated"
        return [
            f"connector {name} {action}: {','.join(settings.topics)} -> s3://{settings.bucket}/{layout.TOPICS_PREFIX}",
            _wait_running(client, name),
        ]


def deprovision_connector(settings: Settings, dry_run: bool) -> list[str]:
    """Delete the S3 sink connector from a self-managed Connect worker (with `dry_run`, list it). Connectors carry no
    tags: the one named `<id>-s3-sink` is deleted only when it is this project's sink writing this user's topics to
    this user's bucket; a same-named connector configured otherwise is kept and named. With
    `CONNECT_RUNNER=msk-connect` the msk-connect step deletes the connector instead."""
    if settings.connect_runner == "msk-connect":
        return ["skipped: CONNECT_RUNNER=msk-connect (the msk-connect step deletes the connector)"]
    name = settings.connector_name
    with httpx.Client(base_url=settings.connect_url, timeout=30) as client:
        current = _current_config(
            client,
            settings,
            f": start the worker to delete the connector {name}, or run the teardown with `--only` and the other steps",
        )
        if current.status_code == 404:
            return []
        current.raise_for_status()
        config = current.json()
        ours = (
            config.get("connector.class") == SINK_CLASS
            and set(config.get("topics", "").split(",")) == set(settings.topics)
            and config.get("s3.bucket.name") == settings.bucket
        )
        if not ours:
            return [
                f"keep Kafka Connect connector {name}: it is not this project's sink of {','.join(settings.topics)} "
                f"to {settings.bucket} (class {config.get('connector.class')}, topics {config.get('topics')})"
            ]
        found = teardown.Found(
            f"Kafka Connect connector {name} at {settings.connect_url} (matched by name and configuration)",
            None,
            lambda: client.delete(f"/connectors/{name}").raise_for_status(),
        )
        return teardown.sweep(settings, dry_run, [found])
