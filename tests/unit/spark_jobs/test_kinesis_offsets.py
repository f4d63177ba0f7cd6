"""The Kinesis source's offset logic and reader, against a small in-memory fake of the Kinesis API (no Spark run,
no LocalStack): multiple shards, empty shards, restart from a checkpointed offset, replay of a logged batch,
resharding (parents read before children), pacing and throttling backoff."""

from __future__ import annotations

import itertools
import pickle
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from spark_jobs import kinesis_fetch as kf
from spark_jobs import kinesis_offsets as ko
from spark_jobs import kinesis_source as ks

STREAM = "streaming-7e57c0de0001-pin"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeKinesis:
    """The slice of the Kinesis API the reader uses. Sequence numbers grow across the stream, like Kinesis's."""

    def __init__(self, shards: dict[str, tuple[str, ...]]):
        self.shards = {sid: {"parents": parents, "records": [], "closed": False} for sid, parents in shards.items()}
        self.seq = itertools.count(49_000_000_000_000_000_000)
        self.iterators: dict[str, tuple[str, int]] = {}
        self.calls: list[str] = []
        self.throttle_next = 0
        self.clock = EPOCH

    # --- test helpers
    def put(self, shard_id: str, count: int, key: str = "k") -> list[str]:
        shard = self.shards[shard_id]
        assert not shard["closed"], "cannot put into a closed shard"
        seqs = []
        for _ in range(count):
            self.clock += timedelta(milliseconds=10)
            seq = str(next(self.seq))
            data = f'{{"n": {len(shard["records"])}, "shard": "{shard_id}"}}'.encode()
            shard["records"].append(
                {"SequenceNumber": seq, "Data": data, "PartitionKey": key, "ApproximateArrivalTimestamp": self.clock}
            )
            seqs.append(seq)
        return seqs

    def split(self, parent: str, children: tuple[str, ...]) -> None:
        self.shards[parent]["closed"] = True
        for child in children:
            self.shards[child] = {"parents": (parent,), "records": [], "closed": False}

    # --- API
    def list_shards(self, StreamName=None, NextToken=None):
        self.calls.append("ListShards")
        items = []
        for sid, shard in self.shards.items():
            item = {"ShardId": sid, "SequenceNumberRange": {"StartingSequenceNumber": "0"}}
            if shard["parents"]:
                item["ParentShardId"] = shard["parents"][0]
            if shard["closed"]:
                last = shard["records"][-1]["SequenceNumber"] if shard["records"] else "0"
                item["SequenceNumberRange"]["EndingSequenceNumber"] = last
            items.append(item)
        return {"Shards": items}

    def get_shard_iterator(self, StreamName, ShardId, ShardIteratorType, StartingSequenceNumber=None, Timestamp=None):
        self.calls.append(f"GetShardIterator {ShardIteratorType}")
        records = self.shards[ShardId]["records"]
        if ShardIteratorType == "TRIM_HORIZON":
            index = 0
        elif ShardIteratorType == "LATEST":
            index = len(records)
        elif ShardIteratorType == "AFTER_SEQUENCE_NUMBER":
            index = next(i + 1 for i, r in enumerate(records) if r["SequenceNumber"] == StartingSequenceNumber)
        elif ShardIteratorType == "AT_TIMESTAMP":
            index = next(
                (i for i, r in enumerate(records) if r["ApproximateArrivalTimestamp"] >= Timestamp), len(records)
            )
        else:
            raise AssertionError(ShardIteratorType)
        token = f"it-{len(self.iterators)}"
        self.iterators[token] = (ShardId, index)
        return {"ShardIterator": token}

    def get_records(self, ShardIterator, Limit):
        self.calls.append("GetRecords")
        if self.throttle_next:
            self.throttle_next -= 1
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "GetRecords")
        shard_id, index = self.iterators[ShardIterator]
        shard = self.shards[shard_id]
        batch = shard["records"][index : index + Limit]
        new_index = index + len(batch)
        behind = 0 if new_index == len(shard["records"]) else 1000
        if shard["closed"] and new_index == len(shard["records"]):
            return {"Records": batch, "MillisBehindLatest": 0}
        token = f"it-{len(self.iterators)}"
        self.iterators[token] = (shard_id, new_index)
        return {"Records": batch, "NextShardIterator": token, "MillisBehindLatest": behind}


