"""The Kinesis source's offsets: pure functions over plain dicts, tested without Spark or Kinesis.

How offsets work (exactly-once needs every batch to be re-readable with the same content):
- An offset is a JSON dict `{shardId: {"seq": last sequence number taken or null, "at": its arrival time (epoch
  ms) or null, "start": where the shard's reading began ("TRIM_HORIZON" or "AT_TIMESTAMP:<epoch ms>"), "ended":
  the shard is closed and read to its end}}`, plus the resume keys below after a resume.
  Spark writes it to the checkpoint's offset log before a batch runs. Every bound is a concrete position: `latest`
  is resolved once, at the query's first start, into `AT_TIMESTAMP:<now>`, so a replayed batch never depends on
  when it is replayed.
- The driver fetches from the last position, at most `minFetchPeriod` apart per shard, backing off on
  ProvisionedThroughputExceededException, and keeps the fetched records; `latestOffset` takes up to
  `maxRecordsPerShardPerBatch` of them and `maxBytesPerShardPerBatch` of their data per shard (`take`), and `partitions(start, end)` makes one partition per
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

When the position is gone (loud resume): if Kinesis no longer has a shard's sequence number `seq` (the stream was
deleted and re-created, or the store lost records), GetShardIterator AFTER_SEQUENCE_NUMBER fails
(InvalidArgumentException in AWS and kinesalite, ResourceNotFoundException in kinesis-mock). Reading then resumes,
and the query does not fail:
- From the nearest valid position by arrival time: AT_TIMESTAMP `at`, the arrival of the last record taken. An
  offset written before `at` existed falls back to its start marker (`AT_TIMESTAMP:<ms>`, or TRIM_HORIZON: all that
  is left), the only time it knows.
- Resuming begins a new run of the shard with a new start marker and a higher epoch: `{"seq": null, "at": null,
  "start": "AT_TIMESTAMP:<at>", "epoch": n + 1, "lost": <the vanished seq>, "lost_at": <its at>}` (`epoch` absent
  means 0). Sequence numbers are compared within one epoch only, because a re-created stream may number its records
  below the old ones. So the rule for the offset log is: per shard the epoch never decreases, and within one epoch
  `seq` never decreases. `batch_ranges` reads a shard whose epoch grew between two offsets from the start of the new
  run, which keeps a replayed batch the same batch.
- Records that were taken before and still exist are not taken again: at the start of a resumed run, a record that
  arrived no later than `lost_at` and does not number above `lost` is skipped (`already_taken`). Arrival times do
  not decrease within a shard, so these are records of the old numbering from `lost`'s own millisecond (AT_TIMESTAMP
  returns records from that millisecond on). Records that arrived later are new, whatever their number: kinesis-mock,
  after losing records, numbers new ones from the count it kept, below the lost ones.
- Without `lost_at` (only offsets written before `at` existed), the sequence number alone decides: every record
  numbered up to `lost` counts as taken. That skips every survivor, and is right for a re-created stream in
  kinesalite and kinesis-mock, whose numbers begin with the shard's creation time. After kinesis-mock lost records
  in place, it also skips the new records numbered below `lost` (the resume is logged, those records are not
  counted); re-reading all survivors instead would duplicate the stream's whole history.
- Each resume is logged at WARNING and appended to the source's event log (`eventLog` option), which the streaming
  job counts into its status file. A logged batch whose records are gone is replayed with what is left, and the
  missing range is logged and counted the same way (spark_jobs/kinesis_fetch.py).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TRIM_HORIZON = "TRIM_HORIZON"
AT_TIMESTAMP = "AT_TIMESTAMP:"
INITIAL_POSITIONS = ("earliest", "trim_horizon", "latest", "at_timestamp")

Offset = dict[str, dict[str, Any]]
Row = tuple[str, bytes, str, str, str, datetime]


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


def shard_state(start: str, seq: str | None = None, ended: bool = False, at: int | None = None) -> dict[str, Any]:
    return {"seq": seq, "start": start, "ended": ended, "at": at}


def epoch(state: dict[str, Any]) -> int:
    """How many times reading this shard resumed after its position vanished (0 in offsets that predate resuming)."""
    return int(state.get("epoch", 0))


def epoch_start(state: dict[str, Any]) -> dict[str, Any]:
    """Where the run of `state` (its epoch) began: its start marker, before any record was taken."""
    return {**state, "seq": None, "at": None, "ended": False}


def resume_state(state: dict[str, Any]) -> dict[str, Any]:
    """The state to read on from when Kinesis no longer has `state`'s sequence number: a new run (epoch) from the
    arrival time of the last record taken, or from the old start marker when no time is known."""
    at = state.get("at")
    start = f"{AT_TIMESTAMP}{at}" if at is not None else state["start"]
    return {**shard_state(start), "epoch": epoch(state) + 1, "lost": state["seq"], "lost_at": at}


def arrival_ms(row: Row) -> int | None:
    """A row's ApproximateArrivalTimestamp in epoch milliseconds."""
    return None if row[5] is None else round(row[5].timestamp() * 1000)


