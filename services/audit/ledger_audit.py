"""The end-to-end ledger audit behind `make verify`: did every record the emulator sent land as its ledger says?

The emulator's ledger (emulator/ledger.py) holds each record's final outcome and, when acknowledged, where it was
written. Per destination (a topic on the Kafka path, a stream on the Kinesis path) this compares it with what landed:
the S3 sink's objects (every line, with its topic, partition and offset) and the streaming job's Delta tables (clean
rows and quarantine, each with its stream, shard and sequence number, read with delta-rs: no JVM).

  lost     an acknowledged record whose position (partition/offset, shard/sequence number) holds nothing
  doubled  a position that landed more than once, plus, per source row, landed copies beyond the times the row was
           sent (acknowledged or possibly written): a record written twice by a retry shows here, at a second
           position, even though each position landed once
  possibly written, landed   sent without a definitive answer and found: fine, it landed once
Clean when nothing is lost or doubled. The content comparison covers what landed while the runs were active
(Kafka's `offsets_for_times`, Delta's `arrival_time`): records written at other times by other writers (tests,
another tool) are not counted against the ledger, though their positions are not checked either.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from emulator import ledger as ledger_module
from pipeline import layout
from pipeline.kafka_clients import kafka_python_config
from pipeline.settings import KEY_COLUMNS, TABLES, Settings
from services.audit.sink_audit import AuditReport, ObjectCache, SinkObject, audit_until_complete, s3_objects

# A record's timestamp (Kafka's create time, Kinesis's arrival time) can precede the run's first ledger line by the
# time the first request took, and follow its last by the clock skew between processes: widen each run's window.
WINDOW_MARGIN_S = 5.0
EXAMPLES = 5

Position = tuple[Any, ...]


@dataclass
class DestinationAudit:
    path: str  # batch | stream
    table: str
    destination: str
    acked: int = 0
    possibly_written: int = 0
    failed: int = 0
    landed: int = 0  # distinct positions found for the ledger's acknowledged records
    lost: int = 0
    doubled: int = 0
    possibly_written_landed: int = 0
    lost_examples: list[str] = field(default_factory=list)
    doubled_examples: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.doubled)


@dataclass
class LedgerReport:
    runs: int
    unreadable_lines: int
    destinations: list[DestinationAudit]
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return all(d.clean for d in self.destinations)

    @property
    def lost(self) -> int:
        return sum(d.lost for d in self.destinations)

    @property
    def doubled(self) -> int:
        return sum(d.doubled for d in self.destinations)


@dataclass
class Landed:
    """What landed at one destination: the source key at each position (a position may repeat), and the keys of the
    positions that landed while a run was active."""

    at: list[tuple[Position, Any]] = field(default_factory=list)
    in_window: list[tuple[Position, Any]] = field(default_factory=list)


def compare(audit: DestinationAudit, entries: list[dict[str, Any]], landed: Landed, position_of) -> None:
    """Fill `audit` from the destination's ledger entries and what landed there (pure; unit-tested)."""
    sends: Counter = Counter()
    acked_keys: Counter = Counter()
    possibly: Counter = Counter()
    occurrences: Counter = Counter(position for position, _ in landed.at)
    for entry in entries:
        outcome = entry["outcome"]
        if outcome == ledger_module.ACKED:
            audit.acked += 1
            sends[entry["row"]] += 1
            acked_keys[entry["row"]] += 1
            position = position_of(entry)
            found = occurrences.get(position, 0)
            if found == 0:
                audit.lost += 1
                if len(audit.lost_examples) < EXAMPLES:
                    audit.lost_examples.append(f"row {entry['row']} acknowledged at {_show(position)}")
            else:
                audit.landed += 1
                if found > 1:
                    audit.doubled += found - 1
                    if len(audit.doubled_examples) < EXAMPLES:
                        audit.doubled_examples.append(f"{_show(position)} landed {found} times")
        elif outcome == ledger_module.POSSIBLY_WRITTEN:
            audit.possibly_written += 1
            sends[entry["row"]] += 1
            possibly[entry["row"]] += 1
        else:
            audit.failed += 1
    positions_by_key: dict[Any, set[Position]] = defaultdict(set)
    for position, key in landed.in_window:
        if key in sends:
            positions_by_key[key].add(position)
    for key, positions in positions_by_key.items():
        extra = len(positions) - sends[key]
        if extra > 0:
            audit.doubled += extra
            if len(audit.doubled_examples) < EXAMPLES:
                audit.doubled_examples.append(
                    f"row {key} landed at {len(positions)} positions, sent {sends[key]} times: "
                    + ", ".join(_show(p) for p in sorted(positions, key=str)[:4])
                )
        audit.possibly_written_landed += min(max(0, len(positions) - acked_keys[key]), possibly[key])


