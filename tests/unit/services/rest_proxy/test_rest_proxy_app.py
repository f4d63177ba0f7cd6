"""The proxy application in-process, without a broker: every failure is a Confluent error body, never a 500.

Only answers that need no Kafka round trip are checked here (the broker address points at a closed port);
tests/integration/test_rest_proxy.py covers the same cases against the running proxy and broker.
"""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from pipeline.settings import load_settings
from services.rest_proxy.app import create_app
from services.rest_proxy.errors import Error, RestError
from services.rest_proxy.fast_path import FastProducePath
from services.rest_proxy.http import MAX_REQUEST_BYTES, read_body

V2_JSON = "application/vnd.kafka.v2+json"
JSON_V2 = {"Content-Type": "application/vnd.kafka.json.v2+json"}


@pytest.fixture(scope="module")
def client():
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:1", rest_proxy_max_record_bytes=2048)
    with TestClient(FastProducePath(create_app(settings))) as test_client:
        yield test_client


def assert_error(response, status: int, code: int, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == code
    if message is not None:
        assert body["message"] == message


@pytest.mark.parametrize("path", ["/topics/t", "/topics/t/partitions/0"])
def test_wrong_content_type_is_415(client, path):
    response = client.post(path, content=b'{"records": [{"value": 1}]}', headers={"Content-Type": "text/plain"})
    assert_error(response, 415, 415, "HTTP 415 Unsupported Media Type")
    assert response.headers["content-type"] == V2_JSON


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b'{"records": [', 400, 400),
        (b"{}", 422, 422),
        (b'{"records": [{"value": 1, "partition": "x"}]}', 422, 422),
        (b'{"records": [{"value": "' + b"x" * 4000 + b'"}]}', 413, 413),
    ],
)
def test_bad_bodies_on_both_produce_routes(client, content, status, code):
    for path in ("/topics/t", "/topics/t/partitions/0"):
        assert_error(client.post(path, content=content, headers=JSON_V2), status, code)


def test_not_acceptable(client):
    headers = {**JSON_V2, "Accept": "text/html"}
    assert_error(client.post("/topics/t", content=b'{"records": [{"value": 1}]}', headers=headers), 406, 406)


def test_unknown_route_wrong_method_and_bad_parameter(client):
    assert_error(client.get("/no/such/route"), 404, 404, "HTTP 404 Not Found")
    assert_error(client.put("/topics"), 405, 405, "HTTP 405 Method Not Allowed")
    assert_error(client.get("/consumers/g/instances/i/records", params={"timeout": "soon"}), 422, 422)


def test_consumer_instance_not_found(client):
    for method, path in [
        ("GET", "/consumers/g/instances/nobody/records"),
        ("POST", "/consumers/g/instances/nobody/offsets"),
        ("GET", "/consumers/g/instances/nobody/subscription"),
        ("DELETE", "/consumers/g/instances/nobody"),
    ]:
        assert_error(client.request(method, path), 404, 40403, "Consumer instance not found.")


def test_consumer_create_validation(client):
    response = client.post("/consumers/g", json={"name": "c", "format": "xml"}, headers={"Content-Type": V2_JSON})
    assert_error(response, 422, 422)
    response = client.post("/consumers/g", content=b"{}", headers={"Content-Type": "text/plain"})
    assert_error(response, 415, 415)


def test_v3_media_type_and_empty_body(client):
    path = "/v3/clusters/c/topics/t/records"
    assert_error(client.post(path, content=b"{}", headers={"Content-Type": "text/plain"}), 415, 415)
    response = client.post(path, content=b"", headers={"Content-Type": "application/json"})
    assert_error(response, 422, 422, "Payload error. Request body is empty. Data is required.")
    assert response.headers["content-type"] == "application/json"


def read(messages: list[dict], content_length: str | None = None) -> bytes:
    """http.read_body over an ASGI channel that delivers `messages`."""
    waiting = iter(messages)

    async def receive() -> dict:
        return next(waiting)

    return asyncio.run(read_body(receive, content_length))


def test_the_one_body_reader_joins_chunks_and_refuses_oversized_or_cut_bodies():
    chunks = [{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.request", "body": b"c"}]
    assert read(chunks) == b"abc"
    assert read([{"type": "http.request", "body": b""}], "0") == b""
    too_large = str(MAX_REQUEST_BYTES + 1)
    with pytest.raises(RestError) as caught:
        read([{"type": "http.request", "body": b"x"}], too_large)  # refused on the header, before any reading
    assert caught.value.error is Error.REQUEST_TOO_LARGE
    big = b"x" * (MAX_REQUEST_BYTES // 2 + 1)
    with pytest.raises(RestError) as caught:  # no Content-Length (chunked): refused on what arrives
        read([{"type": "http.request", "body": big, "more_body": True}, {"type": "http.request", "body": big}])
    assert caught.value.error is Error.REQUEST_TOO_LARGE
    with pytest.raises(RestError) as caught:
        read([{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}])
    assert caught.value.error is Error.MALFORMED_JSON


def test_server_keeps_serving_after_bad_input(client):
    for _ in range(20):
        client.post("/topics/t", content=b"\xff\xfe garbage", headers=JSON_V2)
    assert client.get("/openapi.json").status_code == 200


def test_openapi_documents_every_route_and_confluent_bodies(client):
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    for path in [
        "/topics/{topic}",
        "/topics",
        "/consumers/{group}",
        "/consumers/{group}/instances/{instance}/records",
        "/v3/clusters",
        "/v3/clusters/{cluster_id}/topics/{topic}/records",
    ]:
        assert path in paths
    produce = paths["/topics/{topic}"]["post"]
    assert "application/vnd.kafka.json.v2+json" in produce["requestBody"]["content"]
    schemas = document["components"]["schemas"]
    assert schemas["V2ProduceRequest"]["required"] == ["records"]
    assert "HTTPValidationError" not in schemas
    assert produce["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorMessage")


@pytest.mark.parametrize("group", ["%0C", "%20", "%09%20", "a%0Ab"])
def test_blank_or_control_group_ids_are_refused_not_fatal(client, group):
    # confluent-kafka aborts the whole process on a blank group.id (found by the fuzz run): refuse it first
    response = client.post(f"/consumers/{group}", json={"format": "json"}, headers={"Content-Type": V2_JSON})
    assert_error(response, 422, 42204)
    assert client.get("/openapi.json").status_code == 200


def test_the_server_freezes_its_startup_heap_and_collects_young_objects_less_often():
    import gc

    from services.rest_proxy.__main__ import GC_YOUNG_THRESHOLD, freeze_startup_heap

    threshold = gc.get_threshold()
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 10_000  # the imported modules, the app and its models
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
