"""services/localstack/site/sitecustomize.py: the patches that send LocalStack's Kinesis requests to the stack's
Kinesis store, on stand-ins for LocalStack's provider and forwarder (the real ones run in LocalStack's own venv;
tests/integration/test_localstack.py checks the real process on the running stack)."""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from services.localstack.service import SITE_DIR

BACKEND = "http://127.0.0.1:4567"


@dataclass
class FakeHttpProxy:
    sent: list[dict] = field(default_factory=list)

    def forward(self, request, forward_path=None, headers=None):
        self.sent.append(dict(headers or {}))
        return "response"


class FakeAwsRequestProxy:
    created: ClassVar[list[str]] = []
    instances: ClassVar[list[FakeAwsRequestProxy]] = []

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url
        self.proxy = self.proxy_sent = FakeHttpProxy()
        FakeAwsRequestProxy.created.append(endpoint_url)
        FakeAwsRequestProxy.instances.append(self)

    def forward(self, context, service_request=None):
        return self.proxy.forward(context.request, forward_path="/", headers=None)


class FakeKinesisProvider:
    def get_forward_url(self, account_id: str, region_name: str) -> str:
        raise AssertionError("LocalStack would start kinesis-mock here")


@dataclass
class FakeRequest:
    headers: dict[str, str]


@dataclass
class FakeContext:
    request: FakeRequest
    account_id: str = "000000000000"
    region: str = "us-east-1"


@pytest.fixture
def fake_localstack(monkeypatch):
    for name in ["localstack", "localstack.aws", "localstack.services", "localstack.services.kinesis"]:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    forwarder = types.ModuleType("localstack.aws.forwarder")
    forwarder.AwsRequestProxy = FakeAwsRequestProxy
    forwarder.get_request_forwarder_http = lambda getter: "LocalStack's own forwarder"
    provider = types.ModuleType("localstack.services.kinesis.provider")
    provider.KinesisProvider = type("KinesisProvider", (FakeKinesisProvider,), {})
    sys.modules["localstack.aws"].forwarder = forwarder
    monkeypatch.setitem(sys.modules, forwarder.__name__, forwarder)
    monkeypatch.setitem(sys.modules, provider.__name__, provider)
    FakeAwsRequestProxy.created, FakeAwsRequestProxy.instances = [], []
    return types.SimpleNamespace(forwarder=forwarder, provider=provider.KinesisProvider)


def run_site() -> None:
    spec = importlib.util.spec_from_file_location("pipeline_localstack_site", SITE_DIR / "sitecustomize.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_kinesis_is_forwarded_to_the_store_and_kinesis_mock_never_starts(fake_localstack, monkeypatch):
    monkeypatch.setenv("KINESIS_BACKEND_URL", BACKEND)
    run_site()
    run_site()  # applied once even if loaded twice
    assert fake_localstack.provider().get_forward_url("000000000000", "us-east-1") == BACKEND
    provider = fake_localstack.provider()
    forward = fake_localstack.forwarder.get_request_forwarder_http(provider.get_forward_url)
    forward(FakeContext(FakeRequest({})))
    forward(FakeContext(FakeRequest({"X-Amz-Date": "20261202T120000Z"})))
    assert FakeAwsRequestProxy.created == [BACKEND], "one proxy (kept-alive connections) per backend"


def test_a_request_without_a_date_gets_one_and_a_dated_request_is_left_alone(fake_localstack, monkeypatch):
    monkeypatch.setenv("KINESIS_BACKEND_URL", BACKEND)
    run_site()
    forward = fake_localstack.forwarder.get_request_forwarder_http(lambda account, region: BACKEND)
    forward(FakeContext(FakeRequest({"Authorization": "AWS4-HMAC-SHA256 mocked"})))
    forward(FakeContext(FakeRequest({"X-Amz-Date": "20261202T120000Z"})))
    sent = FakeAwsRequestProxy.instances[0].proxy_sent.sent
    assert len(sent) == 2
    assert len(sent[0]["X-Amz-Date"]) == len("20261202T120000Z") and sent[0]["X-Amz-Date"].endswith("Z")
    assert "X-Amz-Date" not in sent[1]


def test_without_the_variable_nothing_changes(fake_localstack, monkeypatch):
    monkeypatch.delenv("KINESIS_BACKEND_URL", raising=False)
    run_site()
    assert fake_localstack.forwarder.get_request_forwarder_http(None) == "LocalStack's own forwarder"
    with pytest.raises(AssertionError, match="kinesis-mock"):
        fake_localstack.provider().get_forward_url("000000000000", "us-east-1")


def test_outside_localstack_it_does_nothing(monkeypatch):
    monkeypatch.setenv("KINESIS_BACKEND_URL", BACKEND)
    monkeypatch.setitem(sys.modules, "localstack", None)  # not importable, as in the project's venv
    run_site()


def site_module():
    spec = importlib.util.spec_from_file_location("pipeline_localstack_site_module", SITE_DIR / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kinesis_call(pooled):
    return pooled.request("POST", "http://localstack/kinesis", headers={"X-Amz-Target": "Kinesis_20131202.PutRecord"})


def test_a_kinesis_store_that_refuses_the_connection_is_answered_as_kinesis_service_unavailable():
    """Nothing was sent, so nothing was written: Kinesis's own 503 ServiceUnavailable, which clients may retry,
    instead of LocalStack's 502 for any exception."""
    import socket

    import requests

    site = site_module()
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pooled = site._PooledRequests(requests, site._pooled_session(requests), f"http://127.0.0.1:{port}/")
    response = kinesis_call(pooled)
    assert response.status_code == 503
    assert response.json()["__type"] == "ServiceUnavailable" and "nothing was written" in response.json()["message"]


def test_a_kinesis_store_that_drops_the_connection_after_the_request_stays_an_error():
    """The store may have written the records: no answer is made up."""
    import socket
    import threading

    import requests

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def accept_read_close():
        connection, _ = server.accept()
        connection.recv(65536)
        connection.close()

    threading.Thread(target=accept_read_close, daemon=True).start()
    site = site_module()
    backend = f"http://127.0.0.1:{server.getsockname()[1]}/"
    pooled = site._PooledRequests(requests, site._pooled_session(requests), backend)
    with pytest.raises(requests.exceptions.ConnectionError):
        kinesis_call(pooled)
    server.close()


def test_integration_calls_get_the_gateways_deadline(monkeypatch):
    import requests

    monkeypatch.setenv("GATEWAY_TIMEOUT_MS", "1500")
    site = site_module()
    seen = {}

    class Session:
        def request(self, method, url, **kwargs):
            seen.update(kwargs)
            return "answer"

    pooled = site._PooledRequests(requests, Session(), None)
    assert pooled.request("GET", "http://proxy/topics") == "answer"
    assert seen["timeout"] == (site.CONNECT_TIMEOUT_S, 1.5)
    # the integration modules read `requests.exceptions` through the stand-in when a call fails
    assert pooled.exceptions is requests.exceptions