def already_taken(state: dict[str, Any], row: Row) -> bool:
    """Whether `row`, read at the start of a resumed run (`state` has taken nothing yet), was taken before the
    resume: it arrived no later than the vanished record and does not number above it (module docstring)."""
    if state["seq"] is not None or state.get("lost") is None:
        return False
    if seq_number(row[4]) > seq_number(state["lost"]):
        return False
    lost_at, arrived = state.get("lost_at"), arrival_ms(row)
    return lost_at is None or arrived is None or arrived <= lost_at


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


def advance(offset: Offset, shard_id: str, last_seq: str | None, ended: bool, at: int | None = None) -> Offset:
    """The offset after taking records up to `last_seq` (None: none taken; `at`: its arrival) from `shard_id`."""
    state = dict(offset[shard_id])
    if last_seq is not None:
        state["seq"], state["at"] = last_seq, at
    state["ended"] = state["ended"] or ended
    return {**offset, shard_id: state}


@dataclass(frozen=True)
class ShardRange:
    """Records of one shard after `start` (a shard state) up to and including sequence number `end_seq`, which
    arrived at `end_at` (epoch ms; None in offsets that predate it)."""

    shard_id: str
    start: dict[str, Any]
    end_seq: str
    end_at: int | None = None


def batch_ranges(start: Offset, end: Offset) -> list[ShardRange]:
    """One range per shard with records in (start, end]. A shard missing from `start` (it appeared during the
    batch), or whose reading resumed during the batch (a higher epoch in `end`), is read from the start of its run
    in `end`."""
    ranges = []
    for shard_id, end_state in sorted(end.items()):
        if end_state["seq"] is None:
            continue
        start_state = start.get(shard_id)
        if start_state is None or epoch(start_state) < epoch(end_state):
            start_state = epoch_start(end_state)
        elif epoch(start_state) > epoch(end_state):
            raise ValueError(
                f"offset of shard {shard_id} goes backwards: epoch {epoch(start_state)} > {epoch(end_state)}"
            )
        if start_state["seq"] == end_state["seq"]:
            continue
        if start_state["seq"] is not None and seq_number(start_state["seq"]) > seq_number(end_state["seq"]):
            raise ValueError(f"offset of shard {shard_id} goes backwards: {start_state['seq']} > {end_state['seq']}")
        ranges.append(ShardRange(shard_id, start_state, end_state["seq"], end_state.get("at")))
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


def batch_length(rows: Sequence[Row], cap: int, max_bytes: int | None = None) -> int:
    """How many of `rows` (one shard's, in order) one batch takes: at most `cap` rows whose data is at most
    `max_bytes` in all (None: no byte bound), and at least one row, so a record larger than `max_bytes` goes alone."""
    if max_bytes is None:
        return min(len(rows), cap)
    total = 0
    for index, row in enumerate(rows[:cap]):
        total += len(row[1])
        if total > max_bytes:
            return max(index, 1)
    return min(len(rows), cap)


def holds_a_full_batch(rows: Sequence[Row], cap: int, max_bytes: int | None = None) -> bool:
    """True when `rows` (one shard's records fetched and not yet planned) already make a whole batch: fetching that
    shard waits until it is planned, which bounds the driver's buffer by records and by bytes."""
    return len(rows) >= cap or (max_bytes is not None and sum(len(row[1]) for row in rows) >= max_bytes)


def take(
    position: Offset,
    fetched: Offset,
    shards: Sequence[Shard],
    buffered: dict[str, Sequence[Row]],
    cap: int,
    max_bytes: int | None = None,
) -> Offset:
    """The next batch's end offset. From `position` (the previous batch's end), each shard takes the rows fetched
    since (`buffered[shard]`, in order; `fetched` is how far fetching got), at most `cap` of them and `max_bytes` of
    their data (`batch_length`). A shard is ended
    once it is fetched to its end and every fetched row is taken. A child shard moves only once each of its parents
    is ended in the result, so records of one key stay in order across a split or merge. Shards that fetching added
    (resharding) join at their start marker, and so does a shard whose fetching resumed (a higher epoch in
    `fetched`; its buffer then holds rows of the new run only); an ended shard that fetching dropped (Kinesis forgot
    it) leaves."""
    end = {
        sid: dict(position[sid])
        if sid in position and (sid not in fetched or epoch(position[sid]) >= epoch(fetched[sid]))
        else epoch_start(fetched[sid])
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
            taken = rows[: batch_length(rows, cap, max_bytes)]
            if taken:
                end[sid]["seq"], end[sid]["at"] = taken[-1][4], arrival_ms(taken[-1])
            end[sid]["ended"] = bool(fetched[sid]["ended"]) and len(taken) == len(rows)
    return end