def make_reader(fake: FakeKinesis, monkeypatch, **options: str) -> ks.KinesisStreamReader:
    # prefetch off: latestOffset fetches itself, so each step is deterministic (the thread has its own test).
    opts = {"streamName": STREAM, "initialPosition": "earliest", "minFetchPeriod": "0", "prefetch": "false", **options}
    parsed = kf.KinesisOptions.parse(opts)
    monkeypatch.setattr(kf.KinesisOptions, "client", lambda self: fake)
    return ks.KinesisStreamReader(parsed)


def run_batch(reader: ks.KinesisStreamReader, start: dict) -> tuple[dict, list[tuple]]:
    """What Spark does for one micro-batch: latestOffset, partitions, read each partition, commit."""
    end = reader.latestOffset()
    rows = [row for part in reader.partitions(start, end) for row in reader.read(part)]
    reader.commit(end)
    return end, rows


def keys(rows) -> list[tuple[str, str]]:
    return [(row[3], row[4]) for row in rows]


# --- pure functions -------------------------------------------------------------------------------------------
def test_resolve_start_positions():
    assert ko.resolve_start("earliest", None, 5) == "TRIM_HORIZON"
    assert ko.resolve_start("TRIM_HORIZON", None, 5) == "TRIM_HORIZON"
    assert ko.resolve_start("latest", None, 1234) == "AT_TIMESTAMP:1234"
    assert ko.resolve_start("at_timestamp", 99, 1234) == "AT_TIMESTAMP:99"
    with pytest.raises(ValueError, match="timestamp"):
        ko.resolve_start("at_timestamp", None, 1)
    with pytest.raises(ValueError, match="initialPosition"):
        ko.resolve_start("oldest", None, 1)


def test_merge_adds_new_shards_and_drops_forgotten_ended_ones():
    offset = {
        "a": ko.shard_state("TRIM_HORIZON", "5", ended=True),
        "b": ko.shard_state("TRIM_HORIZON", "7"),
    }
    merged = ko.merge_shards(offset, [ko.Shard("b"), ko.Shard("c", ("a",))])
    assert merged == {"b": ko.shard_state("TRIM_HORIZON", "7"), "c": ko.shard_state("TRIM_HORIZON")}
    assert list(merged) == ["b", "c"]


def test_children_wait_for_their_parents():
    shards = [ko.Shard("p", closed=True), ko.Shard("c1", ("p",)), ko.Shard("c2", ("p",)), ko.Shard("x")]
    offset = ko.initial_offset(shards, "TRIM_HORIZON")
    assert ko.readable_shards(offset, shards) == ["p", "x"]
    offset = ko.advance(offset, "p", "10", ended=True)
    assert ko.readable_shards(offset, shards) == ["c1", "c2", "x"]


def test_batch_ranges_skip_unchanged_and_empty_shards_and_include_new_ones():
    start = {
        "a": ko.shard_state("TRIM_HORIZON", "10"),
        "b": ko.shard_state("TRIM_HORIZON"),
        "c": ko.shard_state("TRIM_HORIZON", "3"),
    }
    end = {
        "a": ko.shard_state("TRIM_HORIZON", "20"),
        "b": ko.shard_state("TRIM_HORIZON"),
        "c": ko.shard_state("TRIM_HORIZON", "3"),
        "d": ko.shard_state("TRIM_HORIZON", "40"),
    }
    assert ko.batch_ranges(start, end) == [
        ko.ShardRange("a", start["a"], "20"),
        ko.ShardRange("d", ko.shard_state("TRIM_HORIZON"), "40"),
    ]
    with pytest.raises(ValueError, match="backwards"):
        ko.batch_ranges(end, start)


