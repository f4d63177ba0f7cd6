"""What the console reads from the running stack: each source incremental, or behind a short-lived cache.

A page that refreshes every second must not load the stack it shows (docs/design/console.md measures what it
costs). So every source is read at most once per its time-to-live whatever the number of open pages (`Memo`, one
lock each), and the sources that grow are read incrementally, never in full:
- the emulator's ledger: each run's summary, rewritten by the emulator every second, or, for a run whose summary is
  stale, its lines from the byte where the previous read stopped (`LedgerCounts`);
- the bucket: per topic partition, `ListObjectsV2` with `StartAfter` = the newest key already seen (the sink's keys
  hold zero-padded start offsets, so new objects sort after it), and only the newest object is read, for its line
  count (`SinkProgress`);
- Kinesis: per shard, `GetRecords` from where the previous read stopped: a reader of its own that only counts
  (`KinesisCounts`); Kinesis has no "records in stream" call;
- Delta tables: delta-rs reads only the new commits (`update_incremental`); rows come from the add actions'
  statistics, not from the data files (`DeltaTables`).
Browsing (a topic's messages, a Delta table's newest rows) reads on demand, bounded by a row limit.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import boto3
import botocore.session
import orjson
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.utils import parse_timestamp

from emulator import ledger as ledger_module
from pipeline import layout
from pipeline.settings import TABLES, Settings

T = TypeVar("T")
S3_CONFIG = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})
KINESIS_CALLS_PER_SHARD = 3  # GetRecords calls per shard per refresh (AWS allows 5 per second per shard)
LATENCY_SAMPLES = 500
WAIT_S = 3.0  # longest a request waits for one source's refresh
# Refreshes run here, so a request never blocks longer than WAIT_S on a source (and several run side by side).
SOURCE_THREADS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="console-source")


class Memo(Generic[T]):
    """`compute()` at most once per `ttl` seconds, in the background; callers in between get the kept value.

    A caller waits at most `wait` seconds for a refresh: a source that answers slowly (a broker that was just
    killed, an S3 store under load) then shows its last value and says it is still being read, so no page and no
    `/api/flow` request hangs on it. A failure keeps the last good value and reports the error next to it, so a
    stopped service shows as an error, not as zeros."""

    def __init__(self, ttl: float, compute: Callable[[], T], wait: float = WAIT_S) -> None:
        self.ttl, self.wait, self._compute = ttl, wait, compute
        self._lock = threading.Lock()
        self._at: float | None = None
        self._value: T | None = None
        self._error: str | None = None
        self._running: Future | None = None

    def start(self) -> Future | None:
        """Start a refresh if the value is stale and none runs; returns the refresh under way, if any."""
        with self._lock:
            stale = self._at is None or time.monotonic() - self._at >= self.ttl
            if stale and self._running is None:
                self._running = SOURCE_THREADS.submit(self._refresh)
            return self._running

    def _refresh(self) -> None:
        value, error = None, None
        try:
            value = self._compute()
        except Exception as failure:  # shown on the page next to the stage it concerns
            error = f"{type(failure).__name__}: {failure}"
        with self._lock:
            if error is None:
                self._value = value
            self._error, self._at, self._running = error, time.monotonic(), None

    def get(self) -> tuple[T | None, str | None]:
        running = self.start()
        if running is not None:
            try:
                running.result(timeout=self.wait)
            except TimeoutError:
                with self._lock:
                    note = f"still reading after {self.wait:.0f} s (the source answers slowly); showing the last value"
                    return self._value, note + (f"; last error: {self._error}" if self._error else "")
        with self._lock:
            return self._value, self._error


MISSING_CODES = ("404", "NoSuchKey", "NotFound")  # GetObject says NoSuchKey, HeadObject only 404


def is_missing(error: ClientError, also: tuple[str, ...] = ()) -> bool:
    """Whether S3 answered that the object is not there (or one of the error codes `also`)."""
    return error.response.get("Error", {}).get("Code") in (*MISSING_CODES, *also)


_S3_CLIENTS: dict[tuple, Any] = {}
_S3_CLIENTS_LOCK = threading.Lock()


def s3_client(settings: Settings):
    """One S3 client per endpoint and credentials, kept for the process (botocore's clients are thread-safe): making
    one builds the service model's classes, and one per refresh was 8 % of the console's CPU on an idle stack."""
    kwargs = settings.boto3_client_kwargs("s3")
    key = tuple(sorted(kwargs.items()))
    with _S3_CLIENTS_LOCK:
        client = _S3_CLIENTS.get(key)
        if client is None:
            client = _S3_CLIENTS[key] = boto3.client("s3", config=S3_CONFIG, **kwargs)
        return client


# --- the emulator's ledger --------------------------------------------------------------------------------------
SUMMARY_STALE_S = 5.0  # a running emulator rewrites its summary every second; older than this, its run has stopped


@dataclass
class RunCounts:
    """One run's counts per (path, via, table, outcome), latest latencies per path, newest entry's time per path, and
    its unreadable lines; `offset` is how far its lines were parsed."""

    counts: Counter = field(default_factory=Counter)
    latencies: dict[str, deque] = field(default_factory=lambda: defaultdict(lambda: deque(maxlen=LATENCY_SAMPLES)))
    last_at: dict[str, float] = field(default_factory=dict)
    unreadable: int = 0
    offset: int = 0


@dataclass
class LedgerCounts:
    """Outcome counts per (path, via, table, outcome) and recent latencies per path, of every run in the ledger.

    A run's counts come from the summary its emulator rewrites every second (emulator/ledger.py), so a busy
    emulator costs the console one small file a run, not a parse of every line. A run whose summary is stale (the
    emulator was killed between two summaries) or missing is counted from its JSON lines instead, each file read
    from where the previous refresh stopped (a torn last line waits for its end), so the counts still match
    `make verify`."""

    folder: Path
    # Only entries for these topics and streams: the ledger folder may hold runs of other user ids (the tests').
    destinations: frozenset[str] | None = None
    counts: Counter = field(default_factory=Counter)
    latencies: dict[str, deque] = field(default_factory=lambda: defaultdict(lambda: deque(maxlen=LATENCY_SAMPLES)))
    last_at: dict[str, float] = field(default_factory=dict)
    unreadable: int = 0
    # False: every run from its lines (the way before the summaries; the baseline of bench_ledger_counts.py).
    use_summaries: bool = True
    runs_from_summary: int = 0
    _parsed: dict[str, RunCounts] = field(default_factory=dict)
    # Closed runs (a complete summary covering the whole file): counted once, not read again while the file stays.
    _closed: dict[str, tuple[int, RunCounts]] = field(default_factory=dict)

    def refresh(self) -> LedgerCounts:
        files = {file.name: file for file in sorted(self.folder.glob("*.jsonl"))} if self.folder.is_dir() else {}
        for cache in (self._parsed, self._closed):
            for gone in set(cache) - set(files):  # `make clean` deleted the run
                del cache[gone]
        now = time.time()
        runs: list[RunCounts] = []
        self.runs_from_summary = 0
        for name, file in files.items():
            run = self._from_summary(file, now) if self.use_summaries else None
            if run is None:
                run = self._parse_new_lines(file, self._parsed.setdefault(name, RunCounts()))
            else:
                self.runs_from_summary += 1
            runs.append(run)
        self.counts, self.last_at, self.unreadable = Counter(), {}, 0
        self.latencies = defaultdict(lambda: deque(maxlen=LATENCY_SAMPLES))
        for run in sorted(runs, key=lambda run: max(run.last_at.values(), default=0.0)):  # newest latencies last
            self.counts.update(run.counts)
            self.unreadable += run.unreadable
            for path, values in run.latencies.items():
                self.latencies[path].extend(values)
            for path, at in run.last_at.items():
                self.last_at[path] = max(self.last_at.get(path, 0.0), at)
        return self

    def _from_summary(self, file: Path, now: float) -> RunCounts | None:
        """The run's counts from its summary, if the summary is fresh or covers the whole closed file."""
        try:
            size = file.stat().st_size
            closed = self._closed.get(file.name)
            if closed is not None and closed[0] == size:
                return closed[1]
            summary = orjson.loads(ledger_module.summary_path(file).read_bytes())
            fresh = now - float(summary["written_at"]) < SUMMARY_STALE_S
            whole = bool(summary["complete"]) and int(summary["bytes"]) == size
            if not (fresh or whole):
                return None
            run, path, via = RunCounts(), str(summary["path"]), str(summary["via"])
            for table, destination, outcome, n in summary["counts"]:
                if self.destinations is None or destination in self.destinations:
                    run.counts[(path, via, table, outcome)] += int(n)
            if run.counts:
                run.latencies[path].extend(float(ms) for ms in summary["ms"])
                run.last_at[path] = float(summary["last_at"])
            if whole:
                self._closed[file.name] = (size, run)
            return run
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None  # none yet, unreadable, or of another shape: the lines say the same

    @staticmethod
    def _read_new_lines(file: Path, offset: int) -> tuple[bytes, int] | None:
        """The complete lines after `offset` and the offset after them, or None when no new line is complete."""
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            return None
        if size <= offset:
            return None
        with file.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read(size - offset)
        complete, newline, _ = chunk.rpartition(b"\n")
        if not newline:
            return None
        return complete, offset + len(complete) + 1

    def _parse_new_lines(self, file: Path, run: RunCounts) -> RunCounts:
        read = self._read_new_lines(file, run.offset)
        if read is not None:
            complete, run.offset = read
            for line in complete.split(b"\n"):
                self._add(run, line)
        return run

    def _add(self, run: RunCounts, line: bytes) -> None:
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            run.unreadable += 1
            return
        if not isinstance(entry, dict) or "outcome" not in entry:
            return  # a run's start line
        if self.destinations is not None and entry.get("destination") not in self.destinations:
            return
        path = entry.get("path", "?")
        run.counts[(path, entry.get("via", "?"), entry.get("table", "?"), entry["outcome"])] += 1
        if entry.get("ms") is not None:
            run.latencies[path].append(float(entry["ms"]))
        run.last_at[path] = max(run.last_at.get(path, 0.0), float(entry.get("at", 0.0)))

    def total(self, path: str, outcome: str, via: str | None = None, table: str | None = None) -> int:
        return sum(
            n
            for (p, v, t, o), n in self.counts.items()
            if p == path and o == outcome and (via is None or v == via) and (table is None or t == table)
        )


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ledger_entries(
    folder: Path, row: int, run: str | None = None, destinations: frozenset[str] | None = None
) -> list[dict[str, Any]]:
    """Every ledger entry of source row `row` (any table), oldest run first: the start of a trace. Reads the files
    on demand (a trace is a user's click, not a refresh); a line is parsed only when it names the row."""
    needle = f'"row": {row},'.encode()
    found = []
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    for file in files:
        if run and file.stem != run:
            continue
        with file.open("rb") as handle:
            for line in handle:
                if needle in line:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if entry.get("row") == row and (destinations is None or entry.get("destination") in destinations):
                        found.append(entry)
    return found


# --- Kafka ------------------------------------------------------------------------------------------------------
class KafkaOffsets:
    """End offsets per partition of the pipeline's topics, with one kept consumer (no group, nothing committed)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer = None

    def _client(self):
        from kafka import KafkaConsumer

        from pipeline.kafka_clients import kafka_python_config

        if self._consumer is None:
            config = kafka_python_config(self.settings, "console") | {"request_timeout_ms": 5000}
            self._consumer = KafkaConsumer(**config, enable_auto_commit=False)
        return self._consumer

    def read(self) -> dict[str, dict[int, int]]:
        from kafka import TopicPartition

        try:
            consumer = self._client()
            ends: dict[str, dict[int, int]] = {}
            for table in TABLES:
                topic = self.settings.topic(table)
                partitions = consumer.partitions_for_topic(topic) or set()
                found = consumer.end_offsets([TopicPartition(topic, p) for p in partitions]) if partitions else {}
                ends[topic] = {tp.partition: offset for tp, offset in found.items()}
            return ends
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def recent_messages(settings: Settings, topic: str, limit: int = 20, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The newest `limit` messages of each partition of `topic`, newest first: partition, offset, time, key, value."""
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.kafka_clients import kafka_python_config

    config = kafka_python_config(settings, "console-browse") | {"request_timeout_ms": 5000}
    consumer = KafkaConsumer(**config, enable_auto_commit=False, consumer_timeout_ms=int(timeout * 1000))
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        ends, begins = consumer.end_offsets(partitions), consumer.beginning_offsets(partitions)
        wanted = {tp for tp in partitions if ends[tp] > begins[tp]}
        for tp in partitions:
            consumer.seek(tp, max(begins[tp], ends[tp] - limit))
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while wanted and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    messages.append(
                        {
                            "partition": record.partition,
                            "offset": record.offset,
                            "timestamp": record.timestamp,
                            "key": _text(record.key),
                            "value": _text(record.value),
                        }
                    )
                if consumer.position(tp) >= ends[tp]:
                    wanted.discard(tp)
        return sorted(messages, key=lambda m: (m["timestamp"] or 0, m["offset"]), reverse=True)
    finally:
        consumer.close()


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")


# --- the bucket: the sink's objects -----------------------------------------------------------------------------
@dataclass
class PartitionObjects:
    """One topic partition's sink objects as (start offset, key), in key order, and the newest object's lines."""

    starts: list[tuple[int, str]] = field(default_factory=list)
    newest_lines: int = 0
    newest_modified: float | None = None
    objects: int = 0
    bytes: int = 0

    @property
    def landed(self) -> int:
        """The offset after the newest object's last record: every offset below it is in the bucket."""
        return self.starts[-1][0] + self.newest_lines if self.starts else 0

    def object_at(self, offset: int) -> tuple[str, int] | None:
        """(key, line number from 0) of the object holding `offset`, if the bucket has it."""
        holder = None
        for start, key in self.starts:
            if start > offset:
                break
            holder = (key, offset - start)
        return None if holder is None or offset >= self.landed else holder


class SinkProgress:
    """Per topic partition, what the S3 sink has written: new keys listed after the newest seen, one read each.

    A partition whose objects already reach its Kafka end offset has nothing new to land (the sink writes each object
    once), so it is not listed again until the topic grows: an idle or caught-up pipeline costs no S3 call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.partitions: dict[tuple[str, int], PartitionObjects] = {}
        self._lock = threading.Lock()

    def refresh(self, partitions: dict[str, dict[int, int]]) -> dict[tuple[str, int], PartitionObjects]:
        client = s3_client(self.settings)
        with self._lock:
            for topic, ends in partitions.items():
                for partition, end in ends.items():
                    known = self.partitions.setdefault((topic, partition), PartitionObjects())
                    if known.landed > end:  # the topic was recreated (`make clean`): its objects start again
                        known = self.partitions[(topic, partition)] = PartitionObjects()
                    if known.landed < end:
                        self._list_new(client, topic, partition, known)
            return dict(self.partitions)

    def _list_new(self, client, topic: str, partition: int, known: PartitionObjects) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.settings.bucket, "Prefix": layout.partition_prefix(topic, partition)}
        if known.starts:
            kwargs["StartAfter"] = known.starts[-1][1]
        newest = None
        for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
            for item in page.get("Contents", []):
                parsed = layout.parse_object_key(item["Key"])
                if parsed is None or parsed[0] != topic:
                    continue
                known.starts.append((parsed[2], item["Key"]))
                known.objects += 1
                known.bytes += item.get("Size", 0)
                newest = item
        if newest is not None:
            body = client.get_object(Bucket=self.settings.bucket, Key=newest["Key"])["Body"].read()
            known.newest_lines = layout.count_lines(body)
            known.newest_modified = newest["LastModified"].timestamp()


def read_object(settings: Settings, key: str, limit: int = 1_000_000) -> tuple[bytes, int]:
    """(up to `limit` bytes of the object, its full size)."""
    client = s3_client(settings)
    answer = client.get_object(Bucket=settings.bucket, Key=key, Range=f"bytes=0-{limit - 1}")
    size = int(answer.get("ContentRange", "/0").rpartition("/")[2] or answer["ContentLength"])
    return answer["Body"].read(), size


def list_objects(settings: Settings, prefix: str, token: str | None = None, limit: int = 200) -> dict[str, Any]:
    """One page of the bucket under `prefix`: folders (common prefixes) and objects, and the next page's token."""
    client = s3_client(settings)
    kwargs: dict[str, Any] = {"Bucket": settings.bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": limit}
    if token:
        kwargs["ContinuationToken"] = token
    page = client.list_objects_v2(**kwargs)
    return {
        "folders": [p["Prefix"] for p in page.get("CommonPrefixes", [])],
        "objects": [
            {"key": o["Key"], "size": o["Size"], "modified": o["LastModified"].isoformat()}
            for o in page.get("Contents", [])
        ],
        "next": page.get("NextContinuationToken"),
    }


def parquet_tables(settings: Settings, prefix: str) -> Iterator[Any]:
    """Each Parquet file under `prefix` as a pyarrow table (the batch job's results, quarantine and cleaned tables:
    a few small files each)."""
    import io

    import pyarrow.parquet as pq

    client = s3_client(settings)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".parquet"):
                data = client.get_object(Bucket=settings.bucket, Key=item["Key"])["Body"].read()
                yield pq.read_table(io.BytesIO(data))


def read_parquet_prefix(settings: Settings, prefix: str, limit: int = 200) -> tuple[list[str], list[dict], int]:
    """(columns, up to `limit` rows, total rows) of the Parquet files under `prefix`."""
    columns: list[str] = []
    rows: list[dict] = []
    total = 0
    for table in parquet_tables(settings, prefix):
        columns = columns or table.column_names
        total += table.num_rows
        if len(rows) < limit:
            rows += table.slice(0, limit - len(rows)).to_pylist()
    return columns, rows, total


# --- Kinesis ----------------------------------------------------------------------------------------------------
@dataclass
class ShardReader:
    iterator: str | None = None
    last_sequence: str | None = None
    records: int = 0
    last_arrival: float | None = None
    closed: bool = False


class KinesisCounts:
    """Records per stream, counted by reading each shard from where the previous refresh stopped.

    A stream's shard list is kept for `SHARDS_TTL_S` and listed again sooner when one of its shards closes (a
    reshard) or the stream is gone (`make clean`)."""

    SHARDS_TTL_S = 30.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.shards: dict[tuple[str, str], ShardReader] = {}
        self._shard_ids: dict[str, tuple[float, list[str]]] = {}  # stream -> (time.monotonic() listed, shard ids)
        self._lock = threading.Lock()
        self._client = None

    def _kinesis(self):
        """A client of its own botocore session that parses only what counting needs. The console reads every
        record put to the streams, and botocore's parsing was most of its CPU under a stream burst (33 us a record
        on this 2-core AMD EPYC; 4.3 us this way, `docs/design/console.md`): its model's `Record` keeps only the
        sequence number and the arrival time (the data, partition key and encryption type are not parsed at all),
        and timestamps stay epoch seconds instead of datetimes in the local time zone through dateutil's
        `tzlocal`. The model is trimmed in the session's loader, which keeps each model it loaded and hands the
        same one to the client made next; the session is the console's own, so no other client sees the change
        (a unit test checks both)."""
        if self._client is None:
            core = botocore.session.get_session()
            _records_for_counting(
                core.get_component("data_loader").load_service_model("kinesis", "service-2", api_version=None)
            )
            core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_epoch_seconds)
            config = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1, "mode": "standard"})
            self._client = boto3.session.Session(botocore_session=core).client(
                "kinesis", config=config, **self.settings.boto3_client_kwargs("kinesis")
            )
        return self._client

    def refresh(self) -> dict[str, dict[str, Any]]:
        client = self._kinesis()
        with self._lock:
            streams: dict[str, dict[str, Any]] = {}
            for table in TABLES:
                stream = self.settings.stream(table)
                try:
                    shard_ids = self._list_shards(client, stream)
                    readers = [self._read_shard(client, stream, shard_id) for shard_id in shard_ids]
                except client.exceptions.ResourceNotFoundException:
                    self._forget(stream)
                    streams[stream] = {"exists": False, "records": 0, "shards": 0, "last_arrival": None}
                    continue
                arrivals = [r.last_arrival for r in readers if r.last_arrival]
                streams[stream] = {
                    "exists": True,
                    "records": sum(r.records for r in readers),
                    "shards": len(shard_ids),
                    "last_arrival": max(arrivals) if arrivals else None,
                }
            return streams

    def _list_shards(self, client, stream: str) -> list[str]:
        listed = self._shard_ids.get(stream)
        if listed is None or time.monotonic() - listed[0] >= self.SHARDS_TTL_S:
            listed = self._shard_ids[stream] = (
                time.monotonic(),
                [s["ShardId"] for s in client.list_shards(StreamName=stream)["Shards"]],
            )
        return listed[1]

    def _forget(self, stream: str) -> None:
        self._shard_ids.pop(stream, None)
        for key in [key for key in self.shards if key[0] == stream]:
            del self.shards[key]

    def _read_shard(self, client, stream: str, shard_id: str) -> ShardReader:
        reader = self.shards.setdefault((stream, shard_id), ShardReader())
        for _ in range(KINESIS_CALLS_PER_SHARD):
            if reader.closed:
                break
            if reader.iterator is None:
                kwargs: dict[str, Any] = {"StreamName": stream, "ShardId": shard_id}
                if reader.last_sequence:
                    kwargs |= {
                        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                        "StartingSequenceNumber": reader.last_sequence,
                    }
                else:
                    kwargs["ShardIteratorType"] = "TRIM_HORIZON"
                reader.iterator = client.get_shard_iterator(**kwargs)["ShardIterator"]
            try:
                answer = client.get_records(ShardIterator=reader.iterator, Limit=10_000)
            except client.exceptions.ExpiredIteratorException:
                reader.iterator = None
                continue
            records = answer.get("Records", [])
            if records:
                reader.records += len(records)
                reader.last_sequence = records[-1]["SequenceNumber"]
                reader.last_arrival = records[-1]["ApproximateArrivalTimestamp"]  # epoch seconds (_epoch_seconds)
            reader.iterator = answer.get("NextShardIterator")
            reader.closed = reader.iterator is None
            if reader.closed:  # a reshard closed it: the stream's shard list, with its children, is read next time
                self._shard_ids.pop(stream, None)
            if not records or not answer.get("MillisBehindLatest"):
                break
        return reader


