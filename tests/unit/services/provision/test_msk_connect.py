"""The S3 sink on MSK Connect (services/provision/msk_connect.py). moto has no MSK Connect, so botocore's Stubber
plays it: every request is validated against the kafkaconnect service model (and each answer against its output
shape), and the requests that matter are compared whole. The bucket and the caller's account are moto's."""

from __future__ import annotations

import io
import os
import zipfile
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from pipeline.settings import load_settings
from services.connect.service import plugins_dir
from services.provision import msk_connect
from services.provision.kafka import connector_config, provision_connector
from tests.support.aws import fake_account

USER_ID = "7e57c0de0077"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
CLUSTER = f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/pipeline/3f1c2a9e-aaaa-bbbb-cccc-0123456789ab-2"
BOOTSTRAP = (
    "b-1.pipeline.x1.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.pipeline.x1.c2.kafka.eu-west-1.amazonaws.com:9098"
)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
CONNECTOR_ARN = f"arn:aws:kafkaconnect:{REGION}:{ACCOUNT}:connector/{USER_ID}-s3-sink/abc-1"
SUBNETS, GROUPS = ["subnet-0a", "subnet-0b"], ["sg-0c"]


def plugin_arn(name: str) -> str:
    return f"arn:aws:kafkaconnect:{REGION}:{ACCOUNT}:custom-plugin/{name}/def-1"


@pytest.fixture
def aws(monkeypatch, tmp_path):
    fake_account(monkeypatch, tmp_path, ("AWS_", "PIPELINE_", "MSK_", "KAFKA_", "CONNECT_"))
    monkeypatch.setattr(msk_connect.time, "sleep", lambda _s: None)
    with mock_aws():
        settings = msk_settings(tmp_path)
        write_plugin(settings, b"sink classes v1")
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=settings.bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield settings


def msk_settings(tmp_path, **overrides):
    return load_settings(
        **{
            "pipeline_target": "aws",
            "pipeline_user_id": USER_ID,
            "aws_region": REGION,
            "kafka_bootstrap_servers": BOOTSTRAP,
            "kafka_auth": "iam",
            "connect_runner": "msk-connect",
            "msk_cluster_arn": CLUSTER,
            "state_dir": tmp_path,
            "install_dir": tmp_path / "install",
            **overrides,
        }
    )


def write_plugin(settings, sink: bytes) -> None:
    folder = plugins_dir(settings) / "s3-sink"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "s3-sink-0.1.0.jar").write_bytes(sink)
    (folder / "s3-2.57.8.jar").write_bytes(b"aws sdk")


def uploaded(settings) -> str:
    """Upload the plugin archive as a previous run did; its digest."""
    data, digest = msk_connect.plugin_archive(settings)
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=settings.bucket, Key=msk_connect.plugin_key(digest), Body=data)
    return digest


class Stubs:
    """Stubbed kafkaconnect and kafka clients handed to the module; other services stay moto's."""

    def __init__(self, monkeypatch, settings):
        real = msk_connect._client
        self.kafkaconnect = real(settings, "kafkaconnect")
        self.kafka = real(settings, "kafka")
        self.connect, self.msk = Stubber(self.kafkaconnect), Stubber(self.kafka)
        stubbed = {"kafkaconnect": self.kafkaconnect, "kafka": self.kafka}
        monkeypatch.setattr(msk_connect, "_client", lambda s, service: stubbed.get(service) or real(s, service))
        self.connect.activate()
        self.msk.activate()

    def done(self) -> None:
        self.connect.assert_no_pending_responses()
        self.msk.assert_no_pending_responses()


def plugin_summary(name: str, digest: str, state: str = "ACTIVE") -> dict:
    return {
        "customPluginArn": plugin_arn(name),
        "customPluginState": state,
        "name": name,
        "creationTime": NOW,
        "latestRevision": {
            "revision": 1,
            "contentType": "ZIP",
            "location": {"s3Location": {"bucketArn": "arn:aws:s3:::b", "fileKey": msk_connect.plugin_key(digest)}},
        },
    }