def _show(position: Position) -> str:
    return "/".join(str(part) for part in position)


def _kafka_position(entry: dict[str, Any]) -> Position:
    return (entry["destination"], entry.get("partition"), entry.get("offset"))


def _kinesis_position(entry: dict[str, Any]) -> Position:
    return (entry["destination"], entry.get("shard"), entry.get("sequence"))


def _windows(runs: dict[str, list[float]]) -> list[tuple[float, float]]:
    return [(start - WINDOW_MARGIN_S, end + WINDOW_MARGIN_S) for start, end in runs.values()]


def _in_windows(seconds: float | None, windows: list[tuple[float, float]]) -> bool:
    return seconds is not None and any(start <= seconds <= end for start, end in windows)


# --- the Kafka path: the bucket's objects --------------------------------------------------------------------
def kafka_landed(
    settings: Settings, objects: dict[TopicPartition, list[SinkObject]], windows: list[tuple[float, float]]
) -> dict[str, Landed]:
    """Per topic, every line of every sink object as (topic, partition, offset) -> key; the lines whose offsets Kafka
    timestamps within a run's window (`offsets_for_times`) also go to `in_window`."""
    landed: dict[str, Landed] = defaultdict(Landed)
    ranges = _offset_ranges(settings, list(objects), windows) if windows else {}
    for tp, found in objects.items():
        for sink_object in found:
            for line, key in enumerate(sink_object.keys):
                offset = sink_object.start + line
                position = (tp.topic, tp.partition, offset)
                landed[tp.topic].at.append((position, key))
                if any(start <= offset < stop for start, stop in ranges.get(tp, ())):
                    landed[tp.topic].in_window.append((position, key))
    return landed


def _offset_ranges(
    settings: Settings, partitions: list[TopicPartition], windows: list[tuple[float, float]]
) -> dict[TopicPartition, list[tuple[int, int]]]:
    """Per partition, the [first, stop) offsets whose timestamps fall within each window."""
    consumer = KafkaConsumer(**kafka_python_config(settings, "ledger-audit"), enable_auto_commit=False)
    try:
        end = consumer.end_offsets(partitions)
        ranges: dict[TopicPartition, list[tuple[int, int]]] = defaultdict(list)
        for start_s, stop_s in windows:
            firsts = consumer.offsets_for_times({tp: int(start_s * 1000) for tp in partitions})
            stops = consumer.offsets_for_times({tp: int(stop_s * 1000) for tp in partitions})
            for tp in partitions:
                first = firsts[tp].offset if firsts.get(tp) else end[tp]
                stop = stops[tp].offset if stops.get(tp) else end[tp]
                if stop > first:
                    ranges[tp].append((first, stop))
        return ranges
    finally:
        consumer.close()


