"""Reading Kinesis for the `kinesis` source (spark_jobs/kinesis_source.py): its parsed options, ListShards, and
GetRecords on one shard, paced (`minFetchPeriod` between calls while a shard has more, `pollInterval` once it is
caught up), with exponential backoff on throttling and on an unreachable endpoint (a restarting Kinesis store: up to
`OUTAGE_SECONDS`, so that a store that comes back does not cost the query a restart), and an expired iterator
re-created from the last sequence number taken. The driver's prefetch thread and the executors' replay of a logged
batch both fetch through `ShardFetcher`.

A position Kinesis no longer has (its sequence number vanished with a re-created stream or a store that lost
records) must not fail the query on every restart: the fetcher resumes by arrival time (the rule is in
spark_jobs/kinesis_offsets.py), and a replay whose records are gone yields what is left. Both are logged at WARNING
and appended as one JSON line each to the `eventLog` file when the option is set, which is how they reach the
streaming job's status file: the reader runs in Spark's Python workers, not in the job's own process.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from spark_jobs.kinesis_offsets import (
    AT_TIMESTAMP,
    Row,
    Shard,
    already_taken,
    arrival_ms,
    epoch,
    iterator_request,
    resolve_start,
    resume_state,
    seq_number,
)

LOG = logging.getLogger(__name__)

THROTTLING_ERRORS = ("ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException")
MAX_BACKOFF_SECONDS = 5.0
# Connection-level failures: the endpoint is restarting or gone. Retried for this long, then the query fails.
UNREACHABLE_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)
OUTAGE_SECONDS = 300.0
CAUGHT_UP_MILLIS = 1000
# Record data per shard and batch: 4 s of a shard's read limit (2 MB/s). The driver buffers about two batches plus
# one GetRecords answer (up to 10 MB) per shard.
DEFAULT_MAX_BYTES_PER_BATCH = 8 * 1024 * 1024


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
    max_bytes_per_batch: int = DEFAULT_MAX_BYTES_PER_BATCH
    min_fetch_period: float = 0.2
    max_fetch_duration: float = 2.0
    shard_list_interval: float = 10.0
    poll_interval: float = 0.5
    prefetch: bool = True
    event_log: str | None = None

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
            max_bytes_per_batch=int(get("maxBytesPerShardPerBatch") or DEFAULT_MAX_BYTES_PER_BATCH),
            min_fetch_period=int(get("minFetchPeriod") or 200) / 1000,
            max_fetch_duration=int(get("maxFetchDuration") or 2000) / 1000,
            shard_list_interval=int(get("shardListInterval") or 10_000) / 1000,
            poll_interval=int(get("pollInterval") or 500) / 1000,
            prefetch=(get("prefetch") or "true").lower() != "false",
            event_log=get("eventLog"),
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


def through_outage(
    call: Callable[[], Any],
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[], None] | None = None,
) -> Any:
    """`call()`, retried with backoff while the endpoint is unreachable, for up to OUTAGE_SECONDS (`on_retry` runs
    before each retry)."""
    backoff, since = 0.1, None
    while True:
        try:
            return call()
        except UNREACHABLE_ERRORS as error:
            now = clock()
            if since is None:
                since = now
                print(f"kinesis: {what}: endpoint unreachable ({error}); retrying", file=sys.stderr, flush=True)
            elif now - since > OUTAGE_SECONDS:
                raise
            if on_retry is not None:
                on_retry()
            sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def list_shards(client, stream: str) -> list[Shard]:
    shards: list[Shard] = []
    request: dict[str, Any] = {"StreamName": stream}
    while True:
        response = through_outage(lambda request=request: client.list_shards(**request), f"{stream} ListShards")
        shards += [Shard.from_api(item) for item in response.get("Shards", [])]
        token = response.get("NextToken")
        if not token:
            return shards
        request = {"NextToken": token}


def _error_code(error: Exception) -> str:
    return getattr(error, "response", {}).get("Error", {}).get("Code", "")


def _error_text(error: Exception) -> str:
    """`Code: message` of a botocore ClientError (its str() repeats the code and the operation)."""
    details = getattr(error, "response", {}).get("Error", {})
    return f"{details.get('Code') or type(error).__name__}: {details.get('Message') or error}"


def position_lost(request: dict[str, Any], error: Exception) -> bool:
    """Whether GetShardIterator failed because the sequence number it continues after no longer exists in the
    shard: AWS and kinesalite answer InvalidArgumentException about the StartingSequenceNumber, kinesis-mock
    ResourceNotFoundException (a missing stream does too; then resuming fails as well, and that error is raised)."""
    if request.get("ShardIteratorType") != "AFTER_SEQUENCE_NUMBER":
        return False
    code = _error_code(error)
    mentions_seq = "sequencenumber" in _error_text(error).lower().replace(" ", "")
    return code == "ResourceNotFoundException" or (code == "InvalidArgumentException" and mentions_seq)


def _iso(millis: int | None) -> str | None:
    return None if millis is None else datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")


def record_event(path: str | None, event: dict[str, Any]) -> None:
    """Append `event` as one JSON line to the source's event log (appends of one short line are atomic, so the
    driver and the executors may share the file). Bookkeeping never fails the read: a write error is logged."""
    if not path:
        return
    line = json.dumps({"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **event}) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as log:
            log.write(line)
    except OSError as error:
        LOG.warning("cannot append to the Kinesis source's event log %s: %s", path, error)


class ShardFetcher:
    """GetRecords on one shard from a position: paced (`min_period` between calls), with exponential backoff on
    throttling, re-creating an expired iterator from the last sequence number taken, and resuming by arrival time
    when that sequence number no longer exists (`state` then moves to a new epoch; `resumes` lists the events)."""

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
        self.behind: int | None = None  # MillisBehindLatest of the last GetRecords
        self.resumes: list[dict[str, Any]] = []

    @property
    def epoch(self) -> int:
        return epoch(self.state)

    def due_at(self) -> float:
        """When the next GetRecords is due: soon while the shard has more (Kinesis's pace), after the poll interval
        while records trickle in, and after twice that when the last call found nothing (an idle stream costs the
        emulated Kinesis one call per shard and second, about what one fetch per 1 s trigger did before)."""
        if not self.caught_up:
            return self.last_call + self.options.min_fetch_period
        return self.last_call + self.options.poll_interval * (1 if self.last_count else 2)

    def fetch(self) -> tuple[list[Row], bool]:
        """One GetRecords call: (rows, caught_up). Sets `ended` when the shard is closed and fully read. A call that
        resumes (the position vanished) returns no rows, so that the caller sees the new epoch before its rows."""
        if self.ended:
            return [], True
        backoff = 0.1
        while True:
            wait = self.last_call + self.options.min_fetch_period - self.clock()
            if wait > 0:
                self.sleep(wait)
            self.last_call = self.clock()
            try:
                response = through_outage(
                    self._get_records, f"{self.stream}/{self.shard_id}", self.sleep, self.clock, self._forget_iterator
                )
                if response is None:  # resumed: a new epoch, no rows yet
                    self.caught_up, self.last_count = False, 0
                    return [], False
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
        if self.state["seq"] is None and self.state.get("lost") is not None:
            rows = [row for row in rows if not already_taken(self.state, row)]
        if rows:
            self.state["seq"], self.state["at"] = rows[-1][4], arrival_ms(rows[-1])
        self.last_count = len(rows)
        self.behind = response.get("MillisBehindLatest")
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

    def _get_records(self) -> dict[str, Any] | None:
        """GetRecords from the current iterator, created first if needed; None when creating it resumed reading."""
        if self.iterator is None:
            before = self.epoch
            self.iterator = self._new_iterator()
            if self.epoch != before:
                return None
        return self.client.get_records(ShardIterator=self.iterator, Limit=self.options.max_records_per_fetch)

    def _forget_iterator(self) -> None:
        self.iterator = None  # an iterator may not outlive a store restart

    def _new_iterator(self) -> str:
        """GetShardIterator for the current state; if its sequence number no longer exists, for the resumed state
        (a new epoch, from the arrival time of the last record taken), which becomes the state once Kinesis accepts
        it. An error of the resumed request is raised as is (e.g. the stream itself is missing)."""
        request = iterator_request(self.stream, self.shard_id, self.state)
        try:
            return self.client.get_shard_iterator(**request)["ShardIterator"]
        except Exception as error:
            if not position_lost(request, error):
                raise
            resumed = resume_state(self.state)
            iterator = self.client.get_shard_iterator(**iterator_request(self.stream, self.shard_id, resumed))
            self._resumed(resumed, error)
            self.state = resumed
            return iterator["ShardIterator"]

    def _resumed(self, resumed: dict[str, Any], error: Exception) -> None:
        start = resumed["start"]
        resumed_at = _iso(int(start.removeprefix(AT_TIMESTAMP))) if start.startswith(AT_TIMESTAMP) else None
        event = {
            "event": "resumed",
            "stream": self.stream,
            "shard": self.shard_id,
            "lost_seq": resumed["lost"],
            "lost_at": _iso(resumed["lost_at"]),
            "resumed_from": start,
            "resumed_at": resumed_at,
            "epoch": resumed["epoch"],
            "error": _error_text(error),
        }
        how = (
            f"at {resumed_at} (arrival time of the last record taken)"
            if resumed["lost_at"] is not None
            else f"from {resumed_at or start} (the shard's start: this offset has no arrival time)"
        )
        LOG.warning(
            "Kinesis stream %s shard %s: sequence number %s no longer exists (%s); resuming %s, epoch %d",
            self.stream, self.shard_id, resumed["lost"], event["error"], how, resumed["epoch"],
        )  # fmt: skip
        self.resumes.append(event)
        record_event(self.options.event_log, event)


def read_range(
    fetcher: ShardFetcher, end_seq: str, end_at: int | None = None, deadline_seconds: float = 600.0
) -> Iterator[Row]:
    """Rows of the fetcher's shard after its position, up to and including `end_seq` (which arrived at `end_at`):
    the replay of a logged batch. Records that are gone do not fail the query, which would fail again on every
    restart: the replay yields what is left, and the missing range is logged and counted (`lost_range`). The next
    batch then starts after `end_seq`, where fetching resumes if that is gone too.

    Where the records read may be of another numbering than the range's (the fetcher had to resume because its
    start vanished, or the range starts at a start marker, which a re-created stream answers without an error), a
    record belongs to the range only if it also arrived no later than `end_at`: the records of a re-created stream
    arrived after the original batch was planned. (A replay after an AFTER_SEQUENCE_NUMBER that Kinesis accepted
    compares sequence numbers only, as before.)"""
    high = seq_number(end_seq)
    after, first_epoch = fetcher.state["seq"] or fetcher.state["start"], fetcher.epoch
    from_marker = fetcher.state["seq"] is None
    started = fetcher.clock()
    replayed = 0
    while True:
        rows, caught_up = fetcher.fetch()
        other_numbering = from_marker or fetcher.epoch != first_epoch
        for row in rows:
            arrived = arrival_ms(row)
            late = other_numbering and end_at is not None and arrived is not None and arrived > end_at
            if seq_number(row[4]) > high or late:
                _lost_range(fetcher, after, end_seq, replayed, f"{end_seq} is missing, {row[4]} follows")
                return
            yield row
            replayed += 1
            if seq_number(row[4]) == high:
                return
        # Nothing more: the shard ended, or an empty page at its tip (or, if Kinesis never says it is at the tip,
        # empty pages for `deadline_seconds`).
        waited = caught_up and not rows and (fetcher.behind == 0 or fetcher.clock() - started > deadline_seconds)
        if fetcher.ended or waited:
            reason = "the shard ended before it" if fetcher.ended else "not in the shard any more"
            _lost_range(fetcher, after, end_seq, replayed, reason)
            return


def _lost_range(fetcher: ShardFetcher, after: str, end_seq: str, replayed: int, reason: str) -> None:
    LOG.warning(
        "Kinesis stream %s shard %s: records of a logged batch are gone (%s): the range after %s up to %s; "
        "%d of its records replayed, the rest is lost and the query moves on",
        fetcher.stream, fetcher.shard_id, reason, after, end_seq, replayed,
    )  # fmt: skip
    event = {
        "event": "lost_range",
        "stream": fetcher.stream,
        "shard": fetcher.shard_id,
        "after": after,
        "until_seq": end_seq,
        "replayed": replayed,
        "reason": reason,
    }
    record_event(fetcher.options.event_log, event)