def expect_plugin(stubs: Stubs, settings, digest: str, exists: bool) -> str:
    name = msk_connect.plugin_name(settings, digest)
    listed = [plugin_summary(name, digest)] if exists else []
    stubs.connect.add_response("list_custom_plugins", {"customPlugins": listed}, {"namePrefix": name})
    if not exists:
        stubs.connect.add_response(
            "create_custom_plugin",
            {"customPluginArn": plugin_arn(name), "customPluginState": "CREATING", "name": name, "revision": 1},
            {
                "name": name,
                "contentType": "ZIP",
                "description": ANY,
                "location": {
                    "s3Location": {
                        "bucketArn": f"arn:aws:s3:::{settings.bucket}",
                        "fileKey": f"plugins/s3-sink-{digest}.zip",
                    }
                },
                "tags": {"project": "pinterest-pipeline", "pipeline-user-id": USER_ID},
            },
        )
        stubs.connect.add_response(
            "describe_custom_plugin", plugin_summary(name, digest, "CREATING"), {"customPluginArn": plugin_arn(name)}
        )
    stubs.connect.add_response(
        "describe_custom_plugin", plugin_summary(name, digest), {"customPluginArn": plugin_arn(name)}
    )
    return name


def expect_cluster(stubs: Stubs) -> None:
    stubs.msk.add_response(
        "describe_cluster_v2",
        {
            "ClusterInfo": {
                "ClusterArn": CLUSTER,
                "ClusterType": "PROVISIONED",
                "Provisioned": {
                    "BrokerNodeGroupInfo": {
                        "ClientSubnets": SUBNETS,
                        "SecurityGroups": GROUPS,
                        "InstanceType": "kafka.m5.large",
                    },
                    "NumberOfBrokerNodes": 2,
                },
            }
        },
        {"ClusterArn": CLUSTER},
    )


def wanted_connector(settings, plugin_name: str) -> dict:
    """The create_connector request, spelled out: what the account receives."""
    return {
        "connectorName": f"{USER_ID}-s3-sink",
        "connectorDescription": ANY,
        "kafkaConnectVersion": "3.7.x",
        "capacity": {"provisionedCapacity": {"mcuCount": 1, "workerCount": 1}},
        "connectorConfiguration": {
            key: value for key, value in connector_config(settings).items() if not key.startswith("aws.")
        },
        "kafkaCluster": {
            "apacheKafkaCluster": {"bootstrapServers": BOOTSTRAP, "vpc": {"subnets": SUBNETS, "securityGroups": GROUPS}}
        },
        "kafkaClusterClientAuthentication": {"authenticationType": "IAM"},
        "kafkaClusterEncryptionInTransit": {"encryptionType": "TLS"},
        "plugins": [{"customPlugin": {"customPluginArn": plugin_arn(plugin_name), "revision": 1}}],
        "serviceExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/{USER_ID}-msk-connect",
        "tags": {"project": "pinterest-pipeline", "pipeline-user-id": USER_ID},
    }


def described(request: dict, state: str = "RUNNING") -> dict:
    """describe_connector's answer for a connector created from `request`."""
    answer = {key: value for key, value in request.items() if key not in ("tags", "connectorDescription")}
    return {
        **answer,
        "connectorArn": CONNECTOR_ARN,
        "connectorState": state,
        "currentVersion": "V1",
        "creationTime": NOW,
    }


def expect_connector_listed(stubs: Stubs, current: dict | None) -> None:
    summaries = [] if current is None else [{"connectorArn": CONNECTOR_ARN, "connectorName": f"{USER_ID}-s3-sink"}]
    stubs.connect.add_response(
        "list_connectors", {"connectors": summaries}, {"connectorNamePrefix": f"{USER_ID}-s3-sink"}
    )
    if current is not None:
        stubs.connect.add_response("describe_connector", current, {"connectorArn": CONNECTOR_ARN})


