"""A Kinesis streaming source for Spark Structured Streaming, written with Spark's Python Data Source API.

Why hand-written: open-source Spark has no Kinesis source for Structured Streaming, and no maintained one is on
Maven Central or PyPI (Databricks' is proprietary; the old `spark-streaming-kinesis-asl` is DStreams only). This
one is registered as `kinesis` with Databricks' option names and output columns, so the streaming job reads
Kinesis the same way here and on Databricks:

    spark.dataSource.register(KinesisDataSource)
    spark.readStream.format("kinesis").option("streamName", "streaming-<id>-pin")
         .option("initialPosition", "earliest").load()

Columns: `partitionKey string, data binary, stream string, shardId string, sequenceNumber string,
approximateArrivalTimestamp timestamp`.

Options: `streamName` (required), `region`, `endpointUrl`, `awsAccessKey`/`awsSecretKey` (default: from
pipeline.settings when importable, else boto3's chain), `initialPosition` = `earliest` (alias `trim_horizon`) |
`latest` | `at_timestamp` with `timestamp` (ISO 8601 or epoch seconds), `maxRecordsPerFetch` (GetRecords limit,
default 10000), `maxRecordsPerShardPerBatch` (default 20000), `minFetchPeriod` (ms between GetRecords calls on one
shard while it has more, default 200: Kinesis allows 5 per second per shard), `pollInterval` (ms between
GetRecords calls on a shard that is caught up, default 500; twice that after a call that found nothing),
`shardListInterval` (ms between ListShards calls, default 10000; a shard that ends triggers one at once),
`prefetch` (default true; false: `latestOffset` fetches itself, for at most `maxFetchDuration` ms, default 2000).

Prefetching: like Databricks' source, the driver fetches ahead in a background thread, so a trigger only takes
the records already fetched and does not wait for Kinesis. Measured on 2 cores at 100 records/s: `latestOffset`
took 1-6 s per trigger when it fetched itself (GetRecords against LocalStack took 0.5-1 s under load), 10 ms
with the thread. The thread stops fetching a shard while a full batch (`maxRecordsPerShardPerBatch`) of its records
waits to be planned, so the buffer stays bounded; a fetch error fails the next `latestOffset`, and so the query.

How offsets work (exactly-once needs every batch to be re-readable with the same content):
- An offset is a JSON dict `{shardId: {"seq": last sequence number taken or null, "start": where the shard's
  reading began ("TRIM_HORIZON" or "AT_TIMESTAMP:<epoch ms>"), "ended": the shard is closed and read to its end}}`;
  Spark writes it to the checkpoint's offset log before a batch runs. Every bound is a concrete position: `latest`
  is resolved once, at the query's first start, into `AT_TIMESTAMP:<now>`, so a replayed batch never depends on
  when it is replayed.
- The driver fetches from the last position, at most `minFetchPeriod` apart per shard, backing off on
  ProvisionedThroughputExceededException, and keeps the fetched records; `latestOffset` takes up to
  `maxRecordsPerShardPerBatch` of them per shard (`take`), and `partitions(start, end)` makes one partition per
  shard that moved and hands it those records, so each record is fetched once in normal running.
  A partition whose records are not in the driver's buffer (a batch replayed after a restart) is read by the
  executor from Kinesis: AFTER_SEQUENCE_NUMBER start (or TRIM_HORIZON / AT_TIMESTAMP), up to the end sequence
  number only, so the replay holds exactly the records of the original batch.
- Resharding: shards are listed every `shardListInterval` and right after a shard ended (Kinesis adds shards only
  by splitting or merging, which closes their parents); a new shard joins the offset at TRIM_HORIZON, and a child
  shard is read only once each parent is closed and read to its end, which keeps per-key order across a split or
  merge. An ended shard that Kinesis no longer lists (past retention) leaves the offset at the next listing.
- On restart Spark calls `partitions(last, last)` with the last offset of its log (AcceptsLatestSeenOffset); that
  is where fetching resumes.

The offset arithmetic is pure functions over plain dicts (below), tested without Spark or Kinesis.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.types import StructType

SOURCE_NAME = "kinesis"
SCHEMA = (
    "partitionKey string, data binary, stream string, shardId string, sequenceNumber string, "
    "approximateArrivalTimestamp timestamp"
)
TRIM_HORIZON = "TRIM_HORIZON"
AT_TIMESTAMP = "AT_TIMESTAMP:"
INITIAL_POSITIONS = ("earliest", "trim_horizon", "latest", "at_timestamp")
THROTTLING_ERRORS = ("ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException")
MAX_BACKOFF_SECONDS = 5.0
CAUGHT_UP_MILLIS = 1000

Offset = dict[str, dict[str, Any]]
Row = tuple[str, bytes, str, str, str, datetime]


# --- pure offset logic ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    """What ListShards says about one shard: its id, its parents, and whether it is closed (has an end)."""

    shard_id: str
    parents: tuple[str, ...] = ()
    closed: bool = False

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> Shard:
        parents = tuple(p for p in (item.get("ParentShardId"), item.get("AdjacentParentShardId")) if p)
        closed = bool(item.get("SequenceNumberRange", {}).get("EndingSequenceNumber"))
        return cls(item["ShardId"], parents, closed)


def shard_state(start: str, seq: str | None = None, ended: bool = False) -> dict[str, Any]:
    return {"seq": seq, "start": start, "ended": ended}


def seq_number(seq: str) -> int:
    """Kinesis sequence numbers are decimal strings of up to 128 bits; compare them as integers."""
    return int(seq)


def resolve_start(position: str, timestamp_ms: int | None, now_ms: int) -> str:
    """The start marker for a shard that exists when the query starts first."""
    position = position.lower()
    if position in ("earliest", "trim_horizon"):
        return TRIM_HORIZON
    if position == "latest":
        return f"{AT_TIMESTAMP}{now_ms}"
    if position == "at_timestamp":
        if timestamp_ms is None:
            raise ValueError("initialPosition at_timestamp needs the `timestamp` option")
        return f"{AT_TIMESTAMP}{timestamp_ms}"
    raise ValueError(f"initialPosition must be one of {', '.join(INITIAL_POSITIONS)}, got {position!r}")


def initial_offset(shards: Sequence[Shard], start: str) -> Offset:
    """Every listed shard starts at `start`. With a timestamp start, a shard closed before the query began has
    nothing newer for `latest`; it is still read from the timestamp on, which is what at_timestamp asks for."""
    return {shard.shard_id: shard_state(start) for shard in sorted(shards, key=lambda s: s.shard_id)}


def merge_shards(offset: Offset, shards: Sequence[Shard]) -> Offset:
    """Add shards that appeared since (after resharding) at TRIM_HORIZON; drop ended shards Kinesis forgot."""
    listed = {shard.shard_id for shard in shards}
    merged = {sid: dict(state) for sid, state in offset.items() if sid in listed or not state["ended"]}
    for shard in shards:
        merged.setdefault(shard.shard_id, shard_state(TRIM_HORIZON))
    return dict(sorted(merged.items()))


def readable_shards(offset: Offset, shards: Sequence[Shard]) -> list[str]:
    """Shards to fetch now: not ended, and every parent still known is ended (parents are read before children)."""
    known = {sid for sid in offset}
    readable = []
    for shard in sorted(shards, key=lambda s: s.shard_id):
        state = offset.get(shard.shard_id)
        if state is None or state["ended"]:
            continue
        if all(offset[parent]["ended"] for parent in shard.parents if parent in known):
            readable.append(shard.shard_id)
    return readable


def advance(offset: Offset, shard_id: str, last_seq: str | None, ended: bool) -> Offset:
    """The offset after taking records up to `last_seq` (None: none taken) from `shard_id`."""
    state = dict(offset[shard_id])
    if last_seq is not None:
        state["seq"] = last_seq
    state["ended"] = state["ended"] or ended
    return {**offset, shard_id: state}


@dataclass(frozen=True)
class ShardRange:
    """Records of one shard after `start` (a shard state) up to and including sequence number `end_seq`."""

    shard_id: str
    start: dict[str, Any]
    end_seq: str


def batch_ranges(start: Offset, end: Offset) -> list[ShardRange]:
    """One range per shard with records in (start, end]. A shard missing from `start` (it appeared during the
    batch) is read from its start marker in `end`."""
    ranges = []
    for shard_id, end_state in sorted(end.items()):
        if end_state["seq"] is None:
            continue
        start_state = start.get(shard_id) or shard_state(end_state["start"])
        if start_state["seq"] == end_state["seq"]:
            continue
        if start_state["seq"] is not None and seq_number(start_state["seq"]) > seq_number(end_state["seq"]):
            raise ValueError(f"offset of shard {shard_id} goes backwards: {start_state['seq']} > {end_state['seq']}")
        ranges.append(ShardRange(shard_id, start_state, end_state["seq"]))
    return ranges


def iterator_request(stream: str, shard_id: str, state: dict[str, Any]) -> dict[str, Any]:
    """GetShardIterator arguments that continue right after `state`."""
    request: dict[str, Any] = {"StreamName": stream, "ShardId": shard_id}
    if state["seq"] is not None:
        return {**request, "ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": state["seq"]}
    if state["start"] == TRIM_HORIZON:
        return {**request, "ShardIteratorType": "TRIM_HORIZON"}
    if state["start"].startswith(AT_TIMESTAMP):
        millis = int(state["start"].removeprefix(AT_TIMESTAMP))
        return {**request, "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": datetime.fromtimestamp(millis / 1000, UTC)}
    raise ValueError(f"unknown start position {state['start']!r} for shard {shard_id}")


def records_in_range(records: Sequence[Row], start_seq: str | None, end_seq: str) -> list[Row]:
    """The rows of `records` (one shard, in order) with start_seq < sequence number <= end_seq."""
    return list(records[first_after(records, start_seq) : first_after(records, end_seq)])


def first_after(records: Sequence[Row], seq: str | None) -> int:
    """Index of the first row of `records` (one shard, in order) after sequence number `seq` (0 for None)."""
    return 0 if seq is None else bisect.bisect_right(records, seq_number(seq), key=lambda row: seq_number(row[4]))


def rows_after(records: Sequence[Row], seq: str | None) -> list[Row]:
    """The rows of `records` (one shard, in order) after sequence number `seq` (all of them for None)."""
    return list(records[first_after(records, seq) :])


def take(
    position: Offset, fetched: Offset, shards: Sequence[Shard], buffered: dict[str, Sequence[Row]], cap: int
) -> Offset:
    """The next batch's end offset. From `position` (the previous batch's end), each shard takes the rows fetched
    since (`buffered[shard]`, in order; `fetched` is how far fetching got), at most `cap` of them. A shard is ended
    once it is fetched to its end and every fetched row is taken. A child shard moves only once each of its parents
    is ended in the result, so records of one key stay in order across a split or merge. Shards that fetching added
    (resharding) join at their start marker; an ended shard that fetching dropped (Kinesis forgot it) leaves."""
    end = {
        sid: dict(position[sid]) if sid in position else shard_state(fetched[sid]["start"])
        for sid in sorted(set(fetched) | set(position))
        if sid in fetched or not position[sid]["ended"]
    }
    parents = {shard.shard_id: shard.parents for shard in shards}
    pending = [sid for sid in end if sid in fetched and not end[sid]["ended"]]
    progress = True
    while pending and progress:  # parents before children; each shard moves once
        progress = False
        for sid in list(pending):
            if any(parent in end and not end[parent]["ended"] for parent in parents.get(sid, ())):
                continue
            pending.remove(sid)
            progress = True
            rows = rows_after(buffered.get(sid, ()), end[sid]["seq"])
            taken = rows[:cap]
            if taken:
                end[sid]["seq"] = taken[-1][4]
            end[sid]["ended"] = bool(fetched[sid]["ended"]) and len(taken) == len(rows)
    return end


# --- Kinesis calls ----------------------------------------------------------------------------------------------
@dataclass
class KinesisOptions:
    stream: str
    region: str | None = None
    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    initial_position: str = "latest"
    timestamp_ms: int | None = None
    max_records_per_fetch: int = 10_000
    max_records_per_batch: int = 20_000
    min_fetch_period: float = 0.2
    max_fetch_duration: float = 2.0
    shard_list_interval: float = 10.0
    poll_interval: float = 0.5
    prefetch: bool = True

    @classmethod
    def parse(cls, options: dict[str, str]) -> KinesisOptions:
        def get(name: str) -> str | None:
            return options.get(name) or options.get(name.lower())

        stream = get("streamName")
        if not stream:
            raise ValueError("the kinesis source needs the `streamName` option")
        parsed = cls(
            stream=stream,
            region=get("region"),
            endpoint_url=get("endpointUrl"),
            access_key=get("awsAccessKey"),
            secret_key=get("awsSecretKey"),
            initial_position=(get("initialPosition") or "latest").lower(),
            timestamp_ms=_parse_timestamp_ms(get("timestamp")),
            max_records_per_fetch=int(get("maxRecordsPerFetch") or 10_000),
            max_records_per_batch=int(get("maxRecordsPerShardPerBatch") or 20_000),
            min_fetch_period=int(get("minFetchPeriod") or 200) / 1000,
            max_fetch_duration=int(get("maxFetchDuration") or 2000) / 1000,
            shard_list_interval=int(get("shardListInterval") or 10_000) / 1000,
            poll_interval=int(get("pollInterval") or 500) / 1000,
            prefetch=(get("prefetch") or "true").lower() != "false",
        )
        resolve_start(parsed.initial_position, parsed.timestamp_ms or 0, 0)  # validates the option early
        parsed.fill_from_settings()
        return parsed

    def fill_from_settings(self) -> None:
        """Endpoint, region and credentials the options leave out come from pipeline.settings (when the project is
        importable, e.g. not on Databricks)."""
        try:
            from pipeline.settings import get_settings
        except ImportError:
            return
        kwargs = get_settings().boto3_client_kwargs("kinesis")
        self.region = self.region or kwargs.get("region_name")
        if self.endpoint_url is None:
            self.endpoint_url = kwargs.get("endpoint_url")
        if not self.access_key:
            self.access_key = kwargs.get("aws_access_key_id")
            self.secret_key = kwargs.get("aws_secret_access_key")

    def client(self):
        import boto3
        from botocore.config import Config

        kwargs: dict[str, Any] = {"region_name": self.region, "config": Config(retries={"max_attempts": 3})}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.access_key and self.secret_key:
            kwargs |= {"aws_access_key_id": self.access_key, "aws_secret_access_key": self.secret_key}
        return boto3.client("kinesis", **kwargs)


def _parse_timestamp_ms(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(float(value) * 1000)
    except ValueError:
        moment = datetime.fromisoformat(value)
        return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def list_shards(client, stream: str) -> list[Shard]:
    shards: list[Shard] = []
    request: dict[str, Any] = {"StreamName": stream}
    while True:
        response = client.list_shards(**request)
        shards += [Shard.from_api(item) for item in response.get("Shards", [])]
        token = response.get("NextToken")
        if not token:
            return shards
        request = {"NextToken": token}


def _error_code(error: Exception) -> str:
    return getattr(error, "response", {}).get("Error", {}).get("Code", "")


class ShardFetcher:
    """GetRecords on one shard from a position: paced (`min_period` between calls), with exponential backoff on
    throttling, re-creating an expired iterator from the last sequence number taken."""

    def __init__(
        self,
        client,
        stream: str,
        shard_id: str,
        state: dict[str, Any],
        options: KinesisOptions,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.stream, self.shard_id, self.options = client, stream, shard_id, options
        self.state = dict(state)
        self.iterator: str | None = None
        self.ended = bool(state["ended"])
        self.sleep, self.clock = sleep, clock
        self.last_call = float("-inf")
        self.caught_up = False
        self.last_count = 0

    def due_at(self) -> float:
        """When the next GetRecords is due: soon while the shard has more (Kinesis's pace), after the poll interval
        while records trickle in, and after twice that when the last call found nothing (an idle stream costs the
        emulated Kinesis one call per shard and second, about what one fetch per 1 s trigger did before)."""
        if not self.caught_up:
            return self.last_call + self.options.min_fetch_period
        return self.last_call + self.options.poll_interval * (1 if self.last_count else 2)

    def fetch(self) -> tuple[list[Row], bool]:
        """One GetRecords call: (rows, caught_up). Sets `ended` when the shard is closed and fully read."""
        if self.ended:
            return [], True
        backoff = 0.1
        while True:
            wait = self.last_call + self.options.min_fetch_period - self.clock()
            if wait > 0:
                self.sleep(wait)
            self.last_call = self.clock()
            try:
                if self.iterator is None:
                    request = iterator_request(self.stream, self.shard_id, self.state)
                    self.iterator = self.client.get_shard_iterator(**request)["ShardIterator"]
                response = self.client.get_records(
                    ShardIterator=self.iterator, Limit=self.options.max_records_per_fetch
                )
                break
            except Exception as error:
                code = _error_code(error)
                if code == "ExpiredIteratorException":
                    self.iterator = None
                elif code in THROTTLING_ERRORS:
                    self.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                else:
                    raise
        rows = [
            (
                item["PartitionKey"],
                item["Data"],
                self.stream,
                self.shard_id,
                item["SequenceNumber"],
                item["ApproximateArrivalTimestamp"],
            )
            for item in response.get("Records", [])
        ]
        if rows:
            self.state["seq"] = rows[-1][4]
        self.last_count = len(rows)
        self.iterator = response.get("NextShardIterator")
        if self.iterator is None:
            self.ended = self.caught_up = True
            return rows, True
        # Caught up: nothing new, at the tip, or a page that was not full and is less than a trigger behind the tip.
        # Under a steady inflow the tip moves on during every call, so "0 ms behind" alone kept a trigger fetching
        # for its whole `maxFetchDuration` (2 s of every trigger at 100 records/s).
        behind = response.get("MillisBehindLatest", CAUGHT_UP_MILLIS)
        self.caught_up = (
            not rows or behind == 0 or (len(rows) < self.options.max_records_per_fetch and behind < CAUGHT_UP_MILLIS)
        )
        return rows, self.caught_up


def read_range(fetcher: ShardFetcher, end_seq: str, deadline_seconds: float = 600.0) -> Iterator[Row]:
    """Rows of the fetcher's shard after its position, up to and including `end_seq`; fails if they are gone."""
    high = seq_number(end_seq)
    started = fetcher.clock()
    while True:
        rows, caught_up = fetcher.fetch()
        for row in rows:
            if seq_number(row[4]) > high:
                return
            yield row
            if seq_number(row[4]) == high:
                return
        if fetcher.ended or (caught_up and not rows and fetcher.clock() - started > deadline_seconds):
            raise RuntimeError(
                f"Kinesis shard {fetcher.shard_id} of {fetcher.stream} ended before sequence number {end_seq}: "
                "records of a logged batch are no longer readable (past the stream's retention?)"
            )


# --- Spark Data Source ------------------------------------------------------------------------------------------
@dataclass
class KinesisShardPartition(InputPartition):
    """One shard's part of a micro-batch. `rows` are the records the driver already fetched, or None when the
    executor must read them from Kinesis (a replayed batch)."""

    shard_id: str
    start: dict[str, Any]
    end_seq: str
    rows: list[Row] | None = field(default=None, repr=False)


class KinesisStreamReader(DataSourceStreamReader):
    """Driver side: fetches ahead in a background thread (`prefetch`, the default) so that `latestOffset` only takes
    what is already fetched, and hands the fetched records to the partitions. With `prefetch` false, latestOffset
    fetches itself until every shard is caught up (at most `maxFetchDuration`)."""

    def __init__(self, options: KinesisOptions) -> None:
        self.options = options
        self._client = None
        self._initial: Offset | None = None
        self._position: Offset | None = None  # end offset of the newest planned batch
        self._fetched: Offset | None = None  # how far fetching got
        self._fetchers: dict[str, ShardFetcher] = {}
        self._shards: list[Shard] = []
        self._listed_at = 0.0
        self._relist = True
        # Per shard: (base state, rows fetched after it, in order), kept until the batch holding them commits.
        self._buffers: dict[str, tuple[dict[str, Any], list[Row]]] = {}
        # The prefetch thread fetches and appends to the buffers; Spark's calls plan, hand out and trim them.
        # `_planned` wakes the thread when a batch was planned (room in a full buffer) or the reader stops.
        self._lock = threading.Lock()
        self._planned = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Spark pickles the reader to run `read` in its Python workers, which need the options only (not the
        # driver's thread, lock, client or buffers).
        return {"options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["options"])

    @property
    def client(self):
        if self._client is None:
            self._client = self.options.client()
        return self._client

    def initialOffset(self) -> dict:
        if self._initial is None:
            now_ms = int(time.time() * 1000)
            start = resolve_start(self.options.initial_position, self.options.timestamp_ms, now_ms)
            self._initial = initial_offset(list_shards(self.client, self.options.stream), start)
        return self._initial

    def latestOffset(self) -> dict:
        if self._position is None:
            self._position = self.initialOffset()
        if self._fetched is None:
            self._fetched = self._position
        if self.options.prefetch:
            self._start_prefetching()
        else:
            deadline = time.monotonic() + self.options.max_fetch_duration
            while self._fetch_round(wait_until_due=False)[0] and time.monotonic() < deadline:
                pass
        with self._lock:
            if self._error is not None:
                raise RuntimeError(f"fetching from Kinesis stream {self.options.stream} failed") from self._error
            buffered = {sid: rows for sid, (_, rows) in self._buffers.items()}
            self._position = take(
                self._position, self._fetched, self._shards, buffered, self.options.max_records_per_batch
            )
            self._planned.notify_all()
            return self._position

    # --- fetching (the prefetch thread, or latestOffset itself) ---------------------------------------------
    def _list_shards(self) -> list[Shard]:
        """ListShards at most every `shardListInterval`, and at once after a shard ended: Kinesis only adds shards
        by splitting or merging, which closes their parents, so children are found as soon as they can be read."""
        now = time.monotonic()
        if self._relist or now - self._listed_at >= self.options.shard_list_interval:
            self._shards = list_shards(self.client, self.options.stream)
            self._listed_at, self._relist = now, False
        return self._shards

    def _fetch_round(self, wait_until_due: bool) -> tuple[bool, float]:
        """One GetRecords on each readable shard that has room in its buffer (and, for the prefetch thread, is due).
        Returns whether a shard may have more records right away, and when the next call on a shard with room is
        due (a shard with a full buffer waits for the next planned batch instead)."""
        shards = self._list_shards()
        with self._lock:
            self._fetched = fetched = merge_shards(self._fetched, shards)
        more, next_due = False, time.monotonic() + self.options.poll_interval
        for shard_id in readable_shards(fetched, shards):
            with self._lock:
                buffered = self._buffers.get(shard_id, ({}, []))[1]
                ahead = len(buffered) - first_after(buffered, self._position.get(shard_id, fetched[shard_id])["seq"])
            if ahead >= self.options.max_records_per_batch:
                continue  # a full batch is waiting: fetch on once it is planned
            fetcher = self._fetchers.get(shard_id)
            if fetcher is None or fetcher.state["seq"] != fetched[shard_id]["seq"]:
                fetcher = ShardFetcher(self.client, self.options.stream, shard_id, fetched[shard_id], self.options)
                self._fetchers[shard_id] = fetcher
            if wait_until_due and fetcher.due_at() > time.monotonic():
                next_due = min(next_due, fetcher.due_at())
                continue
            rows, caught_up = fetcher.fetch()
            with self._lock:
                _, buffer = self._buffers.setdefault(shard_id, (dict(fetched[shard_id]), []))
                buffer += rows
                self._fetched = advance(self._fetched, shard_id, rows[-1][4] if rows else None, fetcher.ended)
            if fetcher.ended:
                self._fetchers.pop(shard_id, None)
                self._relist = True
            else:
                next_due = min(next_due, fetcher.due_at())
            more = more or not caught_up
        return more, next_due

    def _start_prefetching(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._prefetch, name=f"kinesis-prefetch-{self.options.stream}", daemon=True
            )
            self._thread.start()

    def _prefetch(self) -> None:
        try:
            while not self._stopping.is_set():
                more, next_due = self._fetch_round(wait_until_due=True)
                if not more:
                    with self._planned:
                        if not self._stopping.is_set():
                            self._planned.wait(max(next_due - time.monotonic(), 0.01))
        except BaseException as error:  # surfaced by the next latestOffset, which fails the query
            with self._lock:
                self._error = error

    # --- planning -------------------------------------------------------------------------------------------
    def partitions(self, start: dict, end: dict) -> Sequence[InputPartition]:
        if self._position is None:  # restart: Spark hands over the last offset of its log first
            self._position = end
        with self._lock:
            return [
                KinesisShardPartition(part.shard_id, part.start, part.end_seq, self._buffered(part))
                for part in batch_ranges(start, end)
            ]

    def _buffered(self, part: ShardRange) -> list[Row] | None:
        """The range's rows from the driver's buffer, or None when the buffer does not cover all of it."""
        if part.shard_id not in self._buffers:
            return None
        base, rows = self._buffers[part.shard_id]
        start_seq = part.start["seq"]
        covered = (start_seq == base["seq"] and part.start["start"] == base["start"]) or any(
            row[4] == start_seq for row in rows
        )
        if not covered or not rows or seq_number(rows[-1][4]) < seq_number(part.end_seq):
            return None
        return records_in_range(rows, start_seq, part.end_seq)

    def commit(self, end: dict) -> None:
        with self._lock:
            for shard_id, state in end.items():
                if shard_id not in self._buffers:
                    continue
                _, rows = self._buffers[shard_id]
                kept = rows_after(rows, state["seq"])
                if state["ended"] and not kept:
                    del self._buffers[shard_id]
                else:
                    self._buffers[shard_id] = (dict(state), kept)

    def read(self, partition: InputPartition) -> Iterator[tuple]:
        assert isinstance(partition, KinesisShardPartition)
        if partition.rows is not None:
            yield from partition.rows
            return
        fetcher = ShardFetcher(
            self.options.client(), self.options.stream, partition.shard_id, partition.start, self.options
        )
        yield from read_range(fetcher, partition.end_seq)

    def stop(self) -> None:
        self._stopping.set()
        with self._planned:
            self._planned.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            self._buffers.clear()
        self._fetchers.clear()


class KinesisDataSource(DataSource):
    """`spark.readStream.format("kinesis")`: see the module docstring for options and semantics."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return KinesisStreamReader(KinesisOptions.parse(dict(self.options)))


def offset_json(offset: Offset) -> str:
    """How Spark stores an offset in the checkpoint (for logs and tests)."""
    return json.dumps(offset, sort_keys=True)
