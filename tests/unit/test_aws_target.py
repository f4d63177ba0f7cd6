"""With PIPELINE_TARGET=aws, every client the code builds talks to AWS, never to this machine.

The `.env` values are the ones docs/aws.md tells a user to set. Clients are built for real (boto3 clients, Kafka
configurations, the Spark S3A configuration, the connector configuration) and their endpoints inspected; nothing is
sent anywhere.
"""

from __future__ import annotations

import ast
import re

import boto3
import pytest

from pipeline.kafka_clients import confluent_config, kafka_python_config
from pipeline.settings import REPO_ROOT, load_settings

AWS_ENV = {
    "pipeline_target": "aws",
    "pipeline_user_id": "7e57c0de0001",
    "aws_region": "eu-west-1",
    "kafka_bootstrap_servers": "b-1.pinterest.abc123.c2.kafka.eu-west-1.amazonaws.com:9098,"
    "b-2.pinterest.abc123.c2.kafka.eu-west-1.amazonaws.com:9098",
    "kafka_auth": "iam",
    "rest_proxy_url": "http://ip-10-0-1-23.eu-west-1.compute.internal:8082",
    "connect_url": "http://ip-10-0-1-23.eu-west-1.compute.internal:8083",
    "mysql_host": "pinterest.c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com",
    "databricks_cluster_id": "0101-000000-abcdefgh",
    "batch_runner": "databricks",
}
LOCAL = re.compile(r"(localhost|127\.\d+\.\d+\.\d+|0\.0\.0\.0|\[::1\]|localstack|:4566|:4567|:9000)")
AWS_SERVICES = ("s3", "kinesis", "apigateway", "iam", "sts")
CODE_FOLDERS = ("pipeline", "services", "emulator", "spark_jobs", "orchestration", "airflow")


@pytest.fixture
def aws(monkeypatch):
    # No credentials on this machine: the clients must still be built (they resolve credentials lazily).
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_KINESIS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(_env_file=None, **AWS_ENV)
    import pipeline.settings

    monkeypatch.setattr(pipeline.settings, "get_settings", lambda: settings)
    return settings


def assert_not_local(value: object, what: str) -> None:
    assert not LOCAL.search(str(value)), f"{what} points at this machine: {value}"


def test_local_endpoint_defaults_are_dropped(aws):
    assert aws.aws_endpoint_url is None
    assert aws.s3_endpoint_url is None
    assert aws.kinesis_endpoint_url is None


@pytest.mark.parametrize("service", AWS_SERVICES)
def test_boto3_clients_resolve_real_aws_endpoints(aws, service):
    kwargs = aws.boto3_client_kwargs(service)
    assert "endpoint_url" not in kwargs
    assert "aws_access_key_id" not in kwargs  # the default chain (role, profile), never LocalStack's test/test
    client = boto3.client(service, **kwargs)
    assert client.meta.endpoint_url.endswith(".amazonaws.com"), client.meta.endpoint_url


def test_clients_built_by_the_code_have_no_local_endpoint(aws):
    from services.provision import aws as provision_aws
    from services.s3.service import s3_client

    clients = {
        "provision kinesis": provision_aws._client(aws, "kinesis"),
        "provision apigateway": provision_aws._client(aws, "apigateway"),
        "provision iam": provision_aws._client(aws, "iam"),
        "store/audit s3": s3_client(aws),
    }
    from orchestration import tasks

    clients["dag s3"] = tasks._s3_client(aws)
    for what, client in clients.items():
        assert client.meta.region_name in ("eu-west-1", "aws-global"), what  # IAM is a global service
        assert client.meta.endpoint_url.endswith(".amazonaws.com"), what
        assert_not_local(client.meta.endpoint_url, what)


def test_kinesis_source_for_spark_uses_aws(aws):
    from spark_jobs.kinesis_fetch import KinesisOptions

    options = KinesisOptions.parse({"streamName": aws.stream("pin"), "initialPosition": "earliest"})
    assert options.endpoint_url is None
    assert options.region == "eu-west-1"
    assert_not_local(options.client().meta.endpoint_url, "kinesis source")


def test_kafka_clients_use_msk_with_iam(aws):
    for config in (confluent_config(aws, "rest-proxy"), kafka_python_config(aws, "provision")):
        assert_not_local(config.get("bootstrap.servers") or config.get("bootstrap_servers"), "Kafka bootstrap")
    assert confluent_config(aws, "x")["security.protocol"] == "SASL_SSL"
    assert kafka_python_config(aws, "x")["sasl_mechanism"] == "OAUTHBEARER"


def test_spark_s3a_configuration_uses_aws(aws):
    from spark_jobs.session import base_conf, s3a_conf

    conf = s3a_conf(aws)
    assert "spark.hadoop.fs.s3a.endpoint" not in conf
    assert "spark.hadoop.fs.s3a.access.key" not in conf  # S3A's default chain (instance profile on EMR/Databricks)
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"
    for key, value in base_conf(aws, master="yarn", with_jars=False).items():
        assert_not_local(value, key)


def test_connector_and_api_point_at_aws(aws):
    from services.provision.aws import invoke_url
    from services.provision.kafka import connector_config

    connector = connector_config(aws)
    assert connector["store.url"] == ""
    assert connector["s3.path.style.access.enabled"] == "false"
    assert "aws.access.key.id" not in connector
    assert invoke_url(aws, "a1b2c3") == "https://a1b2c3.execute-api.eu-west-1.amazonaws.com/prod"
    for value in (aws.rest_proxy_url, aws.connect_url, aws.mysql_url):
        assert_not_local(value, "endpoint")


def test_the_batch_job_runs_on_databricks(aws):
    from orchestration.runners import databricks_operator_kwargs

    (task,) = databricks_operator_kwargs(aws)["tasks"]
    assert task["existing_cluster_id"] == AWS_ENV["databricks_cluster_id"]
    assert task["spark_python_task"]["parameters"][-4:-2] == ["--input", "s3a://user-7e57c0de0001-bucket"]


def test_every_boto3_client_in_the_code_takes_its_arguments_from_settings():
    """A boto3 client built anywhere else than from `boto3_client_kwargs` would keep a hard-coded endpoint."""
    offenders = []
    for folder in CODE_FOLDERS:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and ast.unparse(node.func) in ("boto3.client", "boto3.resource")):
                    continue
                source = ast.unparse(node)
                from_settings = "boto3_client_kwargs" in source or "**kwargs" in source
                if not from_settings or "endpoint_url=" in source:
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {source}")
    assert not offenders, "\n".join(offenders)