def test_first_run_uploads_the_plugin_creates_it_and_the_connector(aws, monkeypatch):
    stubs = Stubs(monkeypatch, aws)
    _data, digest = msk_connect.plugin_archive(aws)
    name = expect_plugin(stubs, aws, digest, exists=False)
    expect_cluster(stubs)
    expect_connector_listed(stubs, None)
    request = wanted_connector(aws, name)
    stubs.connect.add_response(
        "create_connector",
        {"connectorArn": CONNECTOR_ARN, "connectorName": f"{USER_ID}-s3-sink", "connectorState": "CREATING"},
        request,
    )
    for state in ("CREATING", "RUNNING"):
        stubs.connect.add_response("describe_connector", described(request, state), {"connectorArn": CONNECTOR_ARN})
    stubs.connect.add_response(
        "list_custom_plugins", {"customPlugins": [plugin_summary(name, digest)]}, {"namePrefix": f"{USER_ID}-s3-sink-"}
    )

    lines = msk_connect.provision_msk_connect(aws, dry_run=False)
    stubs.done()
    assert lines[0].startswith(f"uploaded plugin archive s3://{aws.bucket}/plugins/s3-sink-{digest}.zip")
    assert lines[1].startswith(f"created custom plugin {name}")
    assert lines[2] == f"created connector {USER_ID}-s3-sink ({CONNECTOR_ARN})"
    assert lines[3] == f"connector {USER_ID}-s3-sink RUNNING (1 worker(s) x 1 MCU)"
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=aws.bucket, Key=msk_connect.plugin_key(digest))
    with zipfile.ZipFile(io.BytesIO(body["Body"].read())) as archive:
        assert sorted(archive.namelist()) == ["s3-sink/s3-2.57.8.jar", "s3-sink/s3-sink-0.1.0.jar"]
        assert archive.read("s3-sink/s3-sink-0.1.0.jar") == b"sink classes v1"


def test_an_unchanged_jar_and_connector_change_nothing(aws, monkeypatch):
    digest = uploaded(aws)
    stubs = Stubs(monkeypatch, aws)
    name = expect_plugin(stubs, aws, digest, exists=True)
    expect_cluster(stubs)
    current = described(wanted_connector(aws, name))
    expect_connector_listed(stubs, current)
    stubs.connect.add_response("describe_connector", current, {"connectorArn": CONNECTOR_ARN})
    stubs.connect.add_response(
        "list_custom_plugins", {"customPlugins": [plugin_summary(name, digest)]}, {"namePrefix": f"{USER_ID}-s3-sink-"}
    )

    lines = msk_connect.provision_msk_connect(aws, dry_run=False)
    stubs.done()
    assert lines[0] == f"plugin archive s3://{aws.bucket}/plugins/s3-sink-{digest}.zip already uploaded"
    assert lines[1].startswith(f"found custom plugin {name}")
    assert f"connector {USER_ID}-s3-sink unchanged" in lines


def test_a_new_jar_is_a_new_plugin_the_connector_moves_to_and_the_old_one_goes(aws, monkeypatch):
    _data, old_digest = msk_connect.plugin_archive(aws)
    old_name = msk_connect.plugin_name(aws, old_digest)
    write_plugin(aws, b"sink classes v2")
    _data, digest = msk_connect.plugin_archive(aws)
    assert digest != old_digest
    stubs = Stubs(monkeypatch, aws)
    name = expect_plugin(stubs, aws, digest, exists=False)
    expect_cluster(stubs)
    request = wanted_connector(aws, name)
    current = described({**request, "plugins": wanted_connector(aws, old_name)["plugins"]})
    expect_connector_listed(stubs, current)
    stubs.connect.add_response(
        "update_connector",
        {"connectorArn": CONNECTOR_ARN, "connectorState": "UPDATING"},
        {"connectorArn": CONNECTOR_ARN, "currentVersion": "V1", "plugins": request["plugins"]},
    )
    # MSK Connect still describes the old version as RUNNING for a moment; the new one is V2.
    stubs.connect.add_response("describe_connector", current, {"connectorArn": CONNECTOR_ARN})
    updated = {**described(request), "currentVersion": "V2"}
    stubs.connect.add_response("describe_connector", updated, {"connectorArn": CONNECTOR_ARN})
    stubs.connect.add_response(
        "list_custom_plugins",
        {"customPlugins": [plugin_summary(old_name, old_digest), plugin_summary(name, digest)]},
        {"namePrefix": f"{USER_ID}-s3-sink-"},
    )
    stubs.connect.add_response(
        "delete_custom_plugin",
        {"customPluginArn": plugin_arn(old_name), "customPluginState": "DELETING"},
        {"customPluginArn": plugin_arn(old_name)},
    )

    lines = msk_connect.provision_msk_connect(aws, dry_run=False)
    stubs.done()
    assert f"updated connector {USER_ID}-s3-sink: plugins" in lines
    assert lines[-1] == f"deleted custom plugin {old_name} of an older jar"