# --- the Kinesis path: the Delta tables ----------------------------------------------------------------------
def delta_storage(settings: Settings, uri: str) -> tuple[str, dict[str, str]]:
    """(delta-rs table URI, storage options) for a table under the warehouse: s3a:// becomes s3://, and the local
    S3 store's endpoint and credentials are passed on."""
    if not uri.startswith("s3a://"):
        return uri, {}
    options = {"AWS_REGION": settings.aws_region}
    kwargs = settings.boto3_client_kwargs("s3")
    if "endpoint_url" in kwargs:
        options["AWS_ENDPOINT_URL"] = kwargs["endpoint_url"]
        options["AWS_ALLOW_HTTP"] = "true"
    if "aws_access_key_id" in kwargs:
        options["AWS_ACCESS_KEY_ID"] = kwargs["aws_access_key_id"]
        options["AWS_SECRET_ACCESS_KEY"] = kwargs["aws_secret_access_key"]
    return "s3://" + uri.removeprefix("s3a://"), options


def read_delta(settings: Settings, uri: str, columns: list[str] | None = None) -> list[dict[str, Any]] | None:
    """The table's rows (all columns, or only `columns`), or None when there is no Delta table at `uri` yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    table_uri, options = delta_storage(settings, uri)
    try:
        table = DeltaTable(table_uri, storage_options=options)
    except TableNotFoundError:
        return None
    return table.to_pyarrow_table(columns=columns).to_pylist()


def kinesis_landed(settings: Settings, warehouse: str, windows: list[tuple[float, float]]) -> tuple[dict, list[str]]:
    """Per stream, every clean and quarantined row as (stream, shard, sequence number) -> key; (landed, notes)."""
    landed: dict[str, Landed] = defaultdict(Landed)
    notes: list[str] = []

    def add(stream: str, shard: Any, sequence: Any, key: Any, arrival: Any) -> None:
        position = (stream, shard, sequence)
        landed[stream].at.append((position, key))
        if _in_windows(arrival.timestamp() if arrival is not None else None, windows):
            landed[stream].in_window.append((position, key))

    for table in TABLES:
        name = settings.delta_table(table)
        rows = read_delta(
            settings, layout.table_path(warehouse, name), ["ind", "shard_id", "sequence_number", "arrival_time"]
        )
        if rows is None:
            notes.append(f"no Delta table {name} under {warehouse} yet: is the streaming job running (make stream)?")
            continue
        for row in rows:
            add(settings.stream(table), row["shard_id"], row["sequence_number"], row["ind"], row["arrival_time"])
    quarantine = settings.stream_quarantine_table
    rows = read_delta(
        settings,
        layout.table_path(warehouse, quarantine),
        ["source_table", "value", "shard_id", "sequence_number", "arrival_time", "stream"],
    )
    for row in rows or []:
        table = row["source_table"]
        add(
            row["stream"], row["shard_id"], row["sequence_number"], _value_key(row["value"], table), row["arrival_time"]
        )
    return landed, notes


def _value_key(value: str | None, table: str) -> Any:
    try:
        record = json.loads(value or "")
    except ValueError:
        return None
    return record.get(KEY_COLUMNS.get(table, "")) if isinstance(record, dict) else None


# --- the audit -----------------------------------------------------------------------------------------------
def audit_ledger(
    settings: Settings,
    objects: dict[TopicPartition, list[SinkObject]] | None,
    warehouse: str,
    reading: ledger_module.Reading | None = None,
) -> LedgerReport:
    """Compare the ledger with the bucket (`objects`, from sink_audit.s3_objects) and the Delta tables."""
    reading = reading or ledger_module.load(ledger_module.ledger_dir(settings))
    tables = {settings.topic(t): t for t in TABLES} | {settings.stream(t): t for t in TABLES}
    by_destination: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    other = 0
    for entry in reading.entries:
        if entry.get("destination") in tables:
            by_destination[(entry["path"], entry["destination"])].append(entry)
        else:  # another user id's topics or streams (PIPELINE_USER_ID changed since)
            other += 1
    windows = _windows(reading.runs)
    notes = [f"{other} ledger entries for other user ids' destinations not audited"] if other else []
    kafka = kafka_landed(settings, objects or {}, windows) if any(p == "batch" for p, _ in by_destination) else {}
    kinesis: dict[str, Landed] = {}
    if any(p == "stream" for p, _ in by_destination):
        kinesis, missing = kinesis_landed(settings, warehouse, windows)
        notes += missing
    destinations = []
    for (path, destination), entries in sorted(by_destination.items()):
        audit = DestinationAudit(path, tables.get(destination, "?"), destination)
        if path == "batch":
            compare(audit, entries, kafka.get(destination, Landed()), _kafka_position)
        else:
            compare(audit, entries, kinesis.get(destination, Landed()), _kinesis_position)
        destinations.append(audit)
    return LedgerReport(len(reading.runs), reading.unreadable, destinations, notes)


def audit_ledger_until_complete(
    settings: Settings,
    objects_of,
    warehouse: str,
    wait_s: float,
    reading: ledger_module.Reading | None = None,
    sleep=time.sleep,
) -> LedgerReport:
    """Audit (the whole ledger, or `reading`); while records are only missing (the sink uploads on a timer, the
    streaming job in micro-batches), re-read for up to `wait_s` seconds. Doubled records never heal, so they end the
    wait at once."""
    deadline = time.monotonic() + wait_s
    reading = reading or ledger_module.load(ledger_module.ledger_dir(settings))  # read once: it does not change
    while True:
        report = audit_ledger(settings, objects_of(), warehouse, reading)
        if report.clean or report.doubled or time.monotonic() >= deadline:
            return report
        sleep(2.0)


def verify(
    settings: Settings, wait_s: float, warehouse: str, reading: ledger_module.Reading | None = None
) -> tuple[AuditReport, LedgerReport]:
    """`make verify`'s two audits, the offsets (sink_audit) and then the ledger (all of it, or `reading`), over one
    read of the bucket: the ledger audit reuses the objects the offset audit read (their ETags say what changed).
    Raises sink_audit.Unreachable when Kafka or S3 does not answer within `wait_s`."""
    cache: ObjectCache = {}
    offsets = audit_until_complete(settings, wait_s, cache=cache)
    ledger = audit_ledger_until_complete(
        settings, lambda: s3_objects(settings, settings.topics, cache), warehouse, wait_s, reading
    )
    return offsets, ledger


def render(report: LedgerReport) -> str:
    if not report.destinations:
        return "ledger: no emulator runs recorded yet (make emulate writes one)"
    width = max(len(d.destination) for d in report.destinations)
    lines = [
        f"ledger audit: {report.runs} emulator run(s)"
        + (f", {report.unreadable_lines} unreadable ledger line(s)" if report.unreadable_lines else ""),
        f"{'path':<6}  {'destination':<{width}}  {'acked':>7}  {'possibly':>8}  {'failed':>6}  {'landed':>7}"
        f"  {'lost':>5}  {'doubled':>7}",
    ]
    for d in report.destinations:
        lines.append(
            f"{d.path:<6}  {d.destination:<{width}}  {d.acked:>7}  {d.possibly_written:>8}  {d.failed:>6}"
            f"  {d.landed:>7}  {d.lost:>5}  {d.doubled:>7}"
        )
    for d in report.destinations:
        for example in d.lost_examples:
            lines.append(f"  LOST    {d.destination}: {example}")
        for example in d.doubled_examples:
            lines.append(f"  DOUBLED {d.destination}: {example}")
    lines += [f"  note: {note}" for note in report.notes]
    acked = sum(d.acked for d in report.destinations)
    possibly = sum(d.possibly_written for d in report.destinations)
    landed_possibly = sum(d.possibly_written_landed for d in report.destinations)
    if report.clean:
        lines.append(
            f"OK: all {acked} acknowledged records landed exactly once; nothing landed more often than it was sent"
            + (f"; {landed_possibly} of {possibly} possibly written records landed (once)" if possibly else "")
        )
    else:
        lines.append(f"FAILED: {report.lost} lost, {report.doubled} doubled of {acked} acknowledged records")
    return "\n".join(lines)
