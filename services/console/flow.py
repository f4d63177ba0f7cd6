"""The flow: each stage of both paths with its count, its lag behind the stage before and its recent latency.

A stage's `count` is what has reached it since the stack's data was created (`make clean` starts everything at 0);
`behind` is how many of the previous stage's records it has not got yet (None where the two counts are not the same
kind of thing); `latency` is the stage's own recent timing, in words. The same numbers feed the page (`/api/flow`)
and `tests/integration/test_console.py`, which compares them with `make verify`'s audit and the Delta tables.

Batch path:  emulator (acked) -> gateway -> Kafka (end offsets) -> S3 (offsets in objects) -> batch job (last run)
Stream path: emulator (acked) -> gateway -> Kinesis (records) -> streaming job (batches) -> Delta (+ quarantine)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from emulator import ledger as ledger_module
from pipeline.settings import Settings
from services.console import sources
from services.console.sources import Memo

ACKED, POSSIBLY, FAILED = ledger_module.ACKED, ledger_module.POSSIBLY_WRITTEN, ledger_module.FAILED


@dataclass
class Readers:
    """The console's sources, each behind its own cache; one instance per console process."""

    settings: Settings

    def __post_init__(self) -> None:
        settings = self.settings
        self.destinations = frozenset([*settings.topics, *settings.streams])
        self.ledger = sources.LedgerCounts(ledger_module.ledger_dir(settings), self.destinations)
        self.kafka = sources.KafkaOffsets(settings)
        self.sink = sources.SinkProgress(settings)
        self.kinesis = sources.KinesisCounts(settings)
        self.delta = sources.DeltaTables(settings)
        self.ledger_memo = Memo(1.0, self.ledger.refresh)
        self.kafka_memo = Memo(1.0, self.kafka.read)
        self.sink_memo = Memo(3.0, self._sink)
        self.kinesis_memo = Memo(2.0, self.kinesis.refresh)
        self.delta_memo = Memo(3.0, self.delta.summary)
        self.stream_memo = Memo(1.0, lambda: sources.stream_status(settings))
        self.report_memo = Memo(10.0, lambda: sources.report_object(settings))
        self.results_memo = Memo(10.0, self._results)
        self._results_of: tuple[str, dict[str, Any]] | None = None

    def _results(self) -> dict[str, Any] | None:
        """The last batch run: rows of the nine results, its history record and its quarantine summary; read again
        only when a new report says the batch job ran again."""
        from orchestration.tasks import result_row_counts

        report, _ = self.report_memo.get()
        if report is None:
            return None
        if self._results_of is None or self._results_of[0] != report["etag"]:
            client = sources.s3_client(self.settings)
            last = {
                "counts": result_row_counts(self.settings, client),
                "run": sources.last_batch_run(self.settings),
                "quarantine": sources.quarantine_summary(self.settings),
            }
            self._results_of = (report["etag"], last)
        return self._results_of[1]

    def memos(self) -> list[Memo]:
        return [
            self.ledger_memo,
            self.kafka_memo,
            self.sink_memo,
            self.kinesis_memo,
            self.delta_memo,
            self.stream_memo,
            self.report_memo,
            self.results_memo,
        ]

    def _sink(self):
        ends, error = self.kafka_memo.get()
        if ends is None:
            raise RuntimeError(f"no Kafka partitions to look for ({error})")
        return self.sink.refresh(ends)


def _ago(epoch: float | None) -> str | None:
    if not epoch:
        return None
    seconds = max(0.0, time.time() - epoch)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _latency(ledger: sources.LedgerCounts, path: str) -> str | None:
    values = list(ledger.latencies.get(path, ()))
    if not values:
        return None
    p50, p95 = sources.percentile(values, 0.5), sources.percentile(values, 0.95)
    return f"ack p50 {p50:.0f} ms, p95 {p95:.0f} ms (last {len(values)})"


def _stage(name: str, count: int | None, previous: int | None, **extra: Any) -> dict[str, Any]:
    behind = None if count is None or previous is None else max(0, previous - count)
    return {"name": name, "count": count, "behind": behind, **extra}


def _emulator_stages(ledger: sources.LedgerCounts | None, path: str, error: str | None) -> list[dict[str, Any]]:
    if ledger is None:
        return [_stage("emulator", None, None, error=error), _stage("gateway", None, None, error=error)]
    acked = ledger.total(path, ACKED)
    possibly, failed = ledger.total(path, POSSIBLY), ledger.total(path, FAILED)
    gateway = ledger.total(path, ACKED, via="gateway")
    return [
        _stage(
            "emulator",
            acked,
            None,
            detail=f"sent {acked + possibly + failed}: acked {acked}, possibly written {possibly}, failed {failed}",
            latency=_latency(ledger, path),
            freshness=_ago(ledger.last_at.get(path)),
            error=error,
        ),
        _stage(
            "gateway",
            gateway,
            None,
            detail=f"acked through API Gateway {gateway}; straight to the REST proxy {acked - gateway}",
            error=error,
        ),
    ]