def test_a_changed_network_recreates_the_connector_and_a_changed_config_updates_it(aws, monkeypatch):
    settings = aws.model_copy(update={"msk_connect_subnets": ["subnet-new"], "msk_connect_security_groups": GROUPS})
    settings = settings.model_copy(update={"s3_sink_flush_size": 777})
    digest = uploaded(settings)
    stubs = Stubs(monkeypatch, settings)
    name = expect_plugin(stubs, settings, digest, exists=True)
    request = wanted_connector(settings, name)
    request["kafkaCluster"]["apacheKafkaCluster"]["vpc"]["subnets"] = ["subnet-new"]
    current = described(wanted_connector(aws, name))  # old subnets, old flush.size
    expect_connector_listed(stubs, current)
    stubs.connect.add_response(
        "delete_connector",
        {"connectorArn": CONNECTOR_ARN, "connectorState": "DELETING"},
        {"connectorArn": CONNECTOR_ARN, "currentVersion": "V1"},
    )
    expect_connector_listed(stubs, None)
    stubs.connect.add_response("create_connector", {"connectorArn": CONNECTOR_ARN}, request)
    stubs.connect.add_response("describe_connector", described(request), {"connectorArn": CONNECTOR_ARN})
    stubs.connect.add_response(
        "list_custom_plugins", {"customPlugins": [plugin_summary(name, digest)]}, {"namePrefix": f"{USER_ID}-s3-sink-"}
    )

    lines = msk_connect.provision_msk_connect(settings, dry_run=False)
    stubs.done()
    assert request["connectorConfiguration"]["flush.size"] == "777"
    assert lines[2] == f"deleted connector {USER_ID}-s3-sink to create it again (subnets; the sink resumes from S3)"
    assert lines[3] == f"created connector {USER_ID}-s3-sink ({CONNECTOR_ARN})"

    # Only the configuration differs: updated in place.
    current = described(wanted_connector(aws, name))
    assert msk_connect._fixed_differences(current, wanted_connector(aws, name)) == []
    assert set(msk_connect._updates(current, wanted_connector(settings, name))) == {"connectorConfiguration"}


def test_a_failed_connector_is_reported_with_msk_connects_reason(aws, monkeypatch):
    digest = uploaded(aws)
    stubs = Stubs(monkeypatch, aws)
    name = expect_plugin(stubs, aws, digest, exists=True)
    expect_cluster(stubs)
    expect_connector_listed(stubs, None)
    request = wanted_connector(aws, name)
    stubs.connect.add_response("create_connector", {"connectorArn": CONNECTOR_ARN}, request)
    failed = {**described(request, "FAILED"), "stateDescription": {"code": "X", "message": "role cannot be assumed"}}
    stubs.connect.add_response("describe_connector", failed, {"connectorArn": CONNECTOR_ARN})
    with pytest.raises(SystemExit, match=r"connector .* is FAILED \(role cannot be assumed\)"):
        msk_connect.provision_msk_connect(aws, dry_run=False)


def test_the_archive_depends_on_the_jars_only(tmp_path):
    settings = msk_settings(tmp_path)
    write_plugin(settings, b"v1")
    first = msk_connect.plugin_archive(settings)
    jar = plugins_dir(settings) / "s3-sink" / "s3-sink-0.1.0.jar"
    os.utime(jar, (1_000_000, 1_000_000))
    assert msk_connect.plugin_archive(settings) == first
    write_plugin(settings, b"v2")
    assert msk_connect.plugin_archive(settings)[1] != first[1]


