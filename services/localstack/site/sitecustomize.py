"""Give LocalStack's Kinesis backend (kinesis-mock) a fixed port, so that clients can call it directly.

Loaded by Python at startup (`sitecustomize`) in LocalStack's process: native mode puts this folder on LocalStack's
`PYTHONPATH` (services/localstack/service.py), docker-compose mounts it into the LocalStack container and does the
same. It does nothing unless `KINESIS_MOCK_PORT` is set and LocalStack is importable, so other Python processes that
inherit the environment (the launcher) are not affected.

Why: LocalStack 4.9.2 serves Kinesis by proxying every request to one kinesis-mock process per account, which it
starts on a random free port, and it opens a new connection to kinesis-mock for every request
(`localstack.aws.forwarder.get_request_forwarder_http`), so a Kinesis call through LocalStack costs about three
times the CPU of the same call straight to kinesis-mock on a kept-alive connection (measurements in
docs/design/s3-and-localstack.md). With the port fixed, `AWS_ENDPOINT_URL_KINESIS` points Kinesis clients
(provisioning, the Spark source, benchmarks) at kinesis-mock, while LocalStack keeps serving API Gateway, whose
Kinesis integration reaches the very same kinesis-mock through LocalStack: one set of streams, two doors. On AWS,
Kinesis has its own endpoint too.

Why a patch and not a setting: LocalStack has no option for the port (it calls `get_free_tcp_port()`); kinesis-mock
has one (`KINESIS_MOCK_PLAIN_PORT`), which LocalStack sets from the server object's port, so the patch changes that
port after LocalStack creates the server object and before it starts the process.
"""

from __future__ import annotations

import os


def _fix_kinesis_mock_port() -> None:
    port = os.environ.get("KINESIS_MOCK_PORT", "").strip()
    if not port:
        return
    try:
        from localstack.services.kinesis.kinesis_mock_server import KinesisServerManager
    except ImportError:
        return  # not LocalStack's interpreter
    account = os.environ.get("KINESIS_MOCK_PORT_ACCOUNT", "000000000000")
    create = KinesisServerManager._create_kinesis_mock_server
    if getattr(create, "fixed_port", None):
        return

    def create_with_fixed_port(self, account_id: str):
        server = create(self, account_id)
        if account_id == account:  # one port, one account: other accounts keep LocalStack's random ports
            server._port = int(port)
        return server

    create_with_fixed_port.fixed_port = int(port)
    KinesisServerManager._create_kinesis_mock_server = create_with_fixed_port


_fix_kinesis_mock_port()
