"""What the batch job computes for its report, on the unit tests' local Spark: the streaming numbers
(spark_jobs/stream_stats.py) from a tiny `arrival_time, written_time` frame, and one small run of `batch.run`
adding to the history and writing the quarantine summary that the quarantine Parquet agrees with. Reading real Delta
tables needs the Delta jars, which the unit session has not: tests/integration/test_batch_job.py covers that edge."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import layout, run_history
from pipeline.settings import TABLES, load_settings
from spark_jobs import batch, results_store, stream_stats
from tests.support.synthetic import write_topic_files


def _at(minute: int, second: float) -> datetime:
    return datetime(2026, 12, 3, 6, minute, int(second), int(second % 1 * 1_000_000), tzinfo=UTC)


@pytest.fixture(scope="module")
def arrivals(spark):
    """Six rows: (arrival, written) with latencies 0.5, 1, 1.5, 2, 3 and 10 s, over minutes 06:01, 06:02, 06:04."""
    rows = [
        (_at(1, 10), _at(1, 10.5)),
        (_at(1, 20), _at(1, 21)),
        (_at(2, 0), _at(2, 1.5)),
        (_at(4, 0), _at(4, 2)),
        (_at(4, 30), _at(4, 33)),
        (_at(4, 40), _at(4, 50)),
    ]
    return spark.createDataFrame(rows, f"{stream_stats.ARRIVAL} timestamp, {stream_stats.WRITTEN} timestamp")


def test_rows_per_minute_keeps_the_newest_minutes_oldest_first(arrivals):
    assert [tuple(r) for r in stream_stats.rows_per_minute(arrivals).collect()] == [
        ("2026-12-03 06:01", 2),
        ("2026-12-03 06:02", 1),
        ("2026-12-03 06:04", 3),
    ]
    assert [r.minute for r in stream_stats.rows_per_minute(arrivals, limit=2).collect()] == [
        "2026-12-03 06:02",
        "2026-12-03 06:04",
    ]


def test_latency_percentiles_over_all_rows_or_those_arrived_after_a_rewrite(arrivals):
    every = stream_stats.latency_seconds(arrivals, None).first()
    assert (every.rows, every.p50, every.p95) == (6, 1.5, 10.0)
    recent = stream_stats.latency_seconds(arrivals, _at(2, 0)).first()  # strictly after: 06:02:00 itself excluded
    assert (recent.rows, recent.p50, recent.p95) == (3, 3.0, 10.0)
    none = stream_stats.latency_seconds(arrivals, _at(9, 0)).first()
    assert (none.rows, none.p50, none.p95) == (0, None, None)


def test_table_stream_gathers_one_table_s_numbers(arrivals):
    commits = [{"timestamp": _at(3, 0), "operationMetrics": {"numRemovedFiles": "2"}}]
    stream = stream_stats.table_stream("t_pin", arrivals, commits)
    assert (stream.name, stream.rows, stream.newest_arrival) == ("t_pin", 6, "2026-12-03 06:04:40")
    assert (stream.latency_rows, stream.p50_seconds, stream.p95_seconds) == (3, 3.0, 10.0)
    assert stream.latency_since == "2026-12-03 06:03:00"
    assert stream.per_minute.values.tolist() == [
        ["2026-12-03 06:01", 2],
        ["2026-12-03 06:02", 1],
        ["2026-12-03 06:04", 3],
    ]


@pytest.fixture(scope="module")
def batch_run(spark, tmp_path_factory):
    """One run of the job after an earlier run's record (written as the job writes it) is in the history."""
    root = tmp_path_factory.mktemp("report-batch")
    settings = load_settings(pipeline_user_id="7e57c0de0002")
    write_topic_files(root / "bucket", settings, posts=1_000, seed=5)
    results = str(root / "results")
    earlier = run_history.run_record("20260101T000000Z-000000", datetime(2026, 1, 1, tzinfo=UTC), 9.5, "old", {})
    target = layout.history_record_path(results, earlier["run_id"])
    results_store.write_text(target, json.dumps(earlier), "application/json", settings)
    return results, earlier, batch.run(spark, settings, str(root / "bucket"), results)


def test_the_run_adds_its_history_object_and_the_report_lists_the_runs_newest_first(batch_run):
    results, earlier, summary = batch_run
    names = sorted(p.name for p in Path(layout.history_prefix(results)).iterdir())
    assert names == [f"{earlier['run_id']}.json", f"{summary['run_id']}.json"]
    record = json.loads(Path(layout.history_record_path(results, summary["run_id"])).read_text())
    assert record["tables"] == summary["counts"] and record["seconds"] > 0
    page = Path(layout.report_path(results)).read_text()
    history = page.split('<section id="history">')[1].split("</section>")[0]
    assert "The last 2 runs recorded" in history
    assert history.index(summary["run_id"]) < history.index(earlier["run_id"])
    assert "Not computed by this run" in page.split('<section id="streaming">')[1]  # run() without a warehouse


def test_the_quarantine_summary_matches_the_quarantined_records(batch_run):
    results, _, summary = batch_run
    written = json.loads(Path(layout.quarantine_summary_path(results)).read_text())
    assert written["run_id"] == summary["run_id"]
    for table in TABLES:
        reasons = Counter(pq.read_table(layout.quarantine_path(results, table)).column("reason").to_pylist())
        assert written["tables"][table]["reasons"] == dict(reasons), table
        assert written["tables"][table]["quarantined"] == summary["counts"][table]["quarantined"] > 0, table
