"""A boto3 client factory whose IAM client is refused some calls, as on accounts that deny IAM writes."""

from __future__ import annotations

from types import ModuleType

import pytest
from botocore.exceptions import ClientError


def deny_iam_calls(monkeypatch: pytest.MonkeyPatch, module: ModuleType, *operations: str) -> None:
    """Replace `module._client` so the IAM clients it makes answer AccessDenied to each of `operations`."""
    real_client = module._client

    def client_without(settings, service):
        client = real_client(settings, service)
        if service == "iam":
            for operation in operations:

                def denied(_operation=operation, **_):
                    raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, _operation)

                setattr(client, operation, denied)
        return client

    monkeypatch.setattr(module, "_client", client_without)
