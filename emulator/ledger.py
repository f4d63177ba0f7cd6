"""The emulator's ledger: one JSON line per record it sent, with the record's final outcome and, once acknowledged,
where it was written (topic, partition, offset; or stream, shard, sequence number).

`make verify` (services/audit) compares the ledger with what landed (the bucket's objects for the Kafka path, the
Delta tables for the Kinesis path): every acknowledged record present exactly once, nothing present more often than
it was sent. A run writes one file, `<data dir>/ledger/<run id>.jsonl`, appended as outcomes arrive and flushed at
least once a second, so a killed emulator leaves everything up to its last second. The ledger lives under the
stack's data folder, so `make clean` deletes it with the data it describes, and Docker mode's one-off containers
write it to the mounted state folder, where both modes' tools read it.

Outcomes:
  acked             the service acknowledged the record (offset or sequence number recorded);
  possibly_written  the answer came too late or broke off after the request was sent, or the service said so
                    (the proxy's "possibly written" delivery errors): it may or may not have landed, and it was not
                    re-sent, so it can land at most once;
  failed            refused, or retried until out of attempts, with answers that say it was not written.

A ledger line is plain JSON so a user (or `jq`) can read it: see docs/design/ledger.md.

Beside each run's lines the ledger keeps `<run id>.summary.json`, rewritten (atomically) at every flush: the run's
outcome counts per table and destination, its latest latencies and its newest entry's time. The console shows those
instead of parsing every line, whose cost grew with the emulator's rate (docs/BENCHMARKS.md, console cost); the lines
stay the record that `make verify` audits, and the console parses them itself when a summary is stale (a killed run).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.private import write_private
from pipeline.settings import Settings

ACKED = "acked"
POSSIBLY_WRITTEN = "possibly_written"
FAILED = "failed"
OUTCOMES = (ACKED, POSSIBLY_WRITTEN, FAILED)
FLUSH_EVERY_S = 1.0
LATENCY_SAMPLES = 500  # the summary's latest latencies (ms), the console's p50/p95


def summary_path(ledger_file: Path) -> Path:
    """The summary beside a run's `<run id>.jsonl`."""
    return ledger_file.with_name(ledger_file.name.removesuffix(".jsonl") + ".summary.json")


def ledger_dir(settings: Settings) -> Path:
    return settings.data_dir / "ledger"


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Entry:
    """One record's final outcome. `where` is {partition, offset} (Kafka) or {shard, sequence} (Kinesis)."""

    table: str
    row: int
    destination: str
    outcome: str
    attempts: int
    where: dict[str, Any] | None = None
    reason: str = ""
    # Milliseconds from the record's first send to its final answer (retries included): the console's latency.
    ms: float | None = None

    def line(self, run: str, path: str, via: str) -> dict[str, Any]:
        line: dict[str, Any] = {
            "run": run,
            "at": round(time.time(), 3),
            "path": path,
            "via": via,
            "table": self.table,
            "row": self.row,
            "destination": self.destination,
            "outcome": self.outcome,
            "attempts": self.attempts,
        }
        if self.where:
            line.update(self.where)
        if self.reason:
            line["reason"] = self.reason
        if self.ms is not None:
            line["ms"] = round(self.ms, 1)
        return line


class Ledger:
    """Appends entries of one run; flushes at most a second after a write and on close."""

    def __init__(self, folder: Path, run: str, path: str, via: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.run, self.path, self.via = run, path, via
        self.file_path = folder / f"{run}.jsonl"
        self._file = self.file_path.open("a", encoding="utf-8")
        self._flushed = time.monotonic()
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self._tally: Counter = Counter()  # (table, destination, outcome) -> entries, for the summary
        self._latencies: deque = deque(maxlen=LATENCY_SAMPLES)
        self._last_at = 0.0
        # The run's first line: when it started, so the audit knows which window of each destination it covers.
        self._file.write(json.dumps({"run": run, "event": "start", "at": round(time.time(), 3), "path": path}) + "\n")
        self.flush()

    def record(self, entry: Entry) -> None:
        line = entry.line(self.run, self.path, self.via)
        self._file.write(json.dumps(line, default=str) + "\n")
        self.counts[entry.outcome] += 1
        self._tally[(entry.table, entry.destination, entry.outcome)] += 1
        if "ms" in line:
            self._latencies.append(line["ms"])
        self._last_at = line["at"]
        if time.monotonic() - self._flushed >= FLUSH_EVERY_S:
            self.flush()

    def flush(self, complete: bool = False) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._flushed = time.monotonic()
        self._write_summary(complete)

    def _write_summary(self, complete: bool) -> None:
        """The summary of every line written so far (`bytes` of them); `complete` once the run has closed its file.
        Replaced atomically: a reader sees the previous summary or this one, and reads the lines when it finds none."""
        summary = {
            "run": self.run,
            "path": self.path,
            "via": self.via,
            "bytes": os.fstat(self._file.fileno()).st_size,
            "complete": complete,
            "written_at": round(time.time(), 3),
            "last_at": self._last_at,
            "counts": [[table, destination, outcome, n] for (table, destination, outcome), n in self._tally.items()],
            "ms": list(self._latencies),
        }
        write_private(summary_path(self.file_path), json.dumps(summary))

    def close(self) -> None:
        if not self._file.closed:
            self.flush(complete=True)
            self._file.close()


@dataclass
class Reading:
    """What the ledger folder holds: entries (oldest run first), each run's (start, last outcome) in epoch seconds,
    and the lines that could not be read (a line torn by a killed emulator is counted, not silently skipped)."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, list[float]] = field(default_factory=dict)
    unreadable: int = 0


def load(folder: Path, runs: list[str] | None = None) -> Reading:
    """Every run's entries in `folder`, or only those of `runs` (run ids)."""
    reading = Reading()
    if not folder.is_dir():
        return reading
    files = sorted(folder.glob("*.jsonl")) if runs is None else [folder / f"{run}.jsonl" for run in runs]
    for file in files:
        if not file.exists():
            continue
        with file.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                    run, at = entry["run"], float(entry["at"])
                except (ValueError, KeyError, TypeError):
                    reading.unreadable += 1
                    continue
                window = reading.runs.setdefault(run, [at, at])
                window[0], window[1] = min(window[0], at), max(window[1], at)
                if entry.get("outcome") in OUTCOMES:
                    reading.entries.append(entry)
                elif entry.get("event") != "start":
                    reading.unreadable += 1
    return reading
