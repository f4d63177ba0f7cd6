"""services/localstack/site/sitecustomize.py: the patch that gives kinesis-mock a fixed port, on a stand-in for
LocalStack's server manager (the real one runs in LocalStack's own venv; tests/integration/test_localstack.py checks
the real process on the running stack)."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from services.localstack.service import SITE_DIR


class FakeServer:
    def __init__(self, port: int) -> None:
        self._port = port


class FakeManager:
    def _create_kinesis_mock_server(self, account_id: str) -> FakeServer:
        return FakeServer(port=51234)  # LocalStack's get_free_tcp_port()


@pytest.fixture
def fake_localstack(monkeypatch):
    names = ["localstack", "localstack.services", "localstack.services.kinesis"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    module = types.ModuleType("localstack.services.kinesis.kinesis_mock_server")
    module.KinesisServerManager = type("KinesisServerManager", (FakeManager,), {})
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.KinesisServerManager


def run_site() -> None:
    spec = importlib.util.spec_from_file_location("pipeline_localstack_site", SITE_DIR / "sitecustomize.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_the_default_accounts_kinesis_mock_gets_the_fixed_port(fake_localstack, monkeypatch):
    monkeypatch.setenv("KINESIS_MOCK_PORT", "4567")
    run_site()
    run_site()  # applied once even if loaded twice
    manager = fake_localstack()
    assert manager._create_kinesis_mock_server("000000000000")._port == 4567
    assert manager._create_kinesis_mock_server("111111111111")._port == 51234


def test_without_the_variable_nothing_changes(fake_localstack, monkeypatch):
    monkeypatch.delenv("KINESIS_MOCK_PORT", raising=False)
    run_site()
    assert fake_localstack()._create_kinesis_mock_server("000000000000")._port == 51234


def test_outside_localstack_it_does_nothing(monkeypatch):
    monkeypatch.setenv("KINESIS_MOCK_PORT", "4567")
    monkeypatch.setitem(sys.modules, "localstack", None)  # not importable, as in the project's venv
    run_site()
