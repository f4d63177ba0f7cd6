"""Trace a source row through the pipeline: `make trace IND=<n>` and the console's Trace page.

From the emulator's ledger (every record it sent, with where it was acknowledged):
- batch path: the REST proxy's acknowledgement (topic, partition, offset) -> the sink's S3 object holding that
  offset and the line in it -> what the last batch run made of it: its quarantine reason (the record's text is in
  `analytics/quarantine/<table>/`), or its cleaned row (`analytics/cleaned/<table>/`, by the table's key);
- stream path: the Kinesis acknowledgement (stream, shard, sequence number) -> the Delta row with that sequence
  number, in the table or in the quarantine table.
A stage that has not got the record yet says so (the S3 sink writes objects every few seconds; the batch job runs
daily), so a trace of a fresh record shows how far it has come.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from emulator import ledger as ledger_module
from pipeline import layout
from pipeline.settings import TABLES, Settings, get_settings
from services.console import sources
from services.console.flow import Readers


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _batch_outcome(readers: Readers, table: str, line: str, row: int) -> dict[str, Any]:
    """What the last batch run did with the record whose sink line is `line`."""
    settings = readers.settings
    quarantined = _find_rows(settings, layout.quarantine_path(layout.RESULTS_DIR, table) + "/", "value", line)
    if quarantined:
        return {"state": "quarantined", "reason": quarantined[0].get("reason"), "row": quarantined[0]}
    cleaned = _find_rows(settings, layout.cleaned_path(layout.RESULTS_DIR, table) + "/", "ind", row)
    if cleaned:
        return {"state": "cleaned", "row": cleaned[0]}
    report, _ = readers.report_memo.get()
    if report is None:
        return {"state": "not run", "note": "no batch run yet (make batch)"}
    return {"state": "not in the last run", "note": "the batch job ran before this record reached the bucket"}


def _find_rows(settings: Settings, prefix: str, column: str, value: Any) -> list[dict[str, Any]]:
    import pyarrow.compute as pc

    found: list[dict[str, Any]] = []
    for table in sources.parquet_tables(settings, prefix):
        if column in table.column_names:
            found += table.filter(pc.equal(table[column], value)).to_pylist()
    return found


def _kafka_hop(readers: Readers, entry: dict[str, Any]) -> dict[str, Any]:
    topic, partition, offset = entry["destination"], int(entry["partition"]), int(entry["offset"])
    hop: dict[str, Any] = {"kafka": {"topic": topic, "partition": partition, "offset": offset}}
    ends, error = readers.kafka_memo.get()
    if ends is None:
        hop["s3"] = {"state": "unknown", "note": f"Kafka unreachable: {error}"}
        return hop
    partitions = readers.sink.refresh({topic: ends.get(topic, {})})
    known = partitions.get((topic, partition))
    holder = known.object_at(offset) if known else None
    if holder is None:
        hop["s3"] = {"state": "not yet", "note": "the sink has not written this offset yet"}
        return hop
    key, line_number = holder
    body, _ = sources.read_object(readers.settings, key)
    lines = body.decode("utf-8", errors="replace").splitlines()
    line = lines[line_number] if line_number < len(lines) else None
    hop["s3"] = {"state": "written", "key": key, "line": line_number + 1, "text": line}
    if line is not None:
        hop["batch"] = _batch_outcome(readers, entry["table"], line, int(entry["row"]))
    return hop


def _kinesis_hop(readers: Readers, entry: dict[str, Any]) -> dict[str, Any]:
    settings = readers.settings
    sequence = str(entry["sequence"])
    hop: dict[str, Any] = {
        "kinesis": {"stream": entry["destination"], "shard": entry.get("shard"), "sequence": sequence}
    }
    where = f"where sequence_number = {_sql_text(sequence)}"
    for name, state in (
        (settings.delta_table(entry["table"]), "in table"),
        (settings.stream_quarantine_table, "quarantined"),
    ):
        rows = readers.delta.query(name, f"select * from t {where} limit 2")
        if rows:
            hop["delta"] = {"state": state, "table": name, "row": rows[0], "copies": len(rows)}
            return hop
    hop["delta"] = {"state": "not yet", "note": "no Delta row with this sequence number (is `make stream` running?)"}
    return hop


def trace(readers: Readers, row: int, run: str | None = None) -> dict[str, Any]:
    """Every ledger entry of source row `row` and where each went."""
    entries = sources.ledger_entries(ledger_module.ledger_dir(readers.settings), row, run, readers.destinations)
    hops = []
    for entry in entries:
        hop: dict[str, Any] = {
            "run": entry.get("run"),
            "path": entry.get("path"),
            "via": entry.get("via"),
            "table": entry.get("table"),
            "outcome": entry.get("outcome"),
            "attempts": entry.get("attempts"),
            "reason": entry.get("reason"),
        }
        try:
            if entry.get("outcome") == ledger_module.ACKED and "offset" in entry:
                hop |= _kafka_hop(readers, entry)
            elif entry.get("outcome") == ledger_module.ACKED and "sequence" in entry:
                hop |= _kinesis_hop(readers, entry)
        except Exception as error:  # a stage that cannot be read is shown as such, the rest of the trace stays
            hop["error"] = f"{type(error).__name__}: {error}"
        hops.append(hop)
    return {"row": row, "tables": list(TABLES), "entries": hops}


def _row_or_note(hop: dict[str, Any]) -> str:
    if not hop.get("row"):
        return hop.get("note", "")
    row = json.dumps(hop["row"], default=str)
    return f"{hop['table']}: {row}" if hop.get("table") else row


def render_text(result: dict[str, Any]) -> str:
    """The trace as `make trace` prints it."""
    lines = [f"source row {result['row']}: {len(result['entries'])} ledger entries"]
    if not result["entries"]:
        lines.append(
            "  the emulator's ledger has no record of this row (make emulate sends rows; ledger: make clean resets)"
        )
    for hop in result["entries"]:
        lines.append(
            f"- {hop['table']} via {hop['via']} ({hop['path']} path, run {hop['run']}): {hop['outcome']}"
            f" after {hop['attempts']} attempt(s)" + (f": {hop['reason']}" if hop.get("reason") else "")
        )
        if "kafka" in hop:
            k = hop["kafka"]
            lines.append(f"    kafka   {k['topic']} partition {k['partition']} offset {k['offset']}")
        if "s3" in hop:
            s3 = hop["s3"]
            where = f"s3://{{bucket}}/{s3['key']} line {s3['line']}" if s3.get("key") else s3.get("note", "")
            lines.append(f"    s3      {s3['state']}: {where}")
        if "batch" in hop:
            lines.append(
                f"    batch   {hop['batch']['state']}: {hop['batch'].get('reason') or _row_or_note(hop['batch'])}"
            )
        if "kinesis" in hop:
            k = hop["kinesis"]
            lines.append(f"    kinesis {k['stream']} {k['shard']} sequence {k['sequence']}")
        if "delta" in hop:
            lines.append(f"    delta   {hop['delta']['state']}: {_row_or_note(hop['delta'])}")
        if hop.get("error"):
            lines.append(f"    error   {hop['error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.console.trace", description=__doc__.splitlines()[0])
    parser.add_argument("--ind", type=int, required=True, help="the source row: pin `index`, geo and user `ind`")
    parser.add_argument("--run", help="only this emulator run (a ledger file's name)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    settings = get_settings()
    result = trace(Readers(settings), args.ind, args.run)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(render_text(result).replace("{bucket}", settings.bucket))
    return 0 if result["entries"] else 1


if __name__ == "__main__":
    sys.exit(main())
