"""The REST proxy's memory limits against the running proxy and broker (issue 19, item 6): oversized bodies are 413,
record-heavy ones 422 (42208), a flood of large requests is answered 429 past the in-flight budget, the proxy's
resident memory stays under a stated bound throughout, and the proxy keeps serving afterwards.

Native mode only: the proxy's memory is read from /proc/<pid>/status, its pid from supervisord (`stack.instance`).
Before the fix, one 4.9 MB body of keyed records took the proxy to about 1.7 GB (measured), over the bound here.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from services.provision.kafka import provision_topics

JSON_V2 = {"Content-Type": "application/vnd.kafka.json.v2+json"}
# The proxy's peak resident memory during this test may grow by at most this much. The in-flight budget (256 MiB by
# default, charged about what requests really hold) is what keeps it there; the proxy itself starts at ~100 MB.
PEAK_GROWTH_BOUND = 600 * 1024 * 1024


def memory(pid: str, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for pid {pid}")


@pytest.fixture(scope="module")
def proxy_pid(stack, stack_control, stack_mode) -> str:
    if stack_mode != "native":
        pytest.skip("reads the proxy's memory from /proc: native mode only")
    stack("kafka", "rest_proxy")
    pid = stack_control.instance("rest_proxy")
    assert pid, "rest_proxy is not running"
    return pid


@pytest.fixture(scope="module")
def topic(settings, proxy_pid) -> str:
    provision_topics(settings, dry_run=False)
    return settings.topics[0]


def raw_request(settings, head: str, body: bytes = b"", timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on its own socket, its body possibly shorter than declared; the status line, headers
    and body of the answer (the proxy answers a refused request without waiting for the rest of the body)."""
    url = urlsplit(settings.rest_proxy_url)
    with socket.create_connection((url.hostname, url.port or 8082), timeout=timeout) as connection:
        connection.sendall(head.encode() + b"\r\n" + body)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            assert chunk, f"connection closed before an answer: {received!r}"
            received += chunk
        header_block, _, rest = received.partition(b"\r\n\r\n")
        lines = header_block.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            rest += chunk
        return int(lines[0].split()[1]), headers, rest


def produce_head(settings, topic: str, length: int) -> str:
    host = urlsplit(settings.rest_proxy_url).netloc
    return (
        f"POST /topics/{topic} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/vnd.kafka.json.v2+json\r\nContent-Length: {length}\r\n"
    )


def keyed_body(count: int) -> bytes:
    return orjson.dumps({"records": [{"key": n, "value": {"n": n}} for n in range(count)]})


def test_large_and_record_heavy_bodies_are_refused_memory_stays_bounded_and_the_proxy_keeps_serving(
    settings, proxy_pid, topic
):
    with open(f"/proc/{proxy_pid}/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak (VmHWM) to the current resident size
    start = memory(proxy_pid, "VmRSS")
    with httpx.Client(base_url=settings.rest_proxy_url, timeout=60) as client:
        assert client.post(f"/topics/{topic}", json={"records": [{"value": 1}]}, headers=JSON_V2).status_code == 200

        # Oversized: refused on its Content-Length, unread.
        status, _, _ = raw_request(settings, produce_head(settings, topic, 64 * 1024 * 1024 + 1), b"{")
        assert status == 413

        # Record-heavy: the body that took the proxy to 1.7 GB, and 60,000 plain values (~210 MB before).
        heavy = keyed_body(200_000)
        response = client.post(f"/topics/{topic}", content=heavy, headers=JSON_V2)
        assert response.status_code == 422 and response.json()["error_code"] == 42208, response.text
        plain = orjson.dumps({"records": [{"value": 1}] * 60_000})
        response = client.post(f"/topics/{topic}", content=plain, headers=JSON_V2)
        assert response.status_code == 422 and response.json()["error_code"] == 42208, response.text

        # At the cap, many at once: answered 200, or 429 (with Retry-After) once the budget is taken, never queued.
        at_cap = keyed_body(settings.rest_proxy_max_records_per_request)
        with ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(lambda _: client.post(f"/topics/{topic}", content=at_cap, headers=JSON_V2), range(32))
            )
        assert {answer.status_code for answer in answers} <= {200, 429}
        assert any(answer.status_code == 200 for answer in answers)
        for answer in answers:
            if answer.status_code == 429:
                assert answer.headers["retry-after"] == "1" and answer.json()["error_code"] == 429

        # A flood of large bodies, each declaring 60 MB: the first ones hold the budget while they send slowly, the
        # others are answered 429 at once, before anything of theirs is read.
        holders = []
        stop = threading.Event()

        def hold_budget() -> None:
            url = urlsplit(settings.rest_proxy_url)
            with socket.create_connection((url.hostname, url.port or 8082), timeout=60) as connection:
                connection.sendall(produce_head(settings, topic, 60_000_000).encode() + b"\r\n{")
                holders.append(connection)
                stop.wait(30)

        threads = [threading.Thread(target=hold_budget, daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        refused = [raw_request(settings, produce_head(settings, topic, 60_000_000), b"{")[0] for _ in range(10)]
        stop.set()
        for thread in threads:
            thread.join()
        assert refused.count(429) >= 9, refused

        peak = memory(proxy_pid, "VmHWM")
        assert peak - start < PEAK_GROWTH_BOUND, f"the proxy grew from {start >> 20} MiB to a peak of {peak >> 20} MiB"

        # Still serving, with the budget given back.
        for _ in range(3):
            response = client.post(f"/topics/{topic}", json={"records": [{"value": 2}] * 100}, headers=JSON_V2)
            assert response.status_code == 200, response.text
        assert client.get("/v3/clusters").status_code == 200
    print(f"proxy RSS {start >> 20} MiB at start, peak {peak >> 20} MiB")
