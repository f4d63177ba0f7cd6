"""Generated configuration of the Kafka broker, the Connect worker and the S3 sink connector (no services needed)."""

import pytest

from pipeline.settings import SettingsError, load_settings
from services.connect import service as connect
from services.connect.service import worker_properties
from services.kafka import service as kafka
from services.kafka.service import server_properties
from services.provision.kafka import connector_config, deprovision_connector, provision_connector, provision_topics


def test_broker_is_a_single_kraft_node_on_the_configured_ports():
    s = load_settings(kafka_bootstrap_servers="127.0.0.1:19092", kafka_controller_port=19093, kafka_partitions=5)
    props = server_properties(s)
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["num.partitions"] == "5"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.dirs"].endswith("data/kafka")


def test_broker_bounds_each_partition_by_age_and_size_from_settings():
    props = server_properties(load_settings())
    assert (props["log.retention.hours"], props["log.retention.bytes"]) == ("168", str(1024**3))
    assert props["log.segment.bytes"] == str(128 * 1024**2)
    s = load_settings(kafka_retention_hours=24, kafka_retention_bytes=500_000_000, kafka_segment_bytes=50_000_000)
    props = server_properties(s)
    assert (props["log.retention.hours"], props["log.retention.bytes"]) == ("24", "500000000")
    assert props["log.segment.bytes"] == "50000000"


def test_a_size_cap_below_one_segment_is_refused():
    with pytest.raises(SettingsError, match="KAFKA_RETENTION_BYTES"):
        load_settings(kafka_retention_bytes=10 * 1024**2, kafka_segment_bytes=64 * 1024**2)
    assert server_properties(load_settings(kafka_retention_bytes=-1))["log.retention.bytes"] == "-1"


@pytest.mark.parametrize("module", [kafka, connect], ids=["kafka", "connect"])
def test_broker_and_worker_jvms_exit_on_out_of_memory(module):
    """supervisord (or the container's runner) restarts a JVM that exits; one that ran out of heap and lives on
    half-broken would not be."""
    command = module.service(load_settings()).command
    main_class = command.index("kafka.Kafka" if module is kafka else "org.apache.kafka.connect.cli.ConnectDistributed")
    assert "-XX:+ExitOnOutOfMemoryError" in command[:main_class]


def test_worker_uses_raw_bytes_single_replica_topics_and_our_plugin_path():
    props = worker_properties(load_settings(connect_url="http://127.0.0.1:18083"))
    assert props["listeners"] == "http://127.0.0.1:18083"
    assert props["value.converter"] == "org.apache.kafka.connect.converters.ByteArrayConverter"
    assert {props[f"{t}.storage.replication.factor"] for t in ("config", "offset", "status")} == {"1"}
    assert props["plugin.path"].endswith("jars/connect-plugins")
    assert props["scheduled.rebalance.max.delay.ms"] == "0"


def test_connector_config_targets_the_users_topics_and_bucket():
    s = load_settings(
        pipeline_user_id="0a1b2c3d4e5f",
        s3_sink_flush_size=500,
        s3_sink_flush_bytes=4_000_000,
        s3_sink_rotate_interval_ms=2000,
    )
    config = connector_config(s)
    assert config["topics"] == "0a1b2c3d4e5f.pin,0a1b2c3d4e5f.geo,0a1b2c3d4e5f.user"
    assert config["s3.bucket.name"] == "user-0a1b2c3d4e5f-bucket"
    assert config["store.url"] == s.s3_endpoint_url
    assert config["s3.path.style.access.enabled"] == "true"
    assert (config["flush.size"], config["flush.bytes"], config["rotate.interval.ms"]) == ("500", "4000000", "2000")
    assert config["aws.access.key.id"] == "test"


def test_connector_on_aws_uses_the_default_credentials_chain_and_no_endpoint(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    config = connector_config(load_settings(pipeline_target="aws", aws_region="eu-west-1"))
    assert config["store.url"] == "" and config["s3.path.style.access.enabled"] == "false"
    assert "aws.access.key.id" not in config
    assert config["s3.region"] == "eu-west-1"


def test_dry_runs_contact_nothing_and_hide_secrets():
    s = load_settings(
        pipeline_user_id="0a1b2c3d4e5f", kafka_bootstrap_servers="127.0.0.1:1", connect_url="http://127.0.0.1:1"
    )
    assert len(provision_topics(s, dry_run=True)) == 3
    (line,) = provision_connector(s, dry_run=True)
    assert "0a1b2c3d4e5f-s3-sink" in line and "'aws.secret.access.key': '***'" in line


def test_a_new_cluster_id_never_starts_with_a_dash(monkeypatch):
    """The format command read a leading "-" as an option and failed: one fresh start in 64 (a CI run did)."""
    import uuid

    dash_first = uuid.UUID(bytes=b"\xf9" + bytes(15))  # url-safe base64 "-QAAAAAA..."
    plain = uuid.UUID(bytes=b"\x10" + bytes(15))
    draws = iter([dash_first, dash_first, plain])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    cluster_id = kafka.new_cluster_id()
    assert cluster_id == "EAAAAAAAAAAAAAAAAAAAAA"
    assert len(cluster_id) == 22


def test_connector_teardown_without_a_worker_says_where_it_looked():
    s = load_settings(pipeline_user_id="0a1b2c3d4e5f", connect_url="http://127.0.0.1:1")
    with pytest.raises(SystemExit, match=r"Kafka Connect not reachable at http://127.0.0.1:1 .*0a1b2c3d4e5f-s3-sink"):
        deprovision_connector(s, dry_run=True)
    msk = load_settings(pipeline_user_id="0a1b2c3d4e5f", connect_url="http://127.0.0.1:1", connect_runner="msk-connect")
    assert deprovision_connector(msk, dry_run=False) == [
        "skipped: CONNECT_RUNNER=msk-connect (the msk-connect step deletes the connector)"
    ]
