"""Provisioning step `msk-connect` (`CONNECT_RUNNER=msk-connect`): the S3 sink on MSK Connect instead of a worker.

1. The plugin: the folder services/kafka/fetch.sh builds (the sink's jar and its runtime dependencies, the same the
   local worker loads) zipped with fixed entry order and timestamps, so the same jars give the same bytes, uploaded
   to `plugins/s3-sink-<sha256[:16]>.zip` in the user's bucket.
2. The custom plugin `<id>-s3-sink-<sha256[:16]>`: MSK Connect cannot change a plugin's content in place, so a new
   jar is a new plugin, named by its content; an unchanged jar finds its plugin and creates nothing.
3. The connector `<id>-s3-sink` on Kafka Connect 3.7.x (the sink is built against that API and tested on it and on
   4.1.1, services/s3_sink/pom.xml), with IAM auth and TLS to the cluster's IAM bootstrap brokers, in the cluster's
   subnets and security groups (or MSK_CONNECT_SUBNETS / MSK_CONNECT_SECURITY_GROUPS), with the service execution
   role `<id>-msk-connect` (services/provision/iam.py) and exactly the local connector's configuration
   (`services.provision.kafka.connector_config`) without static keys: the role writes to the bucket.
   An existing connector is updated in place (configuration, capacity, plugin); one whose cluster, network, role or
   Connect version differs, or that FAILED, is deleted and created again, which is safe: the sink resumes each
   partition after its last object in S3, whatever Connect's offsets say.
4. Plugins of older jars that no connector uses any more are deleted, with their objects.

MSK Connect has no emulator (moto lacks it): tests/unit/services/provision/test_msk_connect.py checks every request
against the service model with botocore's Stubber.
"""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from typing import Any

import boto3

from pipeline.kafka_clients import bootstrap_servers
from pipeline.settings import Settings
from services.connect.service import plugins_dir
from services.provision.iam import Scope, account_scope, resource_tags
from services.provision.kafka import connector_config

KAFKA_CONNECT_VERSION = "3.7.x"
PLUGINS_DIR = "plugins"
PLUGIN_FOLDER = "s3-sink"
# Entry time of every file in the archive: the earliest a ZIP can hold, so the bytes depend on the jars alone.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
STATIC_KEYS = ("aws.access.key.id", "aws.secret.access.key")
POLL_S = 10.0
PLUGIN_TIMEOUT_S = 600.0
CONNECTOR_TIMEOUT_S = 2400.0  # creating a connector takes 5 to 20 minutes


class MskConnectError(SystemExit):
    """MSK Connect refused or failed; the message says what it reported and where to look."""


def _client(settings: Settings, service: str):
    return boto3.client(service, **settings.boto3_client_kwargs(service))


# --- the plugin archive ------------------------------------------------------------------------------------------
def plugin_archive(settings: Settings) -> tuple[bytes, str]:
    """The plugin folder as a ZIP (`s3-sink/<jar>` entries, sorted, fixed times) and the first 16 hex of its sha256."""
    folder = plugins_dir(settings) / PLUGIN_FOLDER
    jars = sorted(folder.glob("*.jar"))
    if not any(jar.name.startswith("s3-sink-") for jar in jars):
        raise MskConnectError(f"S3 sink plugin missing in {folder}: run `bash services/kafka/fetch.sh` (or make setup)")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # jars are compressed already
        for jar in jars:
            entry = zipfile.ZipInfo(f"{PLUGIN_FOLDER}/{jar.name}", date_time=ZIP_EPOCH)
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, jar.read_bytes())
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()[:16]


def plugin_key(digest: str) -> str:
    return f"{PLUGINS_DIR}/{PLUGIN_FOLDER}-{digest}.zip"


def plugin_name(settings: Settings, digest: str) -> str:
    return f"{settings.msk_connect_plugin_prefix}{digest}"


def _upload(settings: Settings, data: bytes, key: str) -> str:
    s3 = _client(settings, "s3")
    try:
        s3.head_object(Bucket=settings.bucket, Key=key)
        return f"plugin archive s3://{settings.bucket}/{key} already uploaded"
    except s3.exceptions.ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
            raise
    s3.put_object(Bucket=settings.bucket, Key=key, Body=data, ContentType="application/zip")
    return f"uploaded plugin archive s3://{settings.bucket}/{key} ({len(data) / 1e6:.1f} MB)"


# --- custom plugin -----------------------------------------------------------------------------------------------
def _plugins(kafkaconnect, prefix: str) -> list[dict[str, Any]]:
    found = []
    for page in kafkaconnect.get_paginator("list_custom_plugins").paginate(namePrefix=prefix):
        found += [plugin for plugin in page["customPlugins"] if plugin["name"].startswith(prefix)]
    return found