COUNTED_RECORD_FIELDS = ("SequenceNumber", "ApproximateArrivalTimestamp")


def _records_for_counting(service_data: dict[str, Any]) -> None:
    record = service_data["shapes"]["Record"]
    record["members"] = {name: record["members"][name] for name in COUNTED_RECORD_FIELDS}
    record["required"] = ["SequenceNumber"]


def _epoch_seconds(value: Any) -> float:
    """A timestamp in a response as seconds since the epoch: Kinesis's JSON answers carry them as numbers already."""
    if isinstance(value, int | float):
        return float(value)
    return parse_timestamp(value).timestamp()


# --- Delta tables -----------------------------------------------------------------------------------------------
class DeltaTables:
    """The streaming job's Delta tables, each opened once and then brought up to date with only its new commits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tables: dict[str, Any] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return [*self.settings.delta_tables, self.settings.stream_quarantine_table]

    def table(self, name: str):
        """The table, up to date, or None when the streaming job has not created it yet."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        from services.audit.ledger_audit import delta_storage

        with self._lock:
            table = self._tables.get(name)
            if table is None:
                warehouse_path = layout.table_path(self.settings.warehouse_uri, name)
                if not self._has_log(warehouse_path):
                    return None
                uri, options = delta_storage(self.settings, warehouse_path)
                try:
                    table = self._tables[name] = DeltaTable(uri, storage_options=options)
                except TableNotFoundError:
                    return None
            else:
                try:
                    table.update_incremental()
                except TableNotFoundError:  # deleted (`make clean`)
                    del self._tables[name]
                    return None
            return table

    def _has_log(self, path: str) -> bool:
        """Whether the table has a `_delta_log/` yet. Asked before opening it: delta-rs builds a new object store
        client for each table it opens, which costs more CPU than this one listing with the kept S3 client."""
        if not path.startswith("s3a://"):
            return (Path(path.removeprefix("file://")) / "_delta_log").is_dir()
        bucket, _, key = path.removeprefix("s3a://").partition("/")
        client = s3_client(self.settings)
        return client.list_objects_v2(Bucket=bucket, Prefix=f"{key}/_delta_log/", MaxKeys=1).get("KeyCount", 0) > 0

    def summary(self) -> dict[str, dict[str, Any]]:
        import pyarrow as pa

        tables: dict[str, dict[str, Any]] = {}
        for name in self.names():
            table = self.table(name)
            if table is None:
                tables[name] = {"exists": False, "rows": 0, "version": None, "last_write": None}
                continue
            actions = pa.table(table.get_add_actions(flatten=True))
            modified = [_epoch(t) for t in actions.column("modification_time").to_pylist() if t is not None]
            tables[name] = {
                "exists": True,
                "rows": sum(n or 0 for n in actions.column("num_records").to_pylist()),
                "version": table.version(),
                "files": actions.num_rows,
                "last_write": max(modified) if modified else None,
            }
        return tables

    def query(self, name: str, sql: str) -> list[dict[str, Any]]:
        """Rows of `sql` over table `name` (registered as `t`), with delta-rs's query engine (DataFusion)."""
        import pyarrow as pa
        from deltalake import QueryBuilder

        table = self.table(name)
        if table is None:
            return []
        return pa.table(QueryBuilder().register("t", table).execute(sql)).to_pylist()


