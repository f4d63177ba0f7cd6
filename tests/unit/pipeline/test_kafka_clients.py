"""The Kafka client configuration each KAFKA_AUTH mode produces, for both client libraries and their callers."""

from __future__ import annotations

import pytest
from kafka.net.sasl.oauth import AbstractTokenProvider

from pipeline import kafka_clients
from pipeline.kafka_clients import confluent_config, kafka_python_config
from pipeline.settings import load_settings
from services.rest_proxy.kafka_clients import client_config, producer_config

MSK = "b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.demo.abc123.c2.kafka.eu-west-1.amazonaws.com:9098"


@pytest.fixture
def iam_settings():
    return load_settings(pipeline_target="aws", kafka_bootstrap_servers=MSK, kafka_auth="iam", aws_region="eu-west-1")


@pytest.fixture
def signed_tokens(monkeypatch):
    """Record every signing request instead of calling AWS; the token names the region it was signed for."""
    calls: list[str] = []

    def fake_token(region: str) -> tuple[str, int]:
        calls.append(region)
        return f"token-for-{region}", 1_700_000_900_000

    monkeypatch.setattr(kafka_clients, "msk_iam_token", fake_token)
    return calls


def test_plaintext_confluent_config_is_bootstrap_and_client_id_only():
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:9092")
    assert confluent_config(settings, "rest-proxy") == {
        "bootstrap.servers": "127.0.0.1:9092",
        "client.id": "rest-proxy",
    }


def test_plaintext_kafka_python_config_has_no_security_settings():
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:9092, 127.0.0.1:19092")
    assert kafka_python_config(settings, "audit") == {
        "bootstrap_servers": ["127.0.0.1:9092", "127.0.0.1:19092"],
        "client_id": "audit",
        "request_timeout_ms": 15000,
    }


def test_iam_confluent_config_uses_sasl_ssl_oauthbearer_with_a_signed_token(iam_settings, signed_tokens):
    config = confluent_config(iam_settings, "rest-proxy")
    assert config["bootstrap.servers"] == MSK
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanisms"] == "OAUTHBEARER"
    assert signed_tokens == []  # nothing is signed until librdkafka asks
    token, expiry_seconds = config["oauth_cb"]("")
    assert (token, expiry_seconds) == ("token-for-eu-west-1", 1_700_000_900.0)
    assert signed_tokens == ["eu-west-1"]


def test_iam_kafka_python_config_uses_a_token_provider(iam_settings, signed_tokens):
    config = kafka_python_config(iam_settings, "provision")
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "OAUTHBEARER"
    provider = config["sasl_oauth_token_provider"]
    assert isinstance(provider, AbstractTokenProvider)
    assert provider.token() == "token-for-eu-west-1"
    assert provider.token() == "token-for-eu-west-1"
    assert signed_tokens == ["eu-west-1", "eu-west-1"]  # a fresh token per handshake, never cached


def test_real_signer_builds_a_token_from_credentials(monkeypatch):
    """The real aws-msk-iam-sasl-signer call, with fixed credentials: a base64url SigV4 presigned URL."""
    import base64

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example-secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    token, expiry_ms = kafka_clients.msk_iam_token("eu-west-1")
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    assert url.startswith("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect")
    assert "X-Amz-Signature=" in url
    assert expiry_ms > 0


def test_callers_use_the_shared_configuration(iam_settings, signed_tokens):
    """The REST proxy's producer/admin, provisioning and the audit all get IAM auth from the same settings."""
    assert client_config(iam_settings)["security.protocol"] == "SASL_SSL"
    producer = producer_config(iam_settings)
    assert producer["sasl.mechanisms"] == "OAUTHBEARER"
    assert producer["acks"] == "all"
    assert producer["enable.idempotence"] is True

    import services.audit.sink_audit as audit
    import services.provision.kafka as provision_kafka

    assert provision_kafka.kafka_python_config is kafka_python_config
    assert audit.kafka_python_config is kafka_python_config


def test_local_target_never_gets_sasl_by_default():
    settings = load_settings()
    assert settings.kafka_auth == "plaintext"
    assert "security.protocol" not in confluent_config(settings, "x")
    assert "security_protocol" not in kafka_python_config(settings, "x")


def test_aws_target_refuses_a_broker_on_this_machine():
    """PIPELINE_TARGET=aws with the local default bootstrap would silently produce to a laptop broker."""
    from pipeline.settings import SettingsError

    settings = load_settings(pipeline_target="aws")  # KAFKA_BOOTSTRAP_SERVERS left at 127.0.0.1:9092
    with pytest.raises(SettingsError, match=r"KAFKA_BOOTSTRAP_SERVERS=127\.0\.0\.1:9092 points at this machine"):
        confluent_config(settings, "rest-proxy")
    with pytest.raises(SettingsError, match="PIPELINE_TARGET=aws"):
        kafka_python_config(settings, "provision")
