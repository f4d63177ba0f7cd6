"""Reading Kinesis for the `kinesis` source (spark_jobs/kinesis_source.py): its parsed options, ListShards, and
GetRecords on one shard, paced (`minFetchPeriod` between calls while a shard has more, `pollInterval` once it is
caught up), with exponential backoff on throttling and on an unreachable endpoint (a restarting Kinesis store: up to
`OUTAGE_SECONDS`, so that a store that comes back does not cost the query a restart), and an expired iterator
re-created from the last sequence number taken. The driver's prefetch thread and the executors' replay of a logged batch both fetch through `ShardFetcher`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from spark_jobs.kinesis_offsets import Row, Shard, iterator_request, resolve_start, seq_number

THROTTLING_ERRORS = ("ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException")
MAX_BACKOFF_SECONDS = 5.0
# Connection-level failures: the endpoint is restarting or gone. Retried for this long, then the query fails.
UNREACHABLE_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)
OUTAGE_SECONDS = 300.0
CAUGHT_UP_MILLIS = 1000


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


def through_outage(call: Callable[[], Any], what: str, sleep: Callable[[float], None] = time.sleep) -> Any:
    """`call()`, retried with backoff while the endpoint is unreachable, for up to OUTAGE_SECONDS."""
    backoff, waited = 0.1, 0.0
    while True:
        try:
            return call()
        except UNREACHABLE_ERRORS as error:
            if waited > OUTAGE_SECONDS:
                raise
            if not waited:
                print(f"kinesis: {what}: endpoint unreachable ({error}); retrying", file=sys.stderr, flush=True)
            sleep(backoff)
            waited += backoff
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
        unreachable_since: float | None = None
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
            except UNREACHABLE_ERRORS as error:
                now = self.clock()
                if unreachable_since is None:
                    unreachable_since = now
                    print(f"kinesis: {self.stream}/{self.shard_id}: endpoint unreachable ({error}); retrying",
                          file=sys.stderr, flush=True)  # fmt: skip
                elif now - unreachable_since > OUTAGE_SECONDS:
                    raise
                self.iterator = None  # an iterator may not outlive a store restart
                self.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
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
