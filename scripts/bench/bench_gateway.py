"""API Gateway benchmark: the batch path through the gateway vs straight to the REST proxy, and the stream path
through the gateway vs straight to Kinesis, in one command (ratios; this machine is shared and noisy).

Each path posts the same contract-sized pin rows (from the original samples) as single-record requests with the same
concurrency, timing every request: throughput (records/s) and p50/p99 latency. Uses its own user id and state folder
(topics, streams and API of that id), so a user's data is untouched. Needs `make up`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import boto3
import httpx
from results import record_row  # scripts/bench/results.py (run as a script)

from emulator import payloads
from pipeline.settings import Settings, load_settings
from services.provision import aws
from services.provision.kafka import provision_topics
from tests.support import SAMPLES_DIR

USER = "7e57c0debe40"
SAMPLE = SAMPLES_DIR / "original_pin.jsonl"


def sample_rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


async def measure(count: int, concurrency: int, send: Callable[[int], Awaitable[None]]) -> dict[str, float]:
    latencies: list[float] = []
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            started = time.perf_counter()
            await send(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "rate": count / elapsed,
        "p50": statistics.median(ordered) * 1000,
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


async def run(settings: Settings, invoke_url: str, count: int, concurrency: int) -> dict[str, dict[str, float]]:
    rows = sample_rows()
    topic, stream = settings.topic("pin"), settings.stream("pin")
    headers = {"Content-Type": payloads.KAFKA_JSON_CONTENT_TYPE}
    kinesis = boto3.client("kinesis", **settings.boto3_client_kwargs("kinesis"))
    results = {}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency * 2)) as client:

        def poster(base: str) -> Callable[[int], Awaitable[None]]:
            async def send(i: int) -> None:
                body = payloads.kafka_records_body([rows[i % len(rows)]])
                response = await client.post(f"{base}/topics/{topic}", content=body, headers=headers)
                response.raise_for_status()
                assert response.json()["offsets"][0]["error_code"] is None

            return send

        async def put_via_gateway(i: int) -> None:
            row = rows[i % len(rows)]
            body = payloads.stream_record_body(stream, row, str(i))
            response = await client.put(
                f"{invoke_url}/streams/{stream}/record", content=body, headers={"Content-Type": "application/json"}
            )
            response.raise_for_status()
            assert "SequenceNumber" in response.json()

        async def put_direct(i: int) -> None:
            data = json.dumps(rows[i % len(rows)]).encode()
            await asyncio.to_thread(kinesis.put_record, StreamName=stream, Data=data, PartitionKey=str(i))

        for name, send in (
            ("batch: REST proxy direct", poster(settings.rest_proxy_url)),
            ("batch: through API Gateway", poster(invoke_url)),
            ("stream: Kinesis direct (boto3)", put_direct),
            ("stream: through API Gateway", put_via_gateway),
        ):
            await measure(min(50, count), concurrency, send)  # warm-up
            results[name] = await measure(count, concurrency, send)
            print(f"{name:<32} {results[name]['rate']:8.1f} records/s  p50 {results[name]['p50']:7.1f} ms  "
                  f"p99 {results[name]['p99']:7.1f} ms", flush=True)  # fmt: skip
    return results


def record(results: dict[str, dict[str, float]], count: int, concurrency: int) -> None:
    title = "## API Gateway (`python scripts/bench/bench_gateway.py`)"
    proxy, gateway = results["batch: REST proxy direct"], results["batch: through API Gateway"]
    direct, streamed = results["stream: Kinesis direct (boto3)"], results["stream: through API Gateway"]
    line = (
        f"| {time.strftime('%Y-%m-%d %H:%M')} | {platform.node()} ({os.cpu_count()} cores), {count} x 1 record, "
        f"{concurrency} in flight | {os.getloadavg()[0]:.1f} | "
        f"{proxy['rate']:.0f}/s, {proxy['p50']:.1f}/{proxy['p99']:.1f} ms | "
        f"{gateway['rate']:.0f}/s, {gateway['p50']:.1f}/{gateway['p99']:.1f} ms | {gateway['rate'] / proxy['rate']:.2f} | "
        f"{direct['rate']:.0f}/s, {direct['p50']:.1f}/{direct['p99']:.1f} ms | "
        f"{streamed['rate']:.0f}/s, {streamed['p50']:.1f}/{streamed['p99']:.1f} ms | {streamed['rate'] / direct['rate']:.2f} |"
    )
    header = [
        "Single-record requests of contract-sized pin rows; each path measured in the same run after a warm-up. Rates in",
        "records/s, latency p50/p99 per request. The gateway is LocalStack 4.9.2 executing the provisioned definition",
        "(HTTP_PROXY to the REST proxy; AWS integration to Kinesis, forwarded to the Kinesis store).",
        "",
        "| date (UTC) | machine | load | proxy direct | via gateway | gateway/proxy | Kinesis direct | via gateway | gateway/direct |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    record_row(title, "\n".join(header), line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="requests per path")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-record", action="store_true", help="do not append to docs/BENCHMARKS.md")
    args = parser.parse_args()
    settings = load_settings(pipeline_user_id=USER, state_dir=Path(tempfile.mkdtemp(prefix="bench-gateway-")))
    for step in (provision_topics, aws.provision_streams, aws.provision_api):
        step(settings, dry_run=False)
    invoke_url = settings.resolved_invoke_url()
    assert invoke_url, "provisioning stored no invoke URL"
    results = asyncio.run(run(settings, invoke_url, args.count, args.concurrency))
    if not args.no_record:
        record(results, args.count, args.concurrency)


if __name__ == "__main__":
    main()