def test_iterator_requests():
    assert ko.iterator_request(STREAM, "s", ko.shard_state("TRIM_HORIZON", "42"))["ShardIteratorType"] == (
        "AFTER_SEQUENCE_NUMBER"
    )
    assert ko.iterator_request(STREAM, "s", ko.shard_state("TRIM_HORIZON"))["ShardIteratorType"] == "TRIM_HORIZON"
    request = ko.iterator_request(STREAM, "s", ko.shard_state("AT_TIMESTAMP:1700000000000"))
    assert request["ShardIteratorType"] == "AT_TIMESTAMP"
    assert request["Timestamp"] == datetime.fromtimestamp(1_700_000_000, UTC)


def test_options_use_databricks_names_and_validate():
    parsed = kf.KinesisOptions.parse(
        {"streamName": STREAM, "initialPosition": "AT_TIMESTAMP", "timestamp": "2026-01-01T00:00:00"}
    )
    assert parsed.initial_position == "at_timestamp"
    assert parsed.timestamp_ms == int(EPOCH.timestamp() * 1000)
    assert parsed.endpoint_url  # from pipeline.settings (LocalStack locally)
    with pytest.raises(ValueError, match="streamName"):
        kf.KinesisOptions.parse({})
    with pytest.raises(ValueError, match="initialPosition"):
        kf.KinesisOptions.parse({"streamName": STREAM, "initialPosition": "nowish"})


# --- reader against the fake ----------------------------------------------------------------------------------
def test_multiple_shards_and_an_empty_shard(monkeypatch):
    fake = FakeKinesis({"s0": (), "s1": (), "s2": ()})
    put = {"s0": fake.put("s0", 3), "s1": fake.put("s1", 2)}
    reader = make_reader(fake, monkeypatch)
    start = reader.initialOffset()
    end, rows = run_batch(reader, start)
    assert end["s2"] == ko.shard_state("TRIM_HORIZON")  # empty shard: no position yet, no partition
    assert end["s0"]["seq"] == put["s0"][-1] and end["s1"]["seq"] == put["s1"][-1]
    assert sorted(keys(rows)) == sorted((s, q) for s, seqs in put.items() for q in seqs)
    assert {row[2] for row in rows} == {STREAM}
    assert isinstance(rows[0][1], bytes) and rows[0][5].tzinfo is not None

    # Nothing new: the offset does not move, no partitions.
    end2, rows2 = run_batch(reader, end)
    assert end2 == end and rows2 == []
    # New records, including in the formerly empty shard: only they are read.
    later = fake.put("s2", 4) + fake.put("s0", 1)
    _, rows3 = run_batch(reader, end2)
    assert sorted(q for _, q in keys(rows3)) == sorted(later)


def test_records_come_from_the_driver_buffer_in_normal_running(monkeypatch):
    fake = FakeKinesis({"s0": ()})
    fake.put("s0", 5)
    reader = make_reader(fake, monkeypatch)
    start = reader.initialOffset()
    end = reader.latestOffset()
    fetches = fake.calls.count("GetRecords")
    [part] = reader.partitions(start, end)
    assert part.rows is not None and len(part.rows) == 5
    assert len(list(reader.read(part))) == 5
    assert fake.calls.count("GetRecords") == fetches  # read() did not call Kinesis again


def test_replay_of_a_logged_batch_after_restart_is_identical(monkeypatch):
    fake = FakeKinesis({"s0": (), "s1": ()})
    fake.put("s0", 4)
    fake.put("s1", 3)
    first = make_reader(fake, monkeypatch)
    start = first.initialOffset()
    end = first.latestOffset()  # batch 0 is logged ...
    original = [row for part in first.partitions(start, end) for row in first.read(part)]
    # ... and the process dies before the commit. More records arrive meanwhile.
    fake.put("s0", 6)
    fake.put("s1", 2)
    restarted = make_reader(fake, monkeypatch)
    assert restarted.partitions(end, end) == []  # Spark hands the last logged offset over first
    parts = restarted.partitions(start, end)
    assert all(part.rows is None for part in parts)  # not buffered: the executor reads from Kinesis
    replayed = [row for part in parts for row in restarted.read(part)]
    assert keys(replayed) == keys(original) and [r[1] for r in replayed] == [r[1] for r in original]
    restarted.commit(end)
    # The next batch continues exactly after the replayed one: nothing missing, nothing twice.
    _, rows = run_batch(restarted, end)
    assert len(rows) == 8
    all_keys = keys(original) + keys(rows)
    assert len(set(all_keys)) == len(all_keys) == 4 + 3 + 6 + 2


