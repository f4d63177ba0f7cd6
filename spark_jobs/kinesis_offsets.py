"""The Kinesis source's offsets: pure functions over plain dicts, tested without Spark or Kinesis.

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
