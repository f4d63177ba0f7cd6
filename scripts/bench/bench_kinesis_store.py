"""Kinesis store candidates: durability across kill -9 and the cost of holding records, each store run standalone.

Goals: put and get latency with 100,000 records held per shard within 1.5x of an empty stream; every acknowledged
record survives kill -9 of the store.

    .state/venv/bin/python scripts/bench/bench_kinesis_store.py [--candidates km-0.4.13 km-0.6.2 kinesalite-3.3.3
                                                                            stack]
        [--held 100000] [--fill-limit-seconds 600] [--calls 200] [--idle-seconds 60] [--base-port 14500] [--no-record]

Candidates: kinesis-mock (npm `kinesis-local`) 0.4.13 and 0.6.2, persisting a snapshot every 30 s, and kinesalite
3.3.3 (LevelDB), and `stack`: the stack's own Kinesis store as the stack runs it (services/kinesis/server.js, the
package `make setup` installed, the service's flags), on a port and data folder of its own here. Each other one is
installed with `npm install --prefix <STATE_DIR or .state>/bench/kinesis-store/<candidate>`
(skipped when already there; needs node and npm) and started here in its own session with its data under that folder;
every process started is stopped by its PID (SIGTERM, then SIGKILL) and the data deleted at the end of the
candidate's run, also on an error or Ctrl-C. The store's output goes to `<that folder>/store.log`. No stack needed.

Per candidate, with boto3 (JSON protocol, dummy credentials, us-east-1):
- durability: a 2-shard stream, one PutRecords of 500 records of 1,000 bytes, kill -9 right after the answer,
  restart on the same data; reports the records acknowledged, how many of them are readable again, whether the
  stream survived and the seconds until the restarted endpoint answers ListStreams;
- latency on a fresh 1-shard stream, "empty" (holding only the --calls x 10 records of the first put phase) and
  "held" (after filling to --held records in PutRecords of 500, or as many as --fill-limit-seconds allows): p50/p95
  and the store's CPU per call of --calls PutRecords of 10 records and GetRecords of 100 records (from the trim
  horizon; when held also from a fixed position near the tip), and held/empty ratios of the p50s;
- RSS empty and held, and the store's CPU over --idle-seconds idle while holding the records.
The latency goal is judged on the p50 ratios (put, get from the trim horizon and near the tip). Results go to stdout
and, unless --no-record, a row per candidate to docs/BENCHMARKS.md under "Kinesis store candidates".
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from results import REPO, machine, record_row  # scripts/bench/results.py (run as a script)

from pipeline.settings import load_settings
from services.kinesis import service as kinesis_service
from tests.support.kinesis import stream_records

TICK = os.sysconf("SC_CLK_TCK")
RECORD_BYTES = 1000
FILL_BATCH = 500
PUT_BATCH = 10
GET_LIMIT = 100
DURABILITY_RECORDS = 500
KM_PERSIST_INTERVAL = "30s"
STOP_TIMEOUT = 20.0
LATENCY_GOAL = 1.5
GOAL_HELD = 100_000


@dataclass(frozen=True)
class Candidate:
    name: str
    package: str  # npm package
    version: str

    @property
    def kinesis_mock(self) -> bool:
        return self.package == "kinesis-local"

    @property
    def stack(self) -> bool:
        return self.package == "stack"


CANDIDATES = [
    Candidate("km-0.4.13", "kinesis-local", "0.4.13"),
    Candidate("km-0.6.2", "kinesis-local", "0.6.2"),
    Candidate("kinesalite-3.3.3", "kinesalite", "3.3.3"),
    Candidate("stack", "stack", "services/kinesis"),
]


@dataclass
class Result:
    acked: int = 0
    readable: int = 0
    survived: bool = False
    restart_seconds: float = 0.0
    held: int = 0
    fill_seconds: float = 0.0
    fill_limited: bool = False
    rss_empty: float = 0.0
    rss_held: float = 0.0
    idle_cpu: float = 0.0
    # phase ("empty"/"held") -> operation ("put", "get-trim", "get-tip") -> p50/p95 ms and cpu ms per call
    timings: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def ratio(self, operation: str, stat: str = "p50") -> float:
        empty = self.timings["empty"]["put" if operation == "put" else "get-trim"][stat]
        return self.timings["held"][operation][stat] / empty if empty else float("inf")

    def durable(self) -> bool:
        return self.survived and self.acked > 0 and self.readable == self.acked

    def latency_ok(self, target: int) -> bool:
        ratios = [self.ratio(op) for op in ("put", "get-trim", "get-tip")]
        return self.held >= target and max(ratios) <= LATENCY_GOAL


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def bench_root() -> Path:
    state = Path(os.environ.get("STATE_DIR") or ".state")
    return (state if state.is_absolute() else REPO / state) / "bench" / "kinesis-store"


def install(candidate: Candidate, folder: Path) -> Path:
    """The package's folder, installed with npm unless it is already there (the stack's: by `make setup`)."""
    if candidate.stack:
        package = kinesis_service.install_dir(load_settings()) / "node_modules" / "kinesalite"
        if not package.is_dir():
            raise SystemExit(f"the stack's Kinesis store is not installed ({package}): run `make setup`")
        return package
    package = folder / "node_modules" / candidate.package
    if (package / "package.json").exists():
        log(f"{candidate.name}: installed in {folder}")
        return package
    if not shutil.which("npm"):
        raise SystemExit("npm is needed to install the candidates (node and npm)")
    spec = f"{candidate.package}@{candidate.version}"
    log(f"{candidate.name}: npm install --prefix {folder} {spec}")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--prefix", str(folder), spec], check=True)
    return package


class Store:
    """One candidate's server on its port, over a data folder; every process it starts is kept to be stopped."""

    def __init__(self, candidate: Candidate, package: Path, port: int, log_path: Path) -> None:
        self.candidate, self.package, self.port, self.log_path = candidate, package, port, log_path
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, data: Path) -> tuple[subprocess.Popen[bytes], float]:
        data.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.candidate.kinesis_mock:
            env.update(
                KINESIS_MOCK_PLAIN_PORT=str(self.port),
                KINESIS_MOCK_TLS_PORT=str(self.port + 1),
                KINESIS_MOCK_CERT_PATH=str(self.package / "server.json"),
                SHOULD_PERSIST_DATA="true",
                LOAD_DATA_IF_EXISTS="true",
                PERSIST_PATH=str(data),
                PERSIST_FILE_NAME="000000000000.json",
                PERSIST_INTERVAL=KM_PERSIST_INTERVAL,
                LOG_LEVEL="WARN",
                CREATE_STREAM_DURATION="500ms",
            )
            command = ["node", str(self.package / "main.js")]
        elif self.candidate.stack:
            definition = kinesis_service.service(
                load_settings(aws_endpoint_url_kinesis=f"http://127.0.0.1:{self.port}")
            )
            command = [arg for arg in definition.command if not arg.startswith("--path=")] + [f"--path={data}"]
            env.update(definition.env)
        else:
            command = ["node", str(self.package / "cli.js"), "--port", str(self.port), "--path", str(data)]
            command += ["--createStreamMs", "500"]
        with self.log_path.open("ab") as out:
            started = time.monotonic()
            process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=data
            )
        self.processes.append(process)
        log(f"{self.candidate.name}: started pid {process.pid} on port {self.port}")
        return process, started

    def client(self, timeout: float = 300) -> Any:
        return boto3.client(
            "kinesis",
            region_name="us-east-1",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 0}, connect_timeout=2, read_timeout=timeout),
        )

    def wait_up(self, process: subprocess.Popen[bytes], started: float, limit: float = 120) -> tuple[float, list[str]]:
        """Seconds from the start until ListStreams answers, and the streams it lists."""
        client = self.client(timeout=5)
        while time.monotonic() - started < limit:
            if process.poll() is not None:
                raise RuntimeError(f"{self.candidate.name} exited ({process.returncode}); see {self.log_path}")
            try:
                names = client.list_streams()["StreamNames"]
                return time.monotonic() - started, names
            except Exception:
                time.sleep(0.05)
        raise TimeoutError(f"{self.candidate.name} did not answer within {limit:.0f} s; see {self.log_path}")

    @staticmethod
    def kill9(process: subprocess.Popen[bytes]) -> None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    log(
                        f"{self.candidate.name}: pid {process.pid} still up {STOP_TIMEOUT:.0f} s after SIGTERM: SIGKILL"
                    )
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def make_records(count: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "Data": (f"{tag}{i:08d}".encode() + os.urandom(RECORD_BYTES // 2).hex().encode())[:RECORD_BYTES],
            "PartitionKey": f"pk{i}",
        }
        for i in range(count)
    ]


def wait_active(client: Any, name: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"stream {name} not ACTIVE within {limit:.0f} s")
        time.sleep(0.1)


def durability(store: Store, data: Path, result: Result) -> None:
    process, started = store.start(data)
    store.wait_up(process, started)
    client = store.client()
    client.create_stream(StreamName="durability", ShardCount=2)
    wait_active(client, "durability")
    records = make_records(DURABILITY_RECORDS, "d")
    answer = client.put_records(StreamName="durability", Records=records)
    acked = {records[i]["Data"][:9] for i, outcome in enumerate(answer["Records"]) if "SequenceNumber" in outcome}
    store.kill9(process)
    result.acked = len(acked)
    log(f"{store.candidate.name}: {result.acked} records acknowledged, kill -9 {process.pid}; restarting")
    process, started = store.start(data)
    result.restart_seconds, names = store.wait_up(process, started)
    result.survived = "durability" in names
    readable = {record["Data"][:9] for _, record in stream_records(client, "durability")} if result.survived else set()
    result.readable = len(acked & readable)
    log(
        f"{store.candidate.name}: durability: acked {result.acked}, readable after kill -9 and restart "
        f"{result.readable}, stream survived {'yes' if result.survived else 'NO'}, endpoint answered after "
        f"{result.restart_seconds:.2f} s"
    )
    store.stop_all()


def percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def timed(pid: int, calls: int, call: Callable[[], None]) -> dict[str, float]:
    latencies = []
    cpu_before = cpu_seconds(pid)
    for _ in range(calls):
        started = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - started) * 1000)
    cpu = (cpu_seconds(pid) - cpu_before) / calls * 1000
    p50, p95 = percentiles(latencies)
    return {"p50": p50, "p95": p95, "cpu": cpu}