def test_restart_from_a_committed_checkpoint_offset(monkeypatch):
    fake = FakeKinesis({"s0": ()})
    fake.put("s0", 3)
    reader = make_reader(fake, monkeypatch)
    end, rows = run_batch(reader, reader.initialOffset())
    assert len(rows) == 3
    new = fake.put("s0", 2)
    restarted = make_reader(fake, monkeypatch)
    restarted.partitions(end, end)
    _, rows = run_batch(restarted, end)
    assert [q for _, q in keys(rows)] == new


def test_latest_skips_older_records(monkeypatch):
    fake = FakeKinesis({"s0": ()})
    fake.put("s0", 3)
    reader = make_reader(fake, monkeypatch, initialPosition="latest")
    monkeypatch.setattr(ks.time, "time", lambda: (fake.clock + timedelta(seconds=1)).timestamp())
    start = reader.initialOffset()
    assert start["s0"]["start"].startswith("AT_TIMESTAMP:")
    fake.clock += timedelta(seconds=5)
    new = fake.put("s0", 2)
    _, rows = run_batch(reader, start)
    assert [q for _, q in keys(rows)] == new


def test_resharding_reads_parent_to_its_end_before_children(monkeypatch):
    fake = FakeKinesis({"p": ()})
    before = fake.put("p", 3)
    # One record per fetch and per batch, so the parent's tail takes several batches.
    reader = make_reader(fake, monkeypatch, maxRecordsPerFetch="1", maxRecordsPerShardPerBatch="1")
    offset = reader.initialOffset()
    for _ in range(3):
        offset, _ = run_batch(reader, offset)
    tail = fake.put("p", 2)  # written just before the split, not read yet
    fake.split("p", ("c1", "c2"))
    c1 = fake.put("c1", 2)
    c2 = fake.put("c2", 1)
    batch_of: dict[tuple[str, str], int] = {}
    for batch in range(8):
        offset, rows = run_batch(reader, offset)
        for key in keys(rows):
            assert key not in batch_of, f"{key} read twice"
            batch_of[key] = batch
    assert sorted(q for _, q in batch_of) == sorted(tail + c1 + c2)
    assert before[-1] not in {q for _, q in batch_of}
    last_parent_batch = max(b for (shard, _), b in batch_of.items() if shard == "p")
    first_child_batch = min(b for (shard, _), b in batch_of.items() if shard != "p")
    assert last_parent_batch <= first_child_batch
    assert offset["p"]["ended"] and not offset["c1"]["ended"]
    # Once the parent has ended and Kinesis no longer lists it (past retention), it leaves the offset, at the next
    # periodic ListShards (every shardListInterval; due at once here).
    del fake.shards["p"]
    reader.options.shard_list_interval = 0
    offset, rows = run_batch(reader, offset)
    assert "p" not in offset and rows == []


def rows_for(shard_id: str, seqs: list[int]) -> list[tuple]:
    return [("k", b"{}", STREAM, shard_id, str(seq), EPOCH) for seq in seqs]


def test_take_caps_each_shard_and_keeps_children_behind_their_parents():
    position = {"p": ko.shard_state("TRIM_HORIZON", "10"), "q": ko.shard_state("TRIM_HORIZON", "5")}
    fetched = {
        "p": ko.shard_state("TRIM_HORIZON", "13", ended=True),
        "q": ko.shard_state("TRIM_HORIZON", "7"),
        "c": ko.shard_state("TRIM_HORIZON", "21"),  # p's child, found by the fetcher
    }
    shards = [ko.Shard("p", closed=True), ko.Shard("q"), ko.Shard("c", ("p",))]
    buffered = {"p": rows_for("p", [9, 10, 11, 12, 13]), "q": rows_for("q", [6, 7]), "c": rows_for("c", [20, 21])}
    # Cap 2: p takes 11-12 and is not ended (13 is left), so its child may not move yet.
    end = ko.take(position, fetched, shards, buffered, cap=2)
    assert end == {
        "p": ko.shard_state("TRIM_HORIZON", "12"),
        "q": ko.shard_state("TRIM_HORIZON", "7"),
        "c": ko.shard_state("TRIM_HORIZON"),
    }
    # Next batch: p's last record ends it, and in the same pass its child starts.
    end2 = ko.take(end, fetched, shards, buffered, cap=2)
    assert end2["p"] == ko.shard_state("TRIM_HORIZON", "13", ended=True)
    assert end2["c"] == ko.shard_state("TRIM_HORIZON", "21") and end2["q"] == end["q"]
    # Kinesis forgets the ended parent: it leaves once fetching dropped it.
    assert "p" not in ko.take(end2, {k: v for k, v in fetched.items() if k != "p"}, shards[1:], buffered, cap=2)


