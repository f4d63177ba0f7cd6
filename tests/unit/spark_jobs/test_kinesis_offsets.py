"""The Kinesis source's offset logic and reader, against a small in-memory fake of the Kinesis API (no Spark run,
no LocalStack): multiple shards, empty shards, restart from a checkpointed offset, replay of a logged batch,
resharding (parents read before children), pacing and throttling backoff, and resuming when a checkpoint's sequence
number no longer exists (a re-created stream, lost records)."""

from __future__ import annotations

import itertools
import json
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

    def __init__(self, shards: dict[str, tuple[str, ...]], lost_error: str = "InvalidArgumentException"):
        self.shards = {sid: {"parents": parents, "records": [], "closed": False} for sid, parents in shards.items()}
        self.seq = itertools.count(49_000_000_000_000_000_000)
        self.iterators: dict[str, tuple[str, int]] = {}
        self.expired: set[str] = set()
        self.calls: list[str] = []
        self.throttle_next = 0
        self.clock = EPOCH
        self.lost_error = lost_error  # what GetShardIterator answers for a sequence number the shard does not have

    # --- test helpers
    def put(self, shard_id: str, count: int, key: str = "k", step_ms: int = 10) -> list[str]:
        shard = self.shards[shard_id]
        assert not shard["closed"], "cannot put into a closed shard"
        seqs = []
        for _ in range(count):
            self.clock += timedelta(milliseconds=step_ms)
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

    def recreate(self, first_seq: int) -> None:
        """The stream deleted and created again: same shard ids, no records, numbers from `first_seq` on (below the
        old ones, which Kinesis does not promise not to do). Every iterator handed out before is dead."""
        for shard in self.shards.values():
            shard["records"] = []
        self.seq = itertools.count(first_seq)
        self.expired |= set(self.iterators)
        self.clock += timedelta(seconds=30)

    def drop(self, shard_id: str, seqs: list[str]) -> None:
        """The store lost these records (e.g. a kill -9 between two of kinesis-mock's snapshots)."""
        self.shards[shard_id]["records"] = [
            r for r in self.shards[shard_id]["records"] if r["SequenceNumber"] not in seqs
        ]

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
            found = [i + 1 for i, r in enumerate(records) if r["SequenceNumber"] == StartingSequenceNumber]
            if not found:  # AWS's and kinesalite's wording; kinesis-mock answers ResourceNotFoundException
                message = (
                    f"StartingSequenceNumber {StartingSequenceNumber} used in GetShardIterator on shard {ShardId} "
                    f"in stream {StreamName} under account 000000000000 is invalid because it did not come from "
                    "this stream."
                )
                raise ClientError({"Error": {"Code": self.lost_error, "Message": message}}, "GetShardIterator")
            index = found[0]
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
        if ShardIterator in self.expired:
            raise ClientError({"Error": {"Code": "ExpiredIteratorException"}}, "GetRecords")
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


EPOCH_MS = round(EPOCH.timestamp() * 1000)


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
        "p": ko.shard_state("TRIM_HORIZON", "12", at=EPOCH_MS),
        "q": ko.shard_state("TRIM_HORIZON", "7", at=EPOCH_MS),
        "c": ko.shard_state("TRIM_HORIZON"),
    }
    # Next batch: p's last record ends it, and in the same pass its child starts.
    end2 = ko.take(end, fetched, shards, buffered, cap=2)
    assert end2["p"] == ko.shard_state("TRIM_HORIZON", "13", ended=True, at=EPOCH_MS)
    assert end2["c"] == ko.shard_state("TRIM_HORIZON", "21", at=EPOCH_MS) and end2["q"] == end["q"]
    # Kinesis forgets the ended parent: it leaves once fetching dropped it.
    assert "p" not in ko.take(end2, {k: v for k, v in fetched.items() if k != "p"}, shards[1:], buffered, cap=2)


def test_a_batch_takes_at_most_max_bytes_of_data_but_at_least_one_record():
    rows = [("k", b"x" * size, STREAM, "s", str(seq), EPOCH) for seq, size in enumerate([40, 40, 40, 500, 10], 1)]
    assert ko.batch_length(rows, cap=10) == 5  # no byte bound
    assert ko.batch_length(rows, cap=10, max_bytes=100) == 2
    assert ko.batch_length(rows, cap=10, max_bytes=120) == 3
    assert ko.batch_length(rows[3:], cap=10, max_bytes=100) == 1  # a record over the bound goes alone
    assert ko.batch_length(rows, cap=2, max_bytes=10_000) == 2
    assert not ko.holds_a_full_batch(rows[:2], cap=10, max_bytes=100)
    assert ko.holds_a_full_batch(rows[:3], cap=10, max_bytes=100)
    assert ko.holds_a_full_batch(rows[:3], cap=3)
    position = {"s": ko.shard_state("TRIM_HORIZON")}
    fetched = {"s": ko.shard_state("TRIM_HORIZON", "5")}
    end = ko.take(position, fetched, [ko.Shard("s")], {"s": rows}, cap=10, max_bytes=100)
    assert end["s"]["seq"] == "2"


