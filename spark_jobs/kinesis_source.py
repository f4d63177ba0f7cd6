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
default 10000), `maxRecordsPerShardPerBatch` (default 20000), `maxBytesPerShardPerBatch` (bytes of record data,
default 8 MiB; a single larger record is taken alone), `minFetchPeriod` (ms between GetRecords calls on one
shard while it has more, default 200: Kinesis allows 5 per second per shard), `pollInterval` (ms between
GetRecords calls on a shard that is caught up, default 500; twice that after a call that found nothing),
`shardListInterval` (ms between ListShards calls, default 10000; a shard that ends triggers one at once),
`prefetch` (default true; false: `latestOffset` fetches itself, for at most `maxFetchDuration` ms, default 2000),
and one of our own, `eventLog`: a local file to which the source appends a JSON line for each resume after a
vanished position and each logged batch it could not fully replay (the streaming job counts them in its status).

A position Kinesis no longer has (a re-created stream, a store that lost records) does not fail the query: reading
resumes by arrival time, logged and counted (spark_jobs/kinesis_offsets.py has the rule).

Prefetching: like Databricks' source, the driver fetches ahead in a background thread, so a trigger only takes
the records already fetched and does not wait for Kinesis (a trigger's `latestOffset` went from seconds to
milliseconds: docs/design/streaming.md). The thread stops fetching a shard while a full batch
(`maxRecordsPerShardPerBatch` records or `maxBytesPerShardPerBatch` bytes) of its records waits to be planned, so
the buffer stays bounded by records and by bytes (to about two batches and one GetRecords answer per shard); a fetch error fails the next `latestOffset`, and so the query.

How the pieces fit: offsets, and why every batch can be re-read with the same records, are in
spark_jobs/kinesis_offsets.py (pure functions); the Kinesis calls in spark_jobs/kinesis_fetch.py; this module is the
Spark side: the driver's reader with its prefetch thread and buffers, and the partitions handed to the executors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.types import StructType

from spark_jobs.kinesis_fetch import KinesisOptions, ShardFetcher, list_shards, read_range
from spark_jobs.kinesis_offsets import (
    Offset,
    Row,
    Shard,
    ShardRange,
    advance,
    arrival_ms,
    batch_ranges,
    epoch,
    epoch_start,
    first_after,
    holds_a_full_batch,
    initial_offset,
    merge_shards,
    readable_shards,
    records_in_range,
    resolve_start,
    rows_after,
    seq_number,
    take,
)

SOURCE_NAME = "kinesis"
SCHEMA = (
    "partitionKey string, data binary, stream string, shardId string, sequenceNumber string, "
    "approximateArrivalTimestamp timestamp"
)


@dataclass
class KinesisShardPartition(InputPartition):
    """One shard's part of a micro-batch. `rows` are the records the driver already fetched, or None when the
    executor must read them from Kinesis (a replayed batch)."""

    shard_id: str
    start: dict[str, Any]
    end_seq: str
    rows: list[Row] | None = field(default=None, repr=False)
    end_at: int | None = None


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
                self._position,
                self._fetched,
                self._shards,
                buffered,
                self.options.max_records_per_batch,
                self.options.max_bytes_per_batch,
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
            fetcher = self._fetchers.get(shard_id)
            with self._lock:
                if fetcher is not None and fetcher.epoch != epoch(self._fetched[shard_id]):
                    # The fetcher resumed (its position vanished). Its new run starts once every row of the old run
                    # is committed, so that a buffer holds rows of one numbering only.
                    if self._buffers.get(shard_id, ({}, []))[1]:
                        continue
                    self._fetched = {**self._fetched, shard_id: dict(fetcher.state)}
                    self._buffers[shard_id] = (epoch_start(fetcher.state), [])
                state = self._fetched[shard_id]
                base, buffered = self._buffers.get(shard_id, (state, []))
                position = self._position.get(shard_id, state)
                planned = first_after(buffered, position["seq"]) if epoch(position) == epoch(base) else 0
                full = holds_a_full_batch(
                    buffered[planned:], self.options.max_records_per_batch, self.options.max_bytes_per_batch
                )
            if full:
                continue  # a full batch is waiting: fetch on once it is planned
            if fetcher is None or fetcher.state["seq"] != state["seq"] or fetcher.epoch != epoch(state):
                fetcher = ShardFetcher(self.client, self.options.stream, shard_id, state, self.options)
                self._fetchers[shard_id] = fetcher
            if wait_until_due and fetcher.due_at() > time.monotonic():
                next_due = min(next_due, fetcher.due_at())
                continue
            rows, caught_up = fetcher.fetch()
            with self._lock:
                _, buffer = self._buffers.setdefault(shard_id, (dict(state), []))
                buffer += rows
                last, at = (rows[-1][4], arrival_ms(rows[-1])) if rows else (None, None)
                self._fetched = advance(self._fetched, shard_id, last, fetcher.ended, at)
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
                KinesisShardPartition(part.shard_id, part.start, part.end_seq, self._buffered(part), part.end_at)
                for part in batch_ranges(start, end)
            ]

    def _buffered(self, part: ShardRange) -> list[Row] | None:
        """The range's rows from the driver's buffer, or None when the buffer does not cover all of it."""
        if part.shard_id not in self._buffers:
            return None
        base, rows = self._buffers[part.shard_id]
        if epoch(part.start) != epoch(base):
            return None
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
                base, rows = self._buffers[shard_id]
                if epoch(state) != epoch(base):
                    continue  # a batch of the run before a resume: the buffer holds the new run
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
        yield from read_range(fetcher, partition.end_seq, partition.end_at)

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