def phase(
    store: Store, pid: int, client: Any, shard: str, label: str, calls: int, tip: str | None
) -> dict[str, dict[str, float]]:
    batch = make_records(PUT_BATCH, "p")

    def put() -> None:
        answer = client.put_records(StreamName="latency", Records=batch)
        if answer["FailedRecordCount"]:
            raise RuntimeError(f"PutRecords failed for {answer['FailedRecordCount']} records")

    timings = {"put": timed(pid, calls, put)}
    positions = {"get-trim": {"ShardIteratorType": "TRIM_HORIZON"}}
    if tip is not None:
        positions["get-tip"] = {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": tip}
    for operation, position in positions.items():
        iterator = client.get_shard_iterator(StreamName="latency", ShardId=shard, **position)["ShardIterator"]

        def get(iterator: str = iterator) -> None:
            count = len(client.get_records(ShardIterator=iterator, Limit=GET_LIMIT)["Records"])
            if count != GET_LIMIT:
                raise RuntimeError(f"GetRecords returned {count} records, not {GET_LIMIT}")

        timings[operation] = timed(pid, calls, get)
    for operation, t in timings.items():
        log(
            f"{store.candidate.name}: {label} {operation}: p50 {t['p50']:.1f} ms, p95 {t['p95']:.1f} ms, "
            f"CPU {t['cpu']:.1f} ms per call"
        )
    return timings


def latency(store: Store, data: Path, result: Result, args: argparse.Namespace) -> None:
    process, started = store.start(data)
    store.wait_up(process, started)
    client = store.client()
    client.create_stream(StreamName="latency", ShardCount=1)
    wait_active(client, "latency")
    shard = client.list_shards(StreamName="latency")["Shards"][0]["ShardId"]
    result.rss_empty = rss_mb(process.pid)
    result.timings["empty"] = phase(store, process.pid, client, shard, "empty", args.calls, None)

    held = args.calls * PUT_BATCH
    fill = make_records(FILL_BATCH, "f")
    log(f"{store.candidate.name}: filling to {args.held:,} records (limit {args.fill_limit_seconds:.0f} s)")
    fill_started = time.monotonic()
    cpu_before = cpu_seconds(process.pid)
    deadline = fill_started + args.fill_limit_seconds
    last_report = fill_started
    while held < args.held and time.monotonic() < deadline:
        answer = client.put_records(StreamName="latency", Records=fill[: min(FILL_BATCH, args.held - held)])
        held += len(answer["Records"]) - answer["FailedRecordCount"]
        if time.monotonic() - last_report >= 10:
            last_report = time.monotonic()
            log(
                f"{store.candidate.name}: fill: {held:,} held, {last_report - fill_started:.0f} s, "
                f"CPU {cpu_seconds(process.pid) - cpu_before:.1f} s, RSS {rss_mb(process.pid):.0f} MB"
            )
    result.fill_seconds = time.monotonic() - fill_started
    result.fill_limited = held < args.held
    result.held = held
    log(
        f"{store.candidate.name}: fill: {held:,} held after {result.fill_seconds:.1f} s"
        + (" (stopped by --fill-limit-seconds)" if result.fill_limited else "")
        + f", CPU {cpu_seconds(process.pid) - cpu_before:.1f} s"
    )
    # A fixed position near the tip: the first of GET_LIMIT records put after the fill.
    tip = client.put_records(StreamName="latency", Records=make_records(GET_LIMIT, "t"))["Records"][0]
    result.timings["held"] = phase(store, process.pid, client, shard, "held", args.calls, tip["SequenceNumber"])
    result.rss_held = rss_mb(process.pid)
    cpu_before = cpu_seconds(process.pid)
    time.sleep(args.idle_seconds)
    result.idle_cpu = cpu_seconds(process.pid) - cpu_before
    log(
        f"{store.candidate.name}: RSS empty {result.rss_empty:.0f} MB, held {result.rss_held:.0f} MB; idle CPU over "
        f"{args.idle_seconds:.0f} s with {result.held:,} held: {result.idle_cpu:.1f} s"
    )
    store.stop_all()


def run(candidate: Candidate, port: int, args: argparse.Namespace) -> Result:
    folder = bench_root() / candidate.name
    package = install(candidate, folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    store = Store(candidate, package, port, folder / "store.log")
    store.log_path.write_bytes(b"")
    result = Result()
    try:
        durability(store, data / "durability", result)
        latency(store, data / "latency", result, args)
    finally:
        store.stop_all()
        shutil.rmtree(data, ignore_errors=True)
    return result


def summary(name: str, r: Result, args: argparse.Namespace) -> None:
    empty, held = r.timings["empty"], r.timings["held"]
    print(f"\n{name}")
    print(
        f"  durability: acked {r.acked}, readable after kill -9 + restart {r.readable}, stream survived "
        f"{'yes' if r.survived else 'NO'}, endpoint answered after {r.restart_seconds:.2f} s"
    )
    print(
        f"  fill: {r.held:,} held after {r.fill_seconds:.1f} s"
        + (f" (the {args.fill_limit_seconds:.0f} s limit stopped it)" if r.fill_limited else "")
    )
    for operation in ("put", "get-trim", "get-tip"):
        base = empty["put" if operation == "put" else "get-trim"]
        t = held[operation]
        print(
            f"  {operation:8}: p50 {base['p50']:.1f} -> {t['p50']:.1f} ms (x{r.ratio(operation):.2f}), "
            f"p95 {base['p95']:.1f} -> {t['p95']:.1f} ms (x{r.ratio(operation, 'p95'):.2f}), "
            f"CPU/call {base['cpu']:.1f} -> {t['cpu']:.1f} ms"
        )
    print(
        f"  RSS empty {r.rss_empty:.0f} MB, held {r.rss_held:.0f} MB; idle CPU {r.idle_cpu:.1f} s over "
        f"{args.idle_seconds:.0f} s held"
    )


def verdict(name: str, r: Result, args: argparse.Namespace) -> str:
    worst = max(r.ratio(op) for op in ("put", "get-trim", "get-tip"))
    if r.held < GOAL_HELD:
        latency_text = f"not judged ({r.held:,} held, the goal is {GOAL_HELD:,}; worst p50 ratio x{worst:.2f})"
    else:
        latency_text = f"{'met' if r.latency_ok(GOAL_HELD) else 'NOT met'} (worst p50 ratio x{worst:.2f})"
    durability_text = f"{'met' if r.durable() else 'NOT met'} ({r.readable}/{r.acked} readable after kill -9)"
    return f"VERDICT {name}: latency goal {latency_text}; durability goal {durability_text}"


def record(name: str, r: Result, args: argparse.Namespace) -> None:
    title = "## Kinesis store candidates (`python scripts/bench/bench_kinesis_store.py`)"
    header = (
        "Each Kinesis store candidate run standalone (kinesis-mock = npm `kinesis-local`, snapshot every 30 s;\n"
        "kinesalite on LevelDB). Goals: put and get latency with 100,000 records held per shard within 1.5x of an empty\n"
        "stream; every acknowledged record survives kill -9 of the store. Durability: 500 records acknowledged by one\n"
        "PutRecords, kill -9, restart: readable/acked, stream survived, seconds until the endpoint answers. Latency:\n"
        "p50 (held/empty ratio) of PutRecords of 10 records and GetRecords of 100 (from the trim horizon; held also\n"
        "near the tip), store CPU per PutRecords; held = records in the 1-shard stream after the fill (in the fill time\n"
        "shown, or what the fill limit allowed). Idle CPU: the store's CPU seconds while idle, holding the records.\n\n"
        "| date | machine | candidate | durability | restart | held (fill) | put p50 | get p50 trim / tip "
        "| CPU per put | RSS | idle CPU | goals: latency, durability |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    empty, held = r.timings["empty"], r.timings["held"]
    latency_goal = "n/a" if r.held < GOAL_HELD else ("yes" if r.latency_ok(GOAL_HELD) else "NO")
    line = (
        f"| {time.strftime('%Y-%m-%d %H:%M')} | {machine()} | {name} | {r.readable}/{r.acked}, stream "
        f"{'kept' if r.survived else 'LOST'} | {r.restart_seconds:.1f} s | {r.held:,} ({r.fill_seconds:.0f} s) | "
        f"{empty['put']['p50']:.1f} -> {held['put']['p50']:.1f} ms (x{r.ratio('put'):.2f}) | "
        f"{empty['get-trim']['p50']:.1f} -> {held['get-trim']['p50']:.1f} / {held['get-tip']['p50']:.1f} ms "
        f"(x{r.ratio('get-trim'):.2f} / x{r.ratio('get-tip'):.2f}) | "
        f"{empty['put']['cpu']:.1f} -> {held['put']['cpu']:.1f} ms | "
        f"{r.rss_empty:.0f} -> {r.rss_held:.0f} MB | {r.idle_cpu:.1f} s / {args.idle_seconds:.0f} s | "
        f"{latency_goal}, {'yes' if r.durable() else 'NO'} |"
    )
    record_row(title, header, line)


def main() -> None:
    names = [candidate.name for candidate in CANDIDATES]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", choices=names, default=names)
    parser.add_argument("--held", type=int, default=GOAL_HELD, help="records to hold in the shard")
    parser.add_argument("--fill-limit-seconds", type=float, default=600)
    parser.add_argument("--calls", type=int, default=200, help="calls per measured operation")
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--base-port", type=int, default=14500, help="candidate i listens on base + 2i (and +1)")
    parser.add_argument("--no-record", action="store_true", help="do not append to docs/BENCHMARKS.md")
    args = parser.parse_args()
    if args.calls < 2:
        parser.error("--calls must be at least 2")

    results: dict[str, Result] = {}
    failed: list[str] = []
    for candidate in CANDIDATES:
        if candidate.name not in args.candidates:
            continue
        log(f"=== {candidate.name}")
        try:
            results[candidate.name] = run(candidate, args.base_port + 2 * CANDIDATES.index(candidate), args)
        except Exception as error:
            log(f"{candidate.name}: FAILED: {error!r}")
            failed.append(candidate.name)
    for name, result in results.items():
        summary(name, result, args)
    print()
    for name, result in results.items():
        print(verdict(name, result, args))
        if not args.no_record:
            record(name, result, args)
    for name in failed:
        print(f"VERDICT {name}: the run failed (see the log above)")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
