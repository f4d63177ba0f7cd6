"""Benchmark: the streaming path's sustained rate and PUT-to-readable latency (issue goal: p95 < 5 s at 100 records/s,
1 s trigger).

    .state/venv/bin/python scripts/bench/bench_stream.py [--rate 100] [--seconds 60] [--path kinesis|gateway]
                                                         [--no-append]
    .state/venv/bin/python scripts/bench/bench_stream.py --curve 100,300,1000 --seconds 120 --top-seconds 600

`--curve` runs the steps one after the other on the same streaming job (a scaling curve in one run: each step waits
for its records to land before the next starts), with `--top-seconds` at the last step, and reports per step the
sustained rate against the offered one and p95 latency against the first step's (goals: sustained >= 0.95x of
offered at every step; p95 at the top within 1.5x of p95 at the first step).

Uses its own user id (`7e57c0deb006`) with freshly created streams and a temporary warehouse, so it touches no user
data. Starts `python -m spark_jobs.stream` (trigger 1 s) and waits until its three queries run, then PUTs records at
`--rate` records/s in total, spread over pin/geo/user, with PutRecords straight to Kinesis (default) or through the
API Gateway (`--path gateway`: `PUT <invoke>/streams/<s>/record`, the emulator's path, which LocalStack carries at
about 30 requests/s here, so it cannot offer 100/s). Each record's `ind` is unique, so a poller
that reads the Delta logs every 0.2 s (new `add` files, read with pyarrow) sees when each record became readable.
Latency = first seen in a committed Delta version - PUT answered. Results go to stdout and, unless --no-append, to
docs/BENCHMARKS.md under "Streaming".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import boto3
import httpx
import pyarrow.parquet as pq
from results import REPO, RESULTS, machine, record_row  # scripts/bench/results.py (run as a script)

from pipeline.settings import TABLES, Settings, load_settings
from services.provision.aws import delete_streams, recreate_streams
from tests.support import SAMPLES_DIR

BENCH_USER_ID = "7e57c0deb006"
SECTION = "## Streaming"
QUARANTINE = "quarantine"
WARM_UP_FIRST_IND = 10_000_000
HEADER = (
    "| date (UTC) | path | offered rate | records | sustained records/s | latency p50 | latency p95 | max "
    "| trigger | machine |\n|---|---|---|---|---|---|---|---|---|---|\n"
)
NOTE = (
    "`scripts/bench/bench_stream.py --rate R --seconds S`: records PUT at R records/s in total (pin/geo/user in\n"
    "turn) for S seconds; the streaming job (`local[2]`, 1 s trigger) appends them to Delta. Latency: from the PUT's\n"
    "answer to the record being readable in a committed Delta version (log polled every 0.2 s). Sustained rate:\n"
    "records landed / (last landing - first PUT). The load average shows how busy the shared machine was."
)


class DeltaPoller:
    """Reads the new `add` files of each table's Delta log every `period` s and notes when each record first shows:
    by `ind` in the clean tables, and by the `ind` inside the raw JSON in the quarantine table (the samples hold
    records the job quarantines, as the original data does)."""

    def __init__(self, warehouse: Path, settings: Settings, period: float = 0.2) -> None:
        self.logs = {t: warehouse / settings.delta_table(t) / "_delta_log" for t in TABLES}
        self.logs[QUARANTINE] = warehouse / settings.stream_quarantine_table / "_delta_log"
        self.seen: dict[tuple[str, int], float] = {}
        self.read_commits: set[Path] = set()
        self.period = period
        self.stop = threading.Event()

    def records(self, table: str, data_file: Path) -> list[tuple[str, int]]:
        if table != QUARANTINE:
            return [(table, ind) for ind in pq.read_table(data_file, columns=["ind"]).column("ind").to_pylist()]
        rows = pq.read_table(data_file, columns=["source_table", "value"]).to_pylist()
        keys = []
        for row in rows:
            try:
                value = json.loads(row["value"])
                keys.append((row["source_table"], value["index" if row["source_table"] == "pin" else "ind"]))
            except (ValueError, KeyError, TypeError):
                continue  # not one of the benchmark's records
        return keys

    def run(self) -> None:
        while not self.stop.is_set():
            for table, log in self.logs.items():
                for commit in sorted(log.glob("*.json")) if log.is_dir() else []:
                    if commit in self.read_commits:
                        continue
                    now = time.time()
                    self.read_commits.add(commit)
                    for line in commit.read_text().splitlines():
                        add = json.loads(line).get("add")
                        if add:
                            for key in self.records(table, log.parent / add["path"]):
                                self.seen.setdefault(key, now)
            time.sleep(self.period)


def put_records(
    settings: Settings, rate: float, seconds: float, path: str, first: int = 0
) -> tuple[dict[tuple[str, int], float], str]:
    """PUT `rate` records/s for `seconds`; returns {(table, ind): time the PUT was answered} and the path used.

    `gateway`: one record per request through the API Gateway (the emulator's path; LocalStack's gateway carries
    about 30 requests/s on 2 cores, see "API Gateway" in BENCHMARKS.md). `kinesis`: PutRecords straight to Kinesis,
    every 0.1 s the records due by then, per stream (how a producer library batches), which offers 100/s and more."""
    invoke_url = load_settings().resolved_invoke_url() if path == "gateway" else None
    if path == "gateway" and not invoke_url:
        raise SystemExit("no API Gateway is provisioned (make provision), or use --path kinesis")
    samples = {
        t: [json.loads(line) for line in (SAMPLES_DIR / f"original_{t}.jsonl").read_text().splitlines()] for t in TABLES
    }
    put_at: dict[tuple[str, int], float] = {}
    kinesis = boto3.client("kinesis", **settings.boto3_client_kwargs("kinesis"))
    client = httpx.Client(timeout=30)

    def record(i: int) -> tuple[str, dict]:
        table = TABLES[i % 3]
        row = dict(samples[table][i % len(samples[table])])
        row["index" if table == "pin" else "ind"] = first + i
        return table, row

    def send_one(i: int) -> None:
        table, row = record(i)
        stream = settings.stream(table)
        body = {"StreamName": stream, "Data": row, "PartitionKey": str(i)}
        client.put(f"{invoke_url}/streams/{stream}/record", json=body).raise_for_status()
        put_at[(table, first + i)] = time.time()

    def send_batch(table: str, numbers: list[int]) -> None:
        rows = [record(i)[1] for i in numbers]
        entries = [
            {"Data": json.dumps(row).encode(), "PartitionKey": str(i)} for i, row in zip(numbers, rows, strict=True)
        ]
        while entries:
            response = kinesis.put_records(StreamName=settings.stream(table), Records=entries)
            answered = time.time()
            retry = []
            for i, entry, result in zip(numbers, entries, response["Records"], strict=True):
                if "ErrorCode" in result:
                    retry.append((i, entry))
                else:
                    put_at[(table, first + i)] = answered
            numbers, entries = [i for i, _ in retry], [e for _, e in retry]

    total = int(rate * seconds)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        if invoke_url:
            for i in range(total):
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(send_one, i)
        else:
            sent, tick = 0, started
            while sent < total:
                tick += 0.1
                time.sleep(max(0.0, tick - time.monotonic()))
                due = min(total, int((tick - started) * rate))
                for table in TABLES:
                    numbers = [i for i in range(sent, due) if TABLES[i % 3] == table]
                    if numbers:
                        pool.submit(send_batch, table, numbers)
                sent = due
    return put_at, (
        "API Gateway -> Kinesis (1 record/request)" if invoke_url else "PutRecords -> Kinesis (0.1 s batches)"
    )


def print_windows(put_at: dict[tuple[str, int], float], seen: dict[tuple[str, int], float], width: float = 10) -> None:
    """Median latency per `width` seconds of PUTs: flat when the job keeps up, rising when it falls behind."""
    first = min(put_at.values())
    windows: dict[int, list[float]] = {}
    for key, at in put_at.items():
        if key in seen:
            windows.setdefault(int((at - first) // width), []).append(seen[key] - at)
    cells = [f"{w * width:.0f}-{(w + 1) * width:.0f} s: {statistics.median(v):.1f}" for w, v in sorted(windows.items())]
    print("bench_stream: median latency by PUT time:", "; ".join(cells))


def print_tables(put_at: dict[tuple[str, int], float], seen: dict[tuple[str, int], float]) -> None:
    """p50/p95 latency per table: the three queries run side by side, and the slowest sets the overall p95."""
    cells = []
    for table in TABLES:
        latencies = [seen[key] - at for key, at in put_at.items() if key[0] == table and key in seen]
        if len(latencies) > 1:
            quantiles = statistics.quantiles(latencies, n=100)
            cells.append(f"{table} p50 {quantiles[49]:.2f} s, p95 {quantiles[94]:.2f} s")
    print("bench_stream: latency by table:", "; ".join(cells))


def append_result(row: str) -> None:
    record_row(SECTION, f"{NOTE}\n\n{HEADER}", row, RESULTS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="records per second, all streams together")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--path",
        choices=["kinesis", "gateway"],
        default="kinesis",
        help="kinesis: PutRecords straight to the streams (default; offers 100/s); gateway: the emulator's PUTs",
    )
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--curve", default="", help="comma-separated rates run in turn, e.g. 100,300,1000")
    parser.add_argument("--top-seconds", type=float, default=None, help="--curve: seconds at the last rate")
    args = parser.parse_args()
    rates = [float(r) for r in args.curve.split(",") if r.strip()] or [args.rate]
    durations = [args.seconds] * len(rates)
    if args.top_seconds:
        durations[-1] = args.top_seconds
    settings = load_settings(pipeline_user_id=BENCH_USER_ID)
    recreate_streams(settings)
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    warehouse, status = work / "warehouse", work / "status.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PIPELINE_USER_ID": BENCH_USER_ID, "SPARK_LOCAL_IP": "127.0.0.1"}
    command = [sys.executable, "-m", "spark_jobs.stream", "--warehouse", str(warehouse), "--status-file", str(status)]
    print(f"bench_stream: starting the streaming job ({work})", flush=True)
    with open(work / "job.log", "w") as log:
        job = subprocess.Popen(
            [*command, "--trigger-seconds", "1"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    poller = DeltaPoller(warehouse, settings)
    steps: list[tuple[float, float, dict[tuple[str, int], float], str]] = []
    try:
        deadline = time.monotonic() + 900
        while True:
            if job.poll() is not None:
                raise SystemExit(f"the streaming job exited early; see {work / 'job.log'}")
            if status.exists() and sum(q["active"] for q in json.loads(status.read_text())["queries"]) == 3:
                break
            if time.monotonic() > deadline:
                raise SystemExit("the streaming job did not start its queries in 900 s")
            time.sleep(1)
        threading.Thread(target=poller.run, daemon=True).start()
        # Warm-up, not timed: the first micro-batch of each query starts Python workers, compiles code and creates
        # the Delta tables' first versions (30-40 s on 2 cores); what users live with afterwards is the steady state.
        print("bench_stream: queries running; warming up (first micro-batches, not timed)", flush=True)
        warm_start = time.monotonic()
        warm_up, _ = put_records(settings, 30, 2, args.path, first=WARM_UP_FIRST_IND)
        while not set(warm_up) <= set(poller.seen) and time.monotonic() - warm_start < 600:
            time.sleep(0.5)
        print(f"bench_stream: warm-up landed in {time.monotonic() - warm_start:.1f} s; sending", flush=True)
        first = 0
        for rate, seconds in zip(rates, durations, strict=True):
            print(f"bench_stream: step {rate:.0f} records/s for {seconds:.0f} s", flush=True)
            put_at, path = put_records(settings, rate, seconds, args.path, first=first)
            first += len(put_at) + 1
            wait_until = time.monotonic() + 120
            while not set(put_at) <= set(poller.seen) and time.monotonic() < wait_until:
                time.sleep(0.5)
            steps.append((rate, seconds, put_at, path))
            if job.poll() is not None:
                break
    finally:
        poller.stop.set()
        job.terminate()
        try:
            job.wait(timeout=90)
        except subprocess.TimeoutExpired:
            job.kill()
        delete_streams(settings, settings.streams)
    results = [step_result(*step, poller.seen, work) for step in steps]
    ok = all(r["landed"] == r["offered_records"] for r in results)
    base_p95 = results[0]["p95"]
    for r in results:
        row = (
            f"| {datetime.now(UTC):%Y-%m-%d %H:%M} | {r['path']} | {r['rate']:.0f}/s for {r['seconds']:.0f} s | "
            f"{r['landed']}/{r['offered_records']} | {r['sustained']:.1f} ({r['sustained'] / r['rate']:.2f}x) | "
            f"{r['p50']:.2f} s | {r['p95']:.2f} s ({r['p95'] / base_p95:.2f}x) | {r['max']:.2f} s | 1 s | "
            f"{machine()} |"
        )
        print(f"bench_stream: {row}")
        if not args.no_append:
            append_result(row)
    return 0 if ok else 1


def step_result(
    rate: float, seconds: float, put_at: dict[tuple[str, int], float], path: str, seen: dict, work: Path
) -> dict:
    latencies = sorted(seen[key] - put_at[key] for key in put_at if key in seen)
    landed = len(latencies)
    if not landed:
        raise SystemExit(f"no record of the {rate:.0f}/s step landed; see {work / 'job.log'}")
    step_seen = {key: seen[key] for key in put_at if key in seen}
    span = max(step_seen.values()) - min(put_at.values())
    print_windows(put_at, step_seen)
    print_tables(put_at, step_seen)
    quantiles = statistics.quantiles(latencies, n=100) if landed > 1 else latencies * 99
    print(
        f"bench_stream: {rate:.0f}/s: {landed}/{len(put_at)} records landed via {path}; sustained "
        f"{landed / span:.1f} records/s; latency p50 {quantiles[49]:.2f} s, p95 {quantiles[94]:.2f} s, "
        f"max {latencies[-1]:.2f} s",
        flush=True,
    )
    return {
        "rate": rate, "seconds": seconds, "path": path, "landed": landed, "offered_records": len(put_at),
        "sustained": landed / span, "p50": quantiles[49], "p95": quantiles[94], "max": latencies[-1],
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