def _run_summary(run: dict[str, Any] | None) -> str:
    """`; run <id> took 35.2 s: read 600, quarantined 3` from the run's history record."""
    if not run:
        return ""
    tables = run.get("tables", {})
    read = sum(t.get("read", 0) for t in tables.values())
    quarantined = sum(t.get("quarantined", 0) for t in tables.values())
    return f"; run {run['run_id']} took {run['seconds']} s: read {read}, quarantined {quarantined}"


def batch_path(readers: Readers) -> list[dict[str, Any]]:
    ledger, ledger_error = readers.ledger_memo.get()
    stages = _emulator_stages(ledger, "batch", ledger_error)
    acked = stages[0]["count"]
    ends, kafka_error = readers.kafka_memo.get()
    kafka_total = sum(sum(p.values()) for p in ends.values()) if ends else None
    per_topic = {topic: sum(p.values()) for topic, p in (ends or {}).items()}
    stages.append(
        _stage(
            "kafka",
            kafka_total,
            acked,
            detail=", ".join(f"{topic} {n}" for topic, n in per_topic.items()) or "no topics",
            topics=per_topic,
            error=kafka_error,
        )
    )
    sink, sink_error = readers.sink_memo.get()
    landed: dict[str, int] = {}
    newest = None
    objects = 0
    for (topic, _partition), known in (sink or {}).items():
        landed[topic] = landed.get(topic, 0) + known.landed
        objects += known.objects
        if known.newest_modified and (newest is None or known.newest_modified > newest):
            newest = known.newest_modified
    stages.append(
        _stage(
            "s3",
            sum(landed.values()) if sink is not None else None,
            kafka_total,
            detail=f"{objects} objects; " + ", ".join(f"{topic} {n}" for topic, n in landed.items()),
            topics=landed,
            freshness=_ago(newest),
            latency=f"newest object written {_ago(newest)}" if newest else None,
            error=sink_error,
        )
    )
    report, report_error = readers.report_memo.get()
    last, results_error = readers.results_memo.get()
    results = (last or {}).get("counts")
    present = [n for n in (results or {}).values() if n is not None]
    stages.append(
        _stage(
            "batch",
            len(present) if results is not None else None,
            None,
            detail=(
                f"last run {_ago(report['modified'])}: {len(present)} of {len(results or {})} results"
                + _run_summary((last or {}).get("run"))
                if report
                else "no batch run yet (make batch)"
            ),
            results=results or {},
            run=(last or {}).get("run"),
            freshness=_ago(report["modified"]) if report else None,
            error=report_error or results_error,
        )
    )
    return stages


def stream_path(readers: Readers) -> list[dict[str, Any]]:
    settings = readers.settings
    ledger, ledger_error = readers.ledger_memo.get()
    stages = _emulator_stages(ledger, "stream", ledger_error)
    acked = stages[0]["count"]
    streams, kinesis_error = readers.kinesis_memo.get()
    kinesis_total = sum(s["records"] for s in streams.values()) if streams else None
    arrivals = [s["last_arrival"] for s in (streams or {}).values() if s.get("last_arrival")]
    stages.append(
        _stage(
            "kinesis",
            kinesis_total,
            acked,
            detail=", ".join(f"{name} {s['records']} ({s['shards']} shards)" for name, s in (streams or {}).items()),
            streams={name: s["records"] for name, s in (streams or {}).items()},
            freshness=_ago(max(arrivals)) if arrivals else None,
            error=kinesis_error,
        )
    )
    status, _ = readers.stream_memo.get()
    queries = (status or {}).get("queries", [])
    batches = sum(1 + (q.get("batch_id") or 0) for q in queries if q.get("batch_id") is not None)
    updated = status.get("updated_at") if status else None
    triggers = [q.get("trigger_ms") for q in queries if q.get("trigger_ms") is not None]
    stages.append(
        _stage(
            "streaming job",
            None,
            None,
            detail=(
                "; ".join(
                    f"{q['name']}: batch {q.get('batch_id')}, {q.get('input_rows')} rows in the last, "
                    f"{'active' if q.get('active') else 'stopped'}"
                    for q in queries
                )
                or "not running (make stream)"
            ),
            latency=f"last trigger {max(triggers)} ms" if triggers else None,
            freshness=_ago(datetime.fromisoformat(updated).timestamp()) if updated else None,
            batches=batches,
        )
    )
    tables, delta_error = readers.delta_memo.get()
    quarantine = settings.stream_quarantine_table
    clean = {name: t["rows"] for name, t in (tables or {}).items() if name != quarantine}
    quarantined = (tables or {}).get(quarantine, {}).get("rows", 0)
    writes = [t["last_write"] for t in (tables or {}).values() if t.get("last_write")]
    stages.append(
        _stage(
            "delta",
            sum(clean.values()) + quarantined if tables is not None else None,
            kinesis_total,
            detail=", ".join(f"{name} {n}" for name, n in clean.items()) + f"; quarantine {quarantined}",
            tables=clean,
            quarantined=quarantined,
            freshness=_ago(max(writes)) if writes else None,
            error=delta_error,
        )
    )
    return stages


def flow(readers: Readers) -> dict[str, Any]:
    for memo in readers.memos():  # every stale source refreshes at once; each answer then waits for its own
        memo.start()
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": readers.settings.pipeline_user_id,
        "batch": batch_path(readers),
        "stream": stream_path(readers),
    }