def _wait(describe, ready: str, failed: str, what: str, timeout_s: float) -> dict[str, Any]:
    """Poll `describe()` until its state is `ready`; a `failed` state or the timeout is an error."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = describe()
        state = current.get("customPluginState") or current.get("connectorState")
        if state == ready:
            return current
        if state == failed or time.monotonic() > deadline:
            reason = current.get("stateDescription", {}).get("message", "no reason given")
            raise MskConnectError(
                f"{what} is {state} ({reason}); see the MSK Connect console and, for a connector, its worker logs "
                "(MSK_CONNECT_LOG_GROUP)"
            )
        time.sleep(POLL_S)


def ensure_plugin(settings: Settings, kafkaconnect, scope: Scope, digest: str) -> tuple[dict[str, Any], str]:
    """The ACTIVE custom plugin of this archive (revision and ARN), created if missing."""
    name = plugin_name(settings, digest)
    found = next((p for p in _plugins(kafkaconnect, name) if p["name"] == name), None)
    if found is None:
        found = kafkaconnect.create_custom_plugin(
            name=name,
            contentType="ZIP",
            description="Pinterest pipeline S3 sink (services/s3_sink), named by its content hash",
            location={"s3Location": {"bucketArn": scope.bucket(), "fileKey": plugin_key(digest)}},
            tags=resource_tags(settings),
        )
        action = "created"
    else:
        action = "found"
    arn = found["customPluginArn"]
    plugin = _wait(
        lambda: kafkaconnect.describe_custom_plugin(customPluginArn=arn),
        "ACTIVE",
        "CREATE_FAILED",
        f"custom plugin {name}",
        PLUGIN_TIMEOUT_S,
    )
    reference = {"customPluginArn": arn, "revision": plugin["latestRevision"]["revision"]}
    return reference, f"{action} custom plugin {name} ({arn}), ACTIVE"


# --- connector ---------------------------------------------------------------------------------------------------
def sink_configuration(settings: Settings) -> dict[str, str]:
    """The local connector's configuration; the service execution role, not keys, gives S3 access."""
    return {key: value for key, value in connector_config(settings).items() if key not in STATIC_KEYS}


def _network(settings: Settings) -> dict[str, list[str]]:
    subnets, groups = list(settings.msk_connect_subnets), list(settings.msk_connect_security_groups)
    if not subnets or not groups:
        cluster = _client(settings, "kafka").describe_cluster_v2(ClusterArn=settings.msk_cluster_arn)["ClusterInfo"]
        nodes = cluster.get("Provisioned", {}).get("BrokerNodeGroupInfo", {})
        vpc = (cluster.get("Serverless", {}).get("VpcConfigs") or [{}])[0]
        subnets = subnets or nodes.get("ClientSubnets") or vpc.get("SubnetIds", [])
        groups = groups or nodes.get("SecurityGroups") or vpc.get("SecurityGroupIds", [])
    return {"subnets": subnets, "securityGroups": groups}


def connector_request(settings: Settings, scope: Scope, plugin: dict[str, Any]) -> dict[str, Any]:
    """The whole create_connector request (pure but for the cluster's network when not set)."""
    request: dict[str, Any] = {
        "connectorName": settings.connector_name,
        "connectorDescription": f"Pinterest pipeline S3 sink: {', '.join(settings.topics)} -> s3://{settings.bucket}",
        "kafkaConnectVersion": KAFKA_CONNECT_VERSION,
        "capacity": capacity(settings),
        "connectorConfiguration": sink_configuration(settings),
        "kafkaCluster": {
            "apacheKafkaCluster": {
                "bootstrapServers": ",".join(bootstrap_servers(settings)),
                "vpc": _network(settings),
            }
        },
        "kafkaClusterClientAuthentication": {"authenticationType": "IAM"},
        "kafkaClusterEncryptionInTransit": {"encryptionType": "TLS"},
        "plugins": [{"customPlugin": plugin}],
        "serviceExecutionRoleArn": scope.role("msk-connect"),
        "tags": resource_tags(settings),
    }
    if settings.msk_connect_log_group:
        cloudwatch = {"enabled": True, "logGroup": settings.msk_connect_log_group}
        request["logDelivery"] = {"workerLogDelivery": {"cloudWatchLogs": cloudwatch}}
    return request


def capacity(settings: Settings) -> dict[str, Any]:
    return {
        "provisionedCapacity": {
            "mcuCount": settings.msk_connect_mcu_count,
            "workerCount": settings.msk_connect_workers,
        }
    }


def _find_connector(kafkaconnect, name: str) -> dict[str, Any] | None:
    for page in kafkaconnect.get_paginator("list_connectors").paginate(connectorNamePrefix=name):
        for connector in page["connectors"]:
            if connector["connectorName"] == name:
                return kafkaconnect.describe_connector(connectorArn=connector["connectorArn"])
    return None


