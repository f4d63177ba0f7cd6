"""kafka-python client settings for provisioning, the audit, benchmarks and tests.

Kept as an import path for existing callers; the configuration itself (PLAINTEXT locally, MSK IAM with SASL
OAUTHBEARER when `KAFKA_AUTH=iam`) is built in one place for both client libraries: pipeline/kafka_clients.py.
"""

from __future__ import annotations

from pipeline.kafka_clients import kafka_python_config

__all__ = ["kafka_python_config"]