def test_the_connector_runs_the_local_configuration_without_static_keys(tmp_path):
    settings = msk_settings(tmp_path, aws_access_key_id="AKIA", aws_secret_access_key="secret")
    assert "aws.access.key.id" in connector_config(settings)
    config = msk_connect.sink_configuration(settings)
    assert {key: value for key, value in connector_config(settings).items() if not key.startswith("aws.")} == config
    assert config["connector.class"] == "pipeline.s3sink.S3SinkConnector" and config["store.url"] == ""


def test_dry_run_and_other_runners_call_nothing(tmp_path):
    settings = msk_settings(tmp_path)
    write_plugin(settings, b"v1")
    lines = msk_connect.provision_msk_connect(settings, dry_run=True)  # no AWS: no moto, no stubs, no credentials
    assert lines[0].startswith(f"would upload plugin archive s3://{settings.bucket}/plugins/s3-sink-")
    assert "1 worker(s) x 1 MCU" in lines[2] and "'flush.size'" in lines[2]
    worker = msk_settings(tmp_path, connect_runner="worker")
    assert msk_connect.provision_msk_connect(worker, dry_run=False)[0].startswith("skipped: CONNECT_RUNNER=worker")
    # ... and the worker's step stands aside for MSK Connect.
    assert provision_connector(settings, dry_run=False)[0].startswith("skipped: CONNECT_RUNNER=msk-connect")


def test_requirements_are_named(tmp_path):
    settings = msk_settings(tmp_path, msk_cluster_arn=None, kafka_auth="plaintext")
    problems = msk_connect.requires(settings)
    assert [problem.split(" ")[0] for problem in problems] == ["MSK_CLUSTER_ARN", "KAFKA_AUTH"]
    with pytest.raises(SystemExit, match="MSK_CLUSTER_ARN"):
        msk_connect.provision_msk_connect(settings, dry_run=True)


def test_teardown_deletes_the_tagged_connector_and_plugins_and_keeps_others(aws, monkeypatch):
    stubs = Stubs(monkeypatch, aws)
    ours, theirs = f"{USER_ID}-s3-sink-aaaa", f"{USER_ID}-s3-sink-bbbb"
    mine = {"project": "pinterest-pipeline", "pipeline-user-id": USER_ID}

    def expect_listing():
        current = described(wanted_connector(aws, ours))
        expect_connector_listed(stubs, current)
        stubs.connect.add_response(
            "list_custom_plugins",
            {"customPlugins": [plugin_summary(ours, "aaaa"), plugin_summary(theirs, "bbbb")]},
            {"namePrefix": f"{USER_ID}-s3-sink-"},
        )
        for arn, tags in ((CONNECTOR_ARN, mine), (plugin_arn(ours), mine), (plugin_arn(theirs), {"owner": "x"})):
            stubs.connect.add_response("list_tags_for_resource", {"tags": tags}, {"resourceArn": arn})
        return current

    expect_listing()
    planned = msk_connect.deprovision_msk_connect(aws, dry_run=True)
    assert planned[:2] == [
        f"would delete MSK Connect connector {USER_ID}-s3-sink",
        f"would delete MSK Connect custom plugin {ours}",
    ]
    assert planned[2].startswith(f"keep MSK Connect custom plugin {theirs}: it lacks the tags")

    expect_listing()
    stubs.connect.add_response(
        "delete_connector", {"connectorArn": CONNECTOR_ARN}, {"connectorArn": CONNECTOR_ARN, "currentVersion": "V1"}
    )
    expect_connector_listed(stubs, None)
    stubs.connect.add_response("delete_custom_plugin", {}, {"customPluginArn": plugin_arn(ours)})
    lines = msk_connect.deprovision_msk_connect(aws, dry_run=False)
    stubs.done()
    assert lines[:2] == [
        f"deleted MSK Connect connector {USER_ID}-s3-sink",
        f"deleted MSK Connect custom plugin {ours}",
    ]