def _fixed(connector: dict[str, Any]) -> dict[str, Any]:
    """What update_connector cannot change, comparable between describe_connector's answer and a request."""
    kafka = connector.get("kafkaCluster", {}).get("apacheKafkaCluster", {})
    vpc = kafka.get("vpc", {})
    logs = connector.get("logDelivery", {}).get("workerLogDelivery", {}).get("cloudWatchLogs", {})
    return {
        "bootstrap servers": sorted(kafka.get("bootstrapServers", "").split(",")),
        "subnets": sorted(vpc.get("subnets", [])),
        "security groups": sorted(vpc.get("securityGroups", [])),
        "authentication": connector.get("kafkaClusterClientAuthentication", {}).get("authenticationType"),
        "encryption": connector.get("kafkaClusterEncryptionInTransit", {}).get("encryptionType"),
        "Kafka Connect version": connector.get("kafkaConnectVersion"),
        "service execution role": connector.get("serviceExecutionRoleArn"),
        "log group": logs.get("logGroup") if logs.get("enabled") else None,
    }


def _fixed_differences(current: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    have, want = _fixed(current), _fixed(wanted)
    return [key for key in want if have[key] != want[key]]


def _updates(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """What update_connector must change (capacity, configuration, plugin), as its arguments."""
    updates: dict[str, Any] = {}
    if current.get("capacity", {}).get("provisionedCapacity") != wanted["capacity"]["provisionedCapacity"]:
        updates["capacity"] = wanted["capacity"]
    if current.get("connectorConfiguration") != wanted["connectorConfiguration"]:
        updates["connectorConfiguration"] = wanted["connectorConfiguration"]
    if current.get("plugins") != wanted["plugins"]:
        updates["plugins"] = wanted["plugins"]
    return updates


def _wait_connector(kafkaconnect, arn: str, name: str, stale_version: str | None = None) -> dict[str, Any]:
    """Wait until the connector runs; after an update, until it runs a version other than `stale_version` (MSK
    Connect may still describe the old one as RUNNING for a moment)."""

    def describe() -> dict[str, Any]:
        current = kafkaconnect.describe_connector(connectorArn=arn)
        if current["connectorState"] == "RUNNING" and stale_version and current["currentVersion"] == stale_version:
            return {**current, "connectorState": "UPDATING"}
        return current

    return _wait(describe, "RUNNING", "FAILED", f"connector {name}", CONNECTOR_TIMEOUT_S)


def _delete_connector(kafkaconnect, connector: dict[str, Any]) -> None:
    arn = connector["connectorArn"]
    kafkaconnect.delete_connector(connectorArn=arn, currentVersion=connector["currentVersion"])
    deadline = time.monotonic() + CONNECTOR_TIMEOUT_S
    while _find_connector(kafkaconnect, connector["connectorName"]) is not None:
        if time.monotonic() > deadline:
            raise MskConnectError(f"connector {connector['connectorName']} still exists {CONNECTOR_TIMEOUT_S:.0f} s "
                                  "after delete_connector; see the MSK Connect console")  # fmt: skip
        time.sleep(POLL_S)


def ensure_connector(settings: Settings, kafkaconnect, wanted: dict[str, Any]) -> list[str]:
    name = settings.connector_name
    current = _find_connector(kafkaconnect, name)
    lines, stale = [], None
    if current is not None and current["connectorState"] in ("CREATING", "UPDATING"):
        current = _wait_connector(kafkaconnect, current["connectorArn"], name)
    if current is not None:
        rebuild = _fixed_differences(current, wanted)
        if current["connectorState"] == "FAILED":
            rebuild.append("state FAILED")
        if rebuild:
            _delete_connector(kafkaconnect, current)
            lines.append(
                f"deleted connector {name} to create it again ({', '.join(rebuild)}; the sink resumes from S3)"
            )
            current = None
    if current is None:
        arn = kafkaconnect.create_connector(**wanted)["connectorArn"]
        lines.append(f"created connector {name} ({arn})")
    else:
        arn = current["connectorArn"]
        updates = _updates(current, wanted)
        if updates:
            kafkaconnect.update_connector(connectorArn=arn, currentVersion=current["currentVersion"], **updates)
            stale = current["currentVersion"]
            lines.append(f"updated connector {name}: {', '.join(sorted(updates))}")
        else:
            lines.append(f"connector {name} unchanged")
    _wait_connector(kafkaconnect, arn, name, stale)
    workers = settings.msk_connect_workers
    lines.append(f"connector {name} RUNNING ({workers} worker(s) x {settings.msk_connect_mcu_count} MCU)")
    return lines


def _drop_unused_plugins(settings: Settings, kafkaconnect, keep: str) -> list[str]:
    """Delete this user's plugins of older jars (and their archives) once the connector no longer uses them."""
    lines = []
    s3 = _client(settings, "s3")
    for plugin in _plugins(kafkaconnect, settings.msk_connect_plugin_prefix):
        if plugin["customPluginArn"] == keep:
            continue
        kafkaconnect.delete_custom_plugin(customPluginArn=plugin["customPluginArn"])
        key = plugin.get("latestRevision", {}).get("location", {}).get("s3Location", {}).get("fileKey")
        if key and key.startswith(f"{PLUGINS_DIR}/"):
            s3.delete_object(Bucket=settings.bucket, Key=key)
        lines.append(f"deleted custom plugin {plugin['name']} of an older jar")
    return lines


# --- the step ----------------------------------------------------------------------------------------------------
def provision_msk_connect(settings: Settings, dry_run: bool) -> list[str]:
    """Upload the plugin, ensure its custom plugin, create or update the connector and wait until it runs."""
    if settings.connect_runner != "msk-connect":
        return [f"skipped: CONNECT_RUNNER={settings.connect_runner} (the connector step registers the sink)"]
    if problems := requires(settings):
        raise MskConnectError("MSK Connect needs: " + "; ".join(problems))
    data, digest = plugin_archive(settings)
    name = settings.connector_name
    if dry_run:
        shown = {k: ("***" if "secret" in k else v) for k, v in sink_configuration(settings).items()}
        return [
            f"would upload plugin archive s3://{settings.bucket}/{plugin_key(digest)} ({len(data) / 1e6:.1f} MB)",
            f"would ensure custom plugin {plugin_name(settings, digest)} (a new one only when the jars change)",
            f"would create or update connector {name} on Kafka Connect {KAFKA_CONNECT_VERSION}, IAM auth to "
            f"{settings.msk_cluster_arn}, {settings.msk_connect_workers} worker(s) x {settings.msk_connect_mcu_count} "
            f"MCU, role {settings.iam_name('msk-connect')}, configuration {shown}",
        ]
    scope = account_scope(settings)
    kafkaconnect = _client(settings, "kafkaconnect")
    lines = [_upload(settings, data, plugin_key(digest))]
    plugin, line = ensure_plugin(settings, kafkaconnect, scope, digest)
    lines.append(line)
    lines += ensure_connector(settings, kafkaconnect, connector_request(settings, scope, plugin))
    lines += _drop_unused_plugins(settings, kafkaconnect, keep=plugin["customPluginArn"])
    return lines


def requires(settings: Settings) -> list[str]:
    """The settings MSK Connect needs (no AWS call)."""
    if settings.connect_runner != "msk-connect":
        return []
    problems = []
    if not settings.msk_cluster_arn:
        problems.append("MSK_CLUSTER_ARN is not set: set it to the MSK cluster's ARN (its network and IAM resources)")
    if settings.kafka_auth != "iam":
        problems.append("KAFKA_AUTH must be iam with CONNECT_RUNNER=msk-connect (the connector authenticates by IAM)")
    return problems


def costs(settings: Settings) -> list[str]:
    """MSK Connect bills each worker's MCUs by the hour while the connector exists (services/provision/costs.py)."""
    from services.provision import costs as prices

    if settings.connect_runner != "msk-connect":
        return []
    return prices.msk_connect(settings.msk_connect_mcu_count, settings.msk_connect_workers)


def deprovision_msk_connect(settings: Settings, dry_run: bool) -> list[str]:
    """Delete the connector and every custom plugin of this user (by name, and only with the project's tags)."""
    kafkaconnect = _client(settings, "kafkaconnect")
    lines = []
    connector = _find_connector(kafkaconnect, settings.connector_name)
    found: list[tuple[str, str, Any]] = []
    if connector is not None:
        found.append((f"MSK Connect connector {settings.connector_name}", connector["connectorArn"], connector))
    for plugin in _plugins(kafkaconnect, settings.msk_connect_plugin_prefix):
        found.append((f"MSK Connect custom plugin {plugin['name']}", plugin["customPluginArn"], None))
    tagged = [(what, arn, connector, kafkaconnect.list_tags_for_resource(resourceArn=arn).get("tags", {}))
              for what, arn, connector in found]  # fmt: skip
    for what, arn, connector, tags in tagged:
        if any(tags.get(key) != value for key, value in resource_tags(settings).items()):
            lines.append(f"keep {what}: it lacks the tags {resource_tags(settings)}, provisioning did not make it")
        elif dry_run:
            lines.append(f"would delete {what}")
        else:
            if connector is not None:
                _delete_connector(kafkaconnect, connector)
            else:
                kafkaconnect.delete_custom_plugin(customPluginArn=arn)
            lines.append(f"deleted {what}")
    return lines
