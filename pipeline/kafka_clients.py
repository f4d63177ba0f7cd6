"""Kafka client configuration for both client libraries, from settings: the one place that knows how to reach Kafka.

Why one module: the REST proxy (confluent-kafka), provisioning, the audit and tests (kafka-python) must all switch
together from the local broker to MSK. `KAFKA_AUTH=plaintext` (default) gives PLAINTEXT to
`KAFKA_BOOTSTRAP_SERVERS`; `KAFKA_AUTH=iam` gives SASL_SSL + OAUTHBEARER with a token from
`aws-msk-iam-sasl-signer-python`, as on the original deployment's EC2 client (an IAM role talking to MSK on port
9098). The token is signed for `AWS_REGION` with the default AWS credential chain (role, profile, environment), so
no secret appears in any configuration.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.settings import Settings, SettingsError

LOCAL_HOSTS = re.compile(r"^(localhost|127\.[0-9.]+|\[?::1\]?|0\.0\.0\.0)$")

IAM_SECURITY_PROTOCOL = "SASL_SSL"
IAM_SASL_MECHANISM = "OAUTHBEARER"


def msk_iam_token(region: str) -> tuple[str, int]:
    """A fresh MSK IAM auth token and its expiry (epoch milliseconds), signed with the default credential chain."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    return MSKAuthTokenProvider.generate_auth_token(region)


def bootstrap_servers(settings: Settings) -> list[str]:
    """`KAFKA_BOOTSTRAP_SERVERS` as a list; on the AWS target a broker on this machine is a configuration error."""
    servers = [server.strip() for server in settings.kafka_bootstrap_servers.split(",") if server.strip()]
    if settings.pipeline_target == "aws":
        local = [server for server in servers if LOCAL_HOSTS.match(server.rpartition(":")[0])]
        if local:
            raise SettingsError(
                f"KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers} points at this machine, but "
                "PIPELINE_TARGET=aws: set the MSK bootstrap brokers (IAM: port 9098) and KAFKA_AUTH=iam (docs/aws.md)"
            )
    return servers


def confluent_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """librdkafka (confluent-kafka) settings for a Producer, Consumer or AdminClient."""
    config: dict[str, Any] = {"bootstrap.servers": ",".join(bootstrap_servers(settings)), "client.id": client_id}
    if settings.kafka_auth == "iam":
        region = settings.aws_region

        def oauth_cb(_oauthbearer_config: str) -> tuple[str, float]:
            token, expiry_ms = msk_iam_token(region)
            return token, expiry_ms / 1000  # librdkafka wants the expiry in seconds

        config.update({"security.protocol": IAM_SECURITY_PROTOCOL, "sasl.mechanisms": IAM_SASL_MECHANISM})
        config["oauth_cb"] = oauth_cb
    return config


def _kafka_python_token_provider(region: str) -> Any:
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class MskIamTokenProvider(AbstractTokenProvider):
        """kafka-python asks for a token on every SASL handshake; each one is freshly signed (valid 15 minutes)."""

        def token(self) -> str:
            return msk_iam_token(region)[0]

    return MskIamTokenProvider()


def kafka_python_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaAdminClient / KafkaConsumer / KafkaProducer."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings),
        "client_id": client_id,
        "request_timeout_ms": 15000,
    }
    if settings.kafka_auth == "iam":
        config.update(
            security_protocol=IAM_SECURITY_PROTOCOL,
            sasl_mechanism=IAM_SASL_MECHANISM,
            sasl_oauth_token_provider=_kafka_python_token_provider(settings.aws_region),
        )
    return config