def test_the_driver_buffers_and_plans_batches_bounded_by_bytes(monkeypatch):
    """Records of 23-24 bytes, 100 bytes per batch: each batch takes 4 of them, and fetching (2 records per call)
    stops as soon as a whole batch's bytes wait to be planned, so the driver never holds the whole backlog."""
    fake = FakeKinesis({"s0": ()})
    put = fake.put("s0", 40)
    reader = make_reader(fake, monkeypatch, maxRecordsPerFetch="2", maxBytesPerShardPerBatch="100")
    start, taken, batches = reader.initialOffset(), [], []
    while len(taken) < len(put) and len(batches) < 20:
        end = reader.latestOffset()
        buffered = reader._buffers["s0"][1]
        assert sum(len(row[1]) for row in buffered) < 100 + 2 * 24, "at most a batch and one fetch buffered"
        rows = [row for part in reader.partitions(start, end) for row in reader.read(part)]
        reader.commit(end)
        assert 0 < sum(len(row[1]) for row in rows) <= 100
        batches.append(len(rows))
        taken += [row[4] for row in rows]
        start = end
    assert taken == put, "every record once, in order"
    assert batches[0] == 4 and len(batches) >= 10


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


# --- loud resume: the checkpoint's sequence number no longer exists -------------------------------------------
def events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def millis(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def test_resume_state_starts_a_new_epoch_at_the_last_arrival_time():
    state = ko.shard_state("TRIM_HORIZON", "900", at=1_700_000_000_123)
    resumed = ko.resume_state(state)
    assert resumed == {
        **ko.shard_state("AT_TIMESTAMP:1700000000123"),
        "epoch": 1,
        "lost": "900",
        "lost_at": 1_700_000_000_123,
    }
    assert ko.epoch(ko.resume_state({**state, **resumed, "seq": "5", "at": 1_700_000_009_000})) == 2
    # An offset written before `at` existed: the only time it knows is its start marker.
    legacy = {"seq": "900", "start": "AT_TIMESTAMP:1600000000000", "ended": False}
    assert ko.resume_state(legacy)["start"] == "AT_TIMESTAMP:1600000000000"
    assert ko.resume_state({**legacy, "start": "TRIM_HORIZON"})["start"] == "TRIM_HORIZON"
    assert ko.epoch(legacy) == 0


def test_already_taken_skips_the_old_numbering_of_the_lost_records_millisecond_only():
    resumed = ko.resume_state(ko.shard_state("TRIM_HORIZON", "900", at=EPOCH_MS))
    same_ms, later = EPOCH, EPOCH + timedelta(milliseconds=1)
    assert ko.already_taken(resumed, ("k", b"", STREAM, "s", "899", same_ms))  # taken, still there
    assert not ko.already_taken(resumed, ("k", b"", STREAM, "s", "901", same_ms))  # same ms, not taken yet
    assert not ko.already_taken(resumed, ("k", b"", STREAM, "s", "3", later))  # a re-created stream's smaller number
    assert not ko.already_taken({**resumed, "seq": "3"}, ("k", b"", STREAM, "s", "899", same_ms))  # run under way
    no_time = ko.resume_state({"seq": "900", "start": "TRIM_HORIZON", "ended": False})
    assert ko.already_taken(no_time, ("k", b"", STREAM, "s", "899", later))
    assert not ko.already_taken(no_time, ("k", b"", STREAM, "s", "901", later))


def test_batch_ranges_compare_sequence_numbers_within_one_epoch_only():
    before = {"s": ko.shard_state("TRIM_HORIZON", "900", at=EPOCH_MS)}
    resumed = ko.resume_state(before["s"])
    after = {"s": {**resumed, "seq": "7", "at": EPOCH_MS + 5}}  # smaller number, later epoch: not backwards
    assert ko.batch_ranges(before, after) == [ko.ShardRange("s", ko.epoch_start(after["s"]), "7", EPOCH_MS + 5)]
    assert ko.batch_ranges(before, {"s": resumed}) == []  # resumed, nothing taken yet
    with pytest.raises(ValueError, match="backwards: epoch 1 > 0"):
        ko.batch_ranges(after, before)
    # Offsets already in checkpoints (no `at`, no `epoch`) still plan as before.
    legacy = {"s": {"seq": "10", "start": "TRIM_HORIZON", "ended": False}}
    legacy_end = {"s": {"seq": "20", "start": "TRIM_HORIZON", "ended": False}}
    assert ko.batch_ranges(legacy, legacy_end) == [ko.ShardRange("s", legacy["s"], "20")]


def test_a_recreated_stream_resumes_by_arrival_time_and_takes_each_record_once(monkeypatch, tmp_path):
    log = tmp_path / "events.jsonl"
    fake = FakeKinesis({"s0": (), "s1": ()})
    fake.put("s0", 3)
    fake.put("s1", 2)
    reader = make_reader(fake, monkeypatch, eventLog=str(log))
    committed, _ = run_batch(reader, reader.initialOffset())
    last_arrival = {
        sid: millis(shard["records"][-1]["ApproximateArrivalTimestamp"]) for sid, shard in fake.shards.items()
    }
    assert {sid: state["at"] for sid, state in committed.items()} == last_arrival
    reader.stop()

    # The stream is deleted and created again while the job is down; it numbers its records below the old ones.
    fake.recreate(first_seq=1_000)
    new = {"s0": fake.put("s0", 2), "s1": fake.put("s1", 3)}
    fake.calls.clear()
    restarted = make_reader(fake, monkeypatch, eventLog=str(log))
    assert restarted.partitions(committed, committed) == []
    end, rows = run_batch(restarted, committed)
    assert sorted(keys(rows)) == sorted((sid, q) for sid, seqs in new.items() for q in seqs)  # once each
    assert fake.calls.count("GetShardIterator AT_TIMESTAMP") == 2
    for sid in ("s0", "s1"):
        assert end[sid]["epoch"] == 1 and end[sid]["lost"] == committed[sid]["seq"]
        assert end[sid]["start"] == f"AT_TIMESTAMP:{last_arrival[sid]}"  # the last taken record's arrival
        assert end[sid]["seq"] == new[sid][-1]
    assert [part.shard_id for part in ko.batch_ranges(committed, end)] == ["s0", "s1"]  # no "goes backwards"

    # Counted once per shard, with what was lost and where reading resumed.
    logged = events(log)
    assert [(e["event"], e["shard"], e["lost_seq"]) for e in logged] == [
        ("resumed", sid, committed[sid]["seq"]) for sid in ("s0", "s1")
    ]
    assert logged[0]["resumed_at"] == datetime.fromtimestamp(last_arrival["s0"] / 1000, UTC).isoformat(
        timespec="milliseconds"
    )
    assert logged[0]["stream"] == STREAM and logged[0]["epoch"] == 1

    # The resumed batch replays identically from Kinesis (a restart before its commit) ...
    replaying = make_reader(fake, monkeypatch, eventLog=str(log))
    parts = replaying.partitions(committed, end)
    assert all(part.rows is None for part in parts)
    assert keys(row for part in parts for row in replaying.read(part)) == keys(rows)
    # ... and reading goes on after it without resuming again.
    later = fake.put("s0", 2)
    _, rows = run_batch(restarted, end)
    assert [q for _, q in keys(rows)] == later
    assert len(events(log)) == 2


def test_records_that_survive_a_loss_are_not_taken_again(monkeypatch, tmp_path):
    log = tmp_path / "events.jsonl"
    fake = FakeKinesis({"s0": ()}, lost_error="ResourceNotFoundException")  # kinesis-mock's answer
    fake.put("s0", 3)
    same_ms = fake.put("s0", 3, step_ms=0)  # three records in one millisecond
    reader = make_reader(fake, monkeypatch, eventLog=str(log), maxRecordsPerShardPerBatch="5")
    committed, rows = run_batch(reader, reader.initialOffset())
    assert committed["s0"]["seq"] == same_ms[1]  # the batch ended inside that millisecond

    fake.drop("s0", [same_ms[1]])  # the checkpoint's record is lost; its neighbours in the same ms survive
    newer = fake.put("s0", 2)
    restarted = make_reader(fake, monkeypatch, eventLog=str(log))
    restarted.partitions(committed, committed)
    end, rows = run_batch(restarted, committed)
    # same_ms[0] was taken and is skipped, same_ms[2] was not and is taken: nothing twice, nothing left out.
    assert [q for _, q in keys(rows)] == [same_ms[2], *newer]
    assert end["s0"]["start"] == f"AT_TIMESTAMP:{committed['s0']['at']}" and end["s0"]["lost"] == same_ms[1]
    assert [e["event"] for e in events(log)] == ["resumed"]
    assert "ResourceNotFoundException" in events(log)[0]["error"]


def test_an_offset_without_arrival_time_resumes_from_its_start_marker(monkeypatch, tmp_path):
    log = tmp_path / "events.jsonl"
    fake = FakeKinesis({"s0": ()})
    taken = fake.put("s0", 4)
    # A checkpoint written before `at` existed: it knows no time but its start marker.
    legacy = {"s0": {"seq": taken[-1], "start": "TRIM_HORIZON", "ended": False}}
    fake.drop("s0", taken[2:])  # the store kept only the first two
    newer = fake.put("s0", 2)
    reader = make_reader(fake, monkeypatch, eventLog=str(log))
    reader.partitions(legacy, legacy)
    end, rows = run_batch(reader, legacy)
    assert [q for _, q in keys(rows)] == newer  # the survivors numbered up to the lost one are not taken again
    assert end["s0"]["start"] == "TRIM_HORIZON" and end["s0"]["epoch"] == 1
    assert events(log)[0]["resumed_from"] == "TRIM_HORIZON" and events(log)[0]["resumed_at"] is None


def test_a_resume_waits_until_the_rows_of_the_old_run_are_committed(monkeypatch, tmp_path):
    fake = FakeKinesis({"s0": ()})
    old = fake.put("s0", 5)
    reader = make_reader(fake, monkeypatch, eventLog=str(tmp_path / "events.jsonl"), maxRecordsPerShardPerBatch="2")
    offset, rows = run_batch(reader, reader.initialOffset())  # all 5 fetched, 2 taken
    got = keys(rows)
    fake.recreate(first_seq=1_000)  # the buffered 3 are gone from Kinesis, and the iterator with them
    new = fake.put("s0", 3)
    offsets = [offset]
    for _ in range(4):
        offset, rows = run_batch(reader, offset)
        offsets.append(offset)
        got += keys(rows)
    assert [q for _, q in got] == old + new  # the buffered rows first, then the new run: each once, in order
    assert [ko.epoch(o["s0"]) for o in offsets] == [0, 0, 0, 1, 1]
    for start, end in itertools.pairwise(offsets):
        ko.batch_ranges(start, end)  # the offset log stays valid


def test_replay_of_a_batch_whose_records_are_gone_counts_a_lost_range_and_moves_on(monkeypatch, tmp_path):
    log = tmp_path / "events.jsonl"
    fake = FakeKinesis({"s0": ()})
    fake.put("s0", 2)
    first = make_reader(fake, monkeypatch, eventLog=str(log))
    start, _ = run_batch(first, first.initialOffset())  # batch 0 committed
    fake.put("s0", 3)
    end = first.latestOffset()  # batch 1 logged, then the process dies before its commit
    fake.recreate(first_seq=1_000)
    new = fake.put("s0", 4)

    restarted = make_reader(fake, monkeypatch, eventLog=str(log))
    [part] = restarted.partitions(start, end)
    assert list(restarted.read(part)) == []  # no crash: nothing of batch 1 is left (and nothing new is in it)
    restarted.commit(end)
    assert [(e["event"], e.get("lost_seq") or e.get("until_seq")) for e in events(log)] == [
        ("resumed", start["s0"]["seq"]),  # the replay's start vanished too
        ("lost_range", end["s0"]["seq"]),
    ]
    assert events(log)[1]["replayed"] == 0
    _, rows = run_batch(restarted, end)
    assert [q for _, q in keys(rows)] == new  # the query moves on: the new records, once
    assert [e["event"] for e in events(log)] == ["resumed", "lost_range", "resumed"]


def test_replay_yields_the_records_that_survive_and_counts_the_rest():
    fake = FakeKinesis({"s0": (), "s1": ()})
    seqs = fake.put("s0", 4)
    options = kf.KinesisOptions(stream=STREAM, min_fetch_period=0)
    fake.drop("s0", seqs[2:])  # the end of the logged range (seqs[0], seqs[3]] is gone, the shard is at its tip
    fetcher = kf.ShardFetcher(fake, STREAM, "s0", ko.shard_state("TRIM_HORIZON", seqs[0]), options)
    assert [row[4] for row in kf.read_range(fetcher, seqs[3])] == [seqs[1]]
    # Records of a closed shard end before the range does: the same, without waiting for a deadline.
    fake.put("s1", 2)
    fake.split("s1", ("s2",))
    fetcher = kf.ShardFetcher(fake, STREAM, "s1", ko.shard_state("TRIM_HORIZON"), options)
    assert len(list(kf.read_range(fetcher, str(10**30)))) == 2