def test_prefetch_thread_fetches_ahead_so_latest_offset_does_not_call_kinesis(monkeypatch):
    fake = FakeKinesis({"s0": (), "s1": ()})
    reader = make_reader(fake, monkeypatch, prefetch="true", pollInterval="10")
    fetching_threads = set()
    get_records = fake.get_records

    def recorded(**kwargs):
        fetching_threads.add(threading.current_thread().name)
        return get_records(**kwargs)

    fake.get_records = recorded
    try:
        offset = reader.initialOffset()
        assert reader.latestOffset() == offset  # starts the thread; nothing in the stream yet
        put = fake.put("s0", 3) + fake.put("s1", 2)
        got: list[tuple] = []
        deadline = time.monotonic() + 10
        while len(got) < len(put) and time.monotonic() < deadline:
            end = reader.latestOffset()
            rows = [row for part in reader.partitions(offset, end) for row in reader.read(part)]
            assert all(part.rows is not None for part in reader.partitions(offset, end))
            reader.commit(end)
            got += rows
            offset = end
            time.sleep(0.02)
        assert sorted(q for _, q in keys(got)) == sorted(put)
        # Spark pickles the reader for its Python workers: options only, none of the driver's thread state.
        copy = pickle.loads(pickle.dumps(reader))
        assert copy.options == reader.options and copy._thread is None and copy._buffers == {}
        assert fetching_threads == {f"kinesis-prefetch-{STREAM}"}  # never Spark's calling thread
    finally:
        reader.stop()
    assert not reader._thread.is_alive()


def test_a_full_prefetch_buffer_waits_for_the_next_planned_batch(monkeypatch):
    fake = FakeKinesis({"s0": ()})
    fake.put("s0", 10)
    reader = make_reader(
        fake, monkeypatch, prefetch="true", pollInterval="1000", maxRecordsPerFetch="2", maxRecordsPerShardPerBatch="2"
    )
    rounds = []
    fetch_round = reader._fetch_round
    monkeypatch.setattr(reader, "_fetch_round", lambda **kw: rounds.append(1) or fetch_round(**kw))
    try:
        reader.latestOffset()  # starts the thread, which fetches until one batch (2 records) waits unplanned
        time.sleep(0.3)
        calls, rounds_before = fake.calls.count("GetRecords"), len(rounds)
        time.sleep(0.5)
        # No polling loop while the buffer is full: no call, and at most one round (the 1 s poll interval).
        assert fake.calls.count("GetRecords") == calls and len(rounds) - rounds_before <= 1
        end = reader.latestOffset()  # plans those 2: the thread wakes at once and fetches the next 2
        deadline = time.monotonic() + 0.5
        while fake.calls.count("GetRecords") == calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fake.calls.count("GetRecords") == calls + 1 and end["s0"]["seq"] is not None
    finally:
        reader.stop()


def test_a_prefetch_failure_fails_the_next_latest_offset(monkeypatch):
    fake = FakeKinesis({"s0": ()})
    reader = make_reader(fake, monkeypatch, prefetch="true", pollInterval="10")

    def broken(**_):
        raise ClientError({"Error": {"Code": "AccessDeniedException"}}, "GetRecords")

    try:
        reader.latestOffset()
        fake.get_records = broken
        deadline = time.monotonic() + 10
        with pytest.raises(RuntimeError, match=f"fetching from Kinesis stream {STREAM} failed"):
            while time.monotonic() < deadline:
                reader.latestOffset()
                time.sleep(0.02)
    finally:
        reader.stop()


