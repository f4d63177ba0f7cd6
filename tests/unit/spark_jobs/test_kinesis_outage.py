"""The Kinesis reader rides out a restarting Kinesis store: connection failures are retried with backoff (so a
store that comes back costs the query no restart), the iterator is re-created from the last sequence number taken
(so nothing is read twice), and an outage longer than OUTAGE_SECONDS still fails loudly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.exceptions import EndpointConnectionError

from spark_jobs import kinesis_fetch as kf
from spark_jobs import kinesis_offsets as ko

STREAM = "streaming-7e57c0de0001-pin"
ARRIVAL = datetime(2026, 1, 1, tzinfo=UTC)


class RestartingKinesis:
    """One shard holding records 1..n; `down` calls fail as an unreachable endpoint does."""

    def __init__(self, count: int) -> None:
        self.records = [
            {"SequenceNumber": str(n), "Data": b"{}", "PartitionKey": "k", "ApproximateArrivalTimestamp": ARRIVAL}
            for n in range(1, count + 1)
        ]
        self.down = 0
        self.iterator_requests: list[dict] = []

    def _maybe_down(self) -> None:
        if self.down:
            self.down -= 1
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:4567/")

    def list_shards(self, **request):
        self._maybe_down()
        return {"Shards": [{"ShardId": "s0", "SequenceNumberRange": {"StartingSequenceNumber": "1"}}]}

    def get_shard_iterator(self, **request):
        self._maybe_down()
        self.iterator_requests.append(request)
        after = int(request.get("StartingSequenceNumber", 0))
        return {"ShardIterator": str(after)}

    def get_records(self, ShardIterator, Limit):
        self._maybe_down()
        after = int(ShardIterator)
        page = [r for r in self.records if int(r["SequenceNumber"]) > after][:Limit]
        following = page[-1]["SequenceNumber"] if page else ShardIterator
        return {"Records": page, "NextShardIterator": following, "MillisBehindLatest": 0}


def test_a_store_restart_mid_read_loses_and_repeats_nothing():
    store = RestartingKinesis(5)
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    options = kf.KinesisOptions(stream=STREAM, max_records_per_fetch=2, min_fetch_period=0.0)
    fetcher = kf.ShardFetcher(store, STREAM, "s0", ko.shard_state("TRIM_HORIZON"), options, sleep, lambda: now[0])
    first, _ = fetcher.fetch()
    store.down = 4  # the store restarts: four calls fail to connect
    rest: list = []
    while True:
        rows, caught_up = fetcher.fetch()
        rest += rows
        if caught_up and not rows:
            break
    assert [r[4] for r in first + rest] == ["1", "2", "3", "4", "5"]
    assert store.iterator_requests[-1]["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
    assert store.iterator_requests[-1]["StartingSequenceNumber"] == "2", "re-created after the last record taken"
    assert sleeps == [0.1, 0.2, 0.4, 0.8], "exponential backoff while the store is down, no pacing otherwise"


def test_an_outage_longer_than_the_limit_fails_loudly():
    store = RestartingKinesis(1)
    store.down = 10_000
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    fetcher = kf.ShardFetcher(
        store, STREAM, "s0", ko.shard_state("TRIM_HORIZON"), kf.KinesisOptions(stream=STREAM), sleep, lambda: now[0]
    )
    with pytest.raises(EndpointConnectionError):
        fetcher.fetch()
    assert kf.OUTAGE_SECONDS < now[0] < kf.OUTAGE_SECONDS + 2 * kf.MAX_BACKOFF_SECONDS


def test_list_shards_waits_for_the_store_to_come_back():
    store = RestartingKinesis(0)
    store.down = 3
    slept: list[float] = []
    shards = kf.through_outage(lambda: kf.list_shards(store, STREAM), "test", slept.append)
    assert [s.shard_id for s in shards] == ["s0"] and slept == []  # list_shards retried on its own
