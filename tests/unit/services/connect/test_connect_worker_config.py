"""The Connect worker's configuration: unchanged on the local broker; with KAFKA_AUTH=iam (a worker on the EC2 client,
against MSK) every client it makes authenticates with AWS_MSK_IAM, its internal topics and group carry the user id,
and their replication factor comes from settings. The rendered file is also checked by Kafka Connect 4.1.1 itself
(DistributedConfig) and an admin client logs in with Amazon's IAMLoginModule from the worker's classpath."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from pipeline.settings import load_settings
from services.connect import service as connect
from services.kafka import service as kafka

USER_ID = "7e57c0de0042"
MSK = "b-1.pipeline.abc.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.pipeline.abc.c2.kafka.eu-west-1.amazonaws.com:9098"


def msk_settings(tmp_path, **overrides):
    values = {
        "pipeline_target": "aws",
        "pipeline_user_id": USER_ID,
        "kafka_bootstrap_servers": MSK,
        "kafka_auth": "iam",
        "kafka_replication_factor": 3,
        "connect_url": "http://10.0.0.5:8083",
        "state_dir": tmp_path,
        **overrides,
    }
    return load_settings(**values)


def test_local_worker_is_unchanged(tmp_path):
    props = connect.worker_properties(load_settings(state_dir=tmp_path))
    assert props["group.id"] == "pipeline-connect"
    assert [props[f"{kind}.storage.topic"] for kind in ("config", "offset", "status")] == [
        "_connect-configs",
        "_connect-offsets",
        "_connect-status",
    ]
    assert {props[f"{kind}.storage.replication.factor"] for kind in ("config", "offset", "status")} == {"1"}
    assert not [key for key in props if "sasl" in key or "security.protocol" in key]
    command = connect.service(load_settings(state_dir=tmp_path)).command
    assert command[command.index("-cp") + 1] == f"{kafka.jars_dir(load_settings(state_dir=tmp_path))}/*"


def test_iam_worker_authenticates_every_client_it_makes(tmp_path):
    props = connect.worker_properties(msk_settings(tmp_path))
    for prefix in ("", "consumer.", "producer.", "admin."):
        assert props[f"{prefix}security.protocol"] == "SASL_SSL"
        assert props[f"{prefix}sasl.mechanism"] == "AWS_MSK_IAM"
        assert props[f"{prefix}sasl.jaas.config"] == "software.amazon.msk.auth.iam.IAMLoginModule required;"
        assert (
            props[f"{prefix}sasl.client.callback.handler.class"]
            == "software.amazon.msk.auth.iam.IAMClientCallbackHandler"
        )
    assert props["bootstrap.servers"] == MSK


def test_on_msk_the_internal_topics_and_group_are_the_users_with_the_configured_replication(tmp_path):
    props = connect.worker_properties(msk_settings(tmp_path, kafka_replication_factor=-1))
    assert props["group.id"] == f"{USER_ID}-connect"
    assert props["status.storage.topic"] == f"_connect-{USER_ID}-status"
    assert {props[f"{kind}.storage.replication.factor"] for kind in ("config", "offset", "status")} == {"-1"}
    three = connect.worker_properties(msk_settings(tmp_path))
    assert three["offset.storage.replication.factor"] == "3"


def test_iam_worker_has_the_msk_iam_client_on_its_classpath(tmp_path):
    settings = msk_settings(tmp_path, install_dir=tmp_path / "install")
    command = connect.service(settings).command
    classpath = command[command.index("-cp") + 1].split(":")
    assert classpath == [f"{kafka.jars_dir(settings)}/*", f"{connect.iam_jars_dir(settings)}/*"]


def test_prepare_names_the_missing_iam_client(tmp_path, monkeypatch):
    settings = msk_settings(tmp_path, install_dir=tmp_path / "install")
    monkeypatch.setattr(kafka, "check_installed", lambda _settings: None)
    plugin = connect.plugins_dir(settings) / "s3-sink"
    plugin.mkdir(parents=True)
    (plugin / "s3-sink-0.1.0.jar").write_bytes(b"")
    with pytest.raises(SystemExit, match="KAFKA_AUTH=iam, but the MSK IAM client is missing"):
        connect.prepare(settings)
    iam_jars = connect.iam_jars_dir(settings)
    iam_jars.mkdir(parents=True)
    (iam_jars / "aws-msk-iam-auth-2.3.5.jar").write_bytes(b"")
    connect.prepare(settings)
    assert "sasl.mechanism=AWS_MSK_IAM" in connect.config_path(settings).read_text()


CHECK = """
import java.io.FileReader;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.connect.runtime.distributed.DistributedConfig;

public class Check {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        try (FileReader reader = new FileReader(args[0])) { props.load(reader); }
        Map<String, String> worker = new HashMap<>();
        props.forEach((key, value) -> worker.put((String) key, (String) value));
        new DistributedConfig(worker);  // Connect's own validation of every worker key
        Map<String, Object> admin = new HashMap<>();
        worker.forEach((key, value) -> { if (key.startsWith("admin.")) admin.put(key.substring(6), value); });
        admin.put("bootstrap.servers", args[1]);
        try (Admin client = Admin.create(admin)) {  // JAAS login with IAMLoginModule happens here
            System.out.println("login module " + admin.get("sasl.jaas.config"));
        }
    }
}
"""


def test_the_rendered_iam_config_is_valid_for_connect_and_logs_in_with_amazons_client(tmp_path):
    """Needs the jars `make setup` installs (services/kafka/fetch.sh); nothing connects anywhere."""
    installed = load_settings()
    kafka_jars, iam_jars = kafka.jars_dir(installed), connect.iam_jars_dir(installed)
    if not shutil.which("java") or not any(iam_jars.glob("aws-msk-iam-auth-*.jar")):
        pytest.skip(f"no java or no MSK IAM client in {iam_jars}: run `make setup`")
    settings = msk_settings(tmp_path, connect_url="http://127.0.0.1:8083")
    properties = tmp_path / "worker.properties"
    kafka.write_properties(properties, connect.worker_properties(settings))
    (tmp_path / "Check.java").write_text(CHECK)
    with socket.socket() as probe:  # a closed loopback port: the client never reaches a broker
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    result = subprocess.run(
        ["java", "-cp", f"{kafka_jars}/*:{iam_jars}/*", str(tmp_path / "Check.java"), str(properties), closed],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "IAMLoginModule" in result.stdout