def test_fetch_paces_calls_and_backs_off_on_throttling():
    fake = FakeKinesis({"s0": ()})
    fake.put("s0", 3)
    now = [0.0]
    sleeps: list[float] = []
    call_times: list[float] = []
    real_get_records = fake.get_records

    def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 3))
        now[0] += seconds

    def timed_get_records(**kwargs):
        call_times.append(now[0])
        return real_get_records(**kwargs)

    fake.get_records = timed_get_records
    options = kf.KinesisOptions(stream=STREAM, max_records_per_fetch=1)
    fetcher = kf.ShardFetcher(fake, STREAM, "s0", ko.shard_state("TRIM_HORIZON"), options, sleep, lambda: now[0])
    fake.throttle_next = 3
    rows, caught_up = fetcher.fetch()
    assert len(rows) == 1 and not caught_up
    assert [s for s in sleeps if s >= 0.1][:3] == [0.1, 0.1, 0.2]  # exponential backoff (then pacing)
    for _ in range(2):
        rows, caught_up = fetcher.fetch()
    assert len(rows) == 1 and caught_up
    assert len(call_times) == 4 + 2
    # At most 5 GetRecords per second on one shard: calls at least 200 ms apart.
    assert min(b - a for a, b in itertools.pairwise(call_times)) >= 0.2 - 1e-9


@pytest.mark.parametrize(
    ("records", "behind", "caught_up"),
    [
        (0, 5000, True),  # nothing new: stop for this trigger even if Kinesis says it is behind
        (3, 0, True),  # at the tip
        (3, 200, True),  # a partial page, less than a trigger behind: the inflow moved the tip during the call
        (3, 5000, False),  # far behind: fetch on
        (10, 200, False),  # a full page: there may be more right away
    ],
)
def test_a_fetch_is_caught_up_without_chasing_a_moving_tip(records, behind, caught_up):
    class Client:
        def get_shard_iterator(self, **_):
            return {"ShardIterator": "it"}

        def get_records(self, **_):
            items = [
                {"PartitionKey": "k", "Data": b"{}", "SequenceNumber": str(i), "ApproximateArrivalTimestamp": None}
                for i in range(records)
            ]
            return {"Records": items, "NextShardIterator": "it", "MillisBehindLatest": behind}

    options = kf.KinesisOptions(stream=STREAM, max_records_per_fetch=10)
    fetcher = kf.ShardFetcher(Client(), STREAM, "s0", ko.shard_state("TRIM_HORIZON"), options, lambda _: None)
    rows, result = fetcher.fetch()
    assert len(rows) == records and result is caught_up


def test_a_shard_is_polled_at_kinesis_pace_while_behind_and_less_often_when_idle():
    fake = FakeKinesis({"s0": ()})
    fake.put("s0", 3)
    options = kf.KinesisOptions(stream=STREAM, max_records_per_fetch=2, min_fetch_period=0.2, poll_interval=0.5)
    now = [100.0]
    fetcher = kf.ShardFetcher(
        fake, STREAM, "s0", ko.shard_state("TRIM_HORIZON"), options, lambda _: None, lambda: now[0]
    )
    due = []
    for _ in range(3):
        fetcher.fetch()
        due.append(round(fetcher.due_at() - now[0], 3))
        now[0] += 1
    # A full page (more may wait): 200 ms. The rest of the records, caught up: 500 ms. Nothing new: 1 s.
    assert due == [0.2, 0.5, 1.0]


def test_read_range_fails_loudly_when_logged_records_are_gone():
    fake = FakeKinesis({"s0": ()})
    fake.put("s0", 2)
    fake.split("s0", ("s1",))
    options = kf.KinesisOptions(stream=STREAM, min_fetch_period=0)
    fetcher = kf.ShardFetcher(fake, STREAM, "s0", ko.shard_state("TRIM_HORIZON"), options)
    with pytest.raises(RuntimeError, match="retention"):
        list(kf.read_range(fetcher, str(10**30)))
