"""The proxy's limits and guards, in-process without a broker (issue 19, items 6, 7, 11): records per request,
the in-flight byte budget, memory per record on both produce paths, the consumers' own executor, and the Host,
Origin and media-type checks."""

from __future__ import annotations

import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import orjson
import pytest
import rest_proxy_produce
from fastapi.testclient import TestClient

from pipeline.settings import load_settings
from services.rest_proxy import consumers
from services.rest_proxy.app import serve
from services.rest_proxy.parsing import parse_v2_produce

JSON_V2 = {"Content-Type": "application/vnd.kafka.json.v2+json"}
V2_JSON = {"Content-Type": "application/vnd.kafka.v2+json"}
BASE_URL = "http://127.0.0.1:8082"


def make_client(**overrides) -> TestClient:
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:1", **overrides)
    return TestClient(serve(settings), base_url=BASE_URL)


@pytest.fixture(scope="module")
def client():
    with make_client(rest_proxy_max_records_per_request=5, rest_proxy_consumer_threads=2) as test_client:
        yield test_client


def assert_error(response, status: int, code: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == code
    return body


def records_body(count: int, keyed: bool = False) -> bytes:
    return orjson.dumps({"records": [{"key": n, "value": 1} if keyed else {"value": 1} for n in range(count)]})


# --- records per request (422, 42208) -----------------------------------------------------------------------
@pytest.mark.parametrize("keyed", [False, True], ids=["plain-values path", "general path"])
@pytest.mark.parametrize("path", ["/topics/t", "/topics/t/partitions/0"])
def test_more_records_than_allowed_is_confluents_42208_before_the_broker_is_asked(client, keyed, path):
    body = assert_error(client.post(path, content=records_body(6, keyed), headers=JSON_V2), 422, 42208)
    assert body["message"].startswith("Too many entries in batch.")


def test_the_count_stops_past_the_limit_and_still_counts_records_that_are_not_plain():
    scan = rest_proxy_produce.scan_produce
    assert scan(records_body(3), 1000, 3)[1] == 3
    assert scan(records_body(4), 1000, 3) == (None, 4)  # 4 = limit + 1: it stopped there
    assert scan(records_body(4, keyed=True), 1000, 3) == (None, 4)
    assert scan(b'{"records": [1, [2], "x", null, {}], "value_schema": "s"}', 1000, 10) == (None, 5)
    assert scan(b'{"records": [{"value": 1}]', 1000, 10) == (None, None)  # not JSON: not counted
    values, count = scan(records_body(3), 1000, 3)
    assert count == 3 and len(values) == 3


# --- memory per record -------------------------------------------------------------------------------------
def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_plain_values_cost_about_their_size_not_a_kilobyte_each():
    count = 200_000
    body = records_body(count)  # 12 bytes per record
    before = rss_bytes()
    values, _ = rest_proxy_produce.scan_produce(body, 1_000_000, count)
    grown = rss_bytes() - before
    assert len(values) == count
    assert grown / count < 120, f"{grown / count:.0f} bytes per one-byte value (a 1,024-byte buffer each before)"


def test_the_general_path_keeps_no_oversized_orjson_buffers():
    count = 20_000
    body = records_body(count, keyed=True)
    tracemalloc.start()
    try:
        records = parse_v2_produce(body, "json", 1_000_000)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(records) == count
    assert held / count < 1000, f"{held / count:.0f} bytes per record held (about 8,300 before)"


# --- the in-flight byte budget (429) -----------------------------------------------------------------------
def test_a_request_that_does_not_fit_in_the_budget_is_429_with_retry_after_and_the_budget_is_given_back():
    limit = 1024 * 1024
    with make_client(rest_proxy_max_in_flight_bytes=limit) as client:
        budget = _budget(client)
        budget.used = limit - 10_000  # other requests hold nearly all of it
        for path in ("/topics/t", "/topics/t/partitions/0"):
            response = client.post(path, content=records_body(1000), headers=JSON_V2)
            body = assert_error(response, 429, 429)
            assert body["message"].startswith("Request rate limit exceeded")
            assert response.headers["retry-after"] == "1"
        response = client.post("/consumers/g", content=b"{}" + b" " * 20_000, headers=V2_JSON)
        assert_error(response, 429, 429)
        assert budget.used == limit - 10_000, "every refused request gave back what it had taken"
        budget.used = 0
        body = records_body(200_000)  # ~2.4 MB: could never fit in a 1 MiB budget, even alone
        assert_error(client.post("/topics/t", content=body, headers=JSON_V2), 413, 413)
        assert budget.used == 0


def _budget(client: TestClient):
    """The running app's budget: serve() wraps the FastAPI app in the guard and the fast path."""
    app = client.app
    while not hasattr(app, "state"):
        app = app.app
    return app.state.proxy.in_flight


# --- consumers on their own executor -----------------------------------------------------------------------
class SlowConsumer:
    """A consumer whose every poll blocks for its whole timeout, as a long poll on an idle topic does."""

    def __init__(self, config: dict) -> None:
        pass

    def subscribe(self, topics) -> None:
        pass

    def consume(self, count, timeout):
        time.sleep(timeout)
        return []

    def close(self) -> None:
        pass


def test_long_polls_do_not_starve_metadata_requests(monkeypatch):
    monkeypatch.setattr(consumers, "Consumer", SlowConsumer)
    metadata_calls = []

    def fetch(self):  # the metadata request that readiness and produce make, on the default executor
        metadata_calls.append(threading.current_thread().name)
        return SimpleNamespace(cluster_id="c", controller_id=1, topics={}, brokers={})

    monkeypatch.setattr("services.rest_proxy.kafka_clients.ClusterMetadata._fetch", fetch)
    with make_client(rest_proxy_consumer_threads=2) as client:
        polls = 12  # twice the default executor's 6 threads on 2 cores
        for n in range(polls):
            assert client.post("/consumers/g", json={"name": f"c{n}"}, headers=V2_JSON).status_code == 200
            client.post(f"/consumers/g/instances/c{n}/subscription", json={"topics": ["t"]}, headers=V2_JSON)
        with ThreadPoolExecutor(polls) as pool:
            waiting = [
                pool.submit(client.get, f"/consumers/g/instances/c{n}/records", params={"timeout": 3000})
                for n in range(polls)
            ]
            time.sleep(0.5)  # every poll has started or is queued
            started = time.monotonic()
            ready = client.get("/v3/clusters")
            answered_in = time.monotonic() - started
            assert ready.status_code == 200, ready.text
            assert answered_in < 1.5, f"readiness waited {answered_in:.1f} s behind the long polls"
            assert all(not name.startswith("rest-consumer") for name in metadata_calls)
            assert all(future.result().status_code == 200 for future in waiting)


# --- Host, Origin and media types ----------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1:8082", "localhost:8082", "rest_proxy:8082", "rest-proxy", "[::1]:8082"])
def test_the_stacks_own_names_are_accepted(client, host):
    assert client.get("/", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8082", "127.0.0.1.attacker.example"])
def test_any_other_host_is_refused_dns_rebinding(client, host):
    response = client.get("/", headers={"Host": host})
    assert response.status_code == 400
    response = client.post("/consumers/g", json={}, headers={**V2_JSON, "Host": host})
    assert response.status_code == 400
    response = client.post("/topics/t", content=records_body(1), headers={**JSON_V2, "Host": host})
    assert response.status_code == 400, "the fast produce path is behind the same check"


@pytest.mark.parametrize("origin", ["http://attacker.example", "https://127.0.0.1.attacker.example", "null"])
def test_a_cross_origin_browser_request_is_403(client, origin):
    for response in (
        client.post("/consumers/g", content=b"", headers={**V2_JSON, "Origin": origin}),
        client.post("/topics/t", content=records_body(1), headers={**JSON_V2, "Origin": origin}),
        client.get("/topics", headers={"Origin": origin}),
    ):
        assert_error(response, 403, 403)


def test_a_page_on_an_allowed_host_passes_the_origin_check(client):
    response = client.get("/", headers={"Origin": "http://localhost:3000"})
    assert response.status_code == 200


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_consumer_post_without_a_json_media_type_is_415_even_when_empty_csrf(client, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    for path in ("/consumers/csrf", "/consumers/csrf/instances/x/subscription"):
        response = client.post(path, content=b"", headers=headers)
        if path == "/consumers/csrf":
            assert_error(response, 415, 415)
        else:
            assert response.status_code in (404, 415)
    assert client.post("/consumers/csrf", content=b"", headers=V2_JSON).status_code == 200


def test_the_allowed_hosts_are_a_setting():
    settings = load_settings(rest_proxy_allowed_hosts=["proxy.internal"])
    assert settings.rest_proxy_allowed_host_names == ["proxy.internal"]
    default = load_settings(rest_proxy_url="http://10.0.0.5:8082", bind_host="0.0.0.0")
    assert default.rest_proxy_allowed_host_names[0] == "10.0.0.5"
    assert "0.0.0.0" not in default.rest_proxy_allowed_host_names
    assert {"127.0.0.1", "localhost", "rest_proxy", "rest-proxy"} <= set(default.rest_proxy_allowed_host_names)


def test_the_budget_is_never_left_taken(client):
    client.post("/topics/t", content=records_body(6), headers=JSON_V2)  # 422
    client.post("/consumers/g", content=b"{not json", headers=V2_JSON)  # 400
    assert _budget(client).used == 0