def _epoch(value: Any) -> float:
    """A Delta add action's modification time: milliseconds since the epoch, or a datetime (delta-rs versions)."""
    return value.timestamp() if hasattr(value, "timestamp") else float(value) / 1000


# --- the streaming job and the batch job ------------------------------------------------------------------------
def stream_status(settings: Settings) -> dict[str, Any] | None:
    try:
        return json.loads(settings.stream_status_file.read_text())
    except (OSError, ValueError):
        return None


def report_object(settings: Settings) -> dict[str, Any] | None:
    """The batch report's object (key, ETag, time), or None before the first batch run."""
    key = layout.report_path(layout.RESULTS_DIR)
    try:
        head = s3_client(settings).head_object(Bucket=settings.bucket, Key=key)
    except ClientError as error:
        if is_missing(error):
            return None
        raise
    return {"key": key, "etag": head["ETag"], "modified": head["LastModified"].timestamp()}


def last_batch_run(settings: Settings) -> dict[str, Any] | None:
    """The newest batch run's history record (`<results>/history/<run id>.json`; run ids sort by time)."""
    from pipeline.run_history import parse_run_record

    client = s3_client(settings)
    prefix = layout.history_prefix(layout.RESULTS_DIR) + "/"
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if item["Key"].endswith(layout.HISTORY_SUFFIX)
    ]
    if not keys:
        return None
    body = client.get_object(Bucket=settings.bucket, Key=max(keys))["Body"].read()
    return parse_run_record(body.decode("utf-8", errors="replace"), max(keys))


def quarantine_summary(settings: Settings) -> dict[str, Any] | None:
    """The last batch run's quarantine by table and reason (`<results>/quarantine_summary.json`), if any."""
    from pipeline.run_history import parse_quarantine_summary

    key = layout.quarantine_summary_path(layout.RESULTS_DIR)
    try:
        body = s3_client(settings).get_object(Bucket=settings.bucket, Key=key)["Body"].read()
    except ClientError as error:
        if is_missing(error):
            return None
        raise
    return parse_quarantine_summary(body.decode("utf-8", errors="replace"), key)
