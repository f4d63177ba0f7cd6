"""Connect's health as `make status` reports it: a FAILED connector task (a sink that gave up while S3 was down)
makes the worker unhealthy, with the trace's first line and its root cause. A small HTTP server plays Connect's REST
API with the bodies a real worker sends (Kafka 4.1); tests/integration/test_kafka_sink.py checks a real worker."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from pipeline.settings import load_settings
from services import commands
from services.connect import service as connect

TRACE = (
    "org.apache.kafka.connect.errors.ConnectException: Exiting WorkerSinkTask due to unrecoverable exception.\n"
    "\tat org.apache.kafka.connect.runtime.WorkerSinkTask.deliverMessages(WorkerSinkTask.java:636)\n"
    "Caused by: org.apache.kafka.connect.errors.DataException: cannot list 7e57c0de5153.pin-0 objects in S3 bucket "
    "user-7e57c0de5153-bucket\n"
    "\tat pipeline.s3sink.S3SinkTask.recoverWithRetries(S3SinkTask.java:96)\n"
    "Caused by: software.amazon.awssdk.core.exception.SdkClientException: Unable to execute HTTP request: "
    "Connection refused\n"
)


def status_of(connector_state: str, *task_states: str, trace: str = TRACE) -> dict:
    tasks = [
        {"id": i, "state": state, "worker_id": "127.0.0.1:8083", **({"trace": trace} if state == "FAILED" else {})}
        for i, state in enumerate(task_states)
    ]
    return {
        "status": {
            "name": "sink",
            "connector": {"state": connector_state, "worker_id": "127.0.0.1:8083"},
            "tasks": tasks,
            "type": "sink",
        }
    }


def test_trace_summary_is_the_first_line_and_the_root_cause():
    assert connect.trace_summary(TRACE) == (
        "org.apache.kafka.connect.errors.ConnectException: Exiting WorkerSinkTask due to unrecoverable exception. "
        "(caused by software.amazon.awssdk.core.exception.SdkClientException: Unable to execute HTTP request: "
        "Connection refused)"
    )
    assert connect.trace_summary("java.lang.IllegalStateException: boom\n\tat x.y(Z.java:1)\n") == (
        "java.lang.IllegalStateException: boom"
    )
    assert connect.trace_summary(None) == "no trace"


def test_only_failed_connectors_and_tasks_are_failures():
    statuses = {
        "a-sink": status_of("RUNNING", "RUNNING", "FAILED"),
        "b-sink": status_of("FAILED"),
        "c-sink": status_of("PAUSED", "PAUSED", "UNASSIGNED"),
    }
    found = connect.failures(statuses)
    assert len(found) == 2
    assert found[0].startswith("connector a-sink task 1 FAILED on 127.0.0.1:8083: org.apache.kafka.connect.errors")
    assert found[1].startswith("connector b-sink FAILED on 127.0.0.1:8083: ")


class FakeConnect(BaseHTTPRequestHandler):
    statuses: ClassVar[dict] = {}
    url: ClassVar[str] = ""

    def do_GET(self) -> None:
        if self.path == "/connectors?expand=status":
            body = self.statuses
        elif self.path == "/connectors":
            body = list(self.statuses)
        elif self.path == "/connector-plugins":
            body = [{"class": connect.SINK_CLASS, "type": "sink", "version": "0.1.0"}]
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def fake_connect() -> Iterator[type[FakeConnect]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeConnect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeConnect.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield FakeConnect
    server.shutdown()
    server.server_close()


def test_status_shows_a_failed_task_with_its_trace_and_fails(fake_connect, monkeypatch, capsys):
    settings = load_settings(connect_url=fake_connect.url)
    service = connect.service(settings)
    monkeypatch.setattr(commands, "process_states", lambda _s: {"connect": {"statename": "RUNNING", "pid": 42}})

    fake_connect.statuses = {"7e57c0de5153-s3-sink": status_of("RUNNING", "FAILED")}
    connect.ready(settings)  # the worker itself is up: `up` does not wait on the task
    assert commands.status(settings, [service]) == 1
    out = capsys.readouterr().out
    assert "NOT READY (connector 7e57c0de5153-s3-sink task 0 FAILED on 127.0.0.1:8083: " in out
    assert "Exiting WorkerSinkTask due to unrecoverable exception." in out
    assert "Connection refused" in out and "onlyFailed=true" in out

    fake_connect.statuses = {"7e57c0de5153-s3-sink": status_of("RUNNING", "RUNNING")}
    assert commands.status(settings, [service]) == 0
    assert "ready" in capsys.readouterr().out
