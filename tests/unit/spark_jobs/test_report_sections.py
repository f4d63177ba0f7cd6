"""The report's run sections (spark_jobs/report.py): quarantine by reason, run history, streaming tables; and which
commits bound the streaming latency (spark_jobs/stream_stats.latency_since). No Spark needed."""

from __future__ import annotations

import re
from datetime import datetime

import pandas as pd

from spark_jobs.report import TableStream, history_frame, quarantine_frame, render_report, rows_per_minute_frame
from spark_jobs.stream_stats import latency_since


def _record(run_id: str, read: int, quarantined: int, seconds: float = 1.0) -> dict:
    counts = {"read": read, "quarantined": quarantined, "duplicates_dropped": 0, "rows": read - quarantined}
    return {
        "run_id": run_id,
        "finished_at": f"t-{run_id}",
        "seconds": seconds,
        "tables": {"pin": counts, "geo": counts},
    }


def _stream(name: str, minutes: dict[str, int], p50: float | None = 0.8) -> TableStream:
    per_minute = pd.DataFrame({"minute": list(minutes), "rows": list(minutes.values())})
    return TableStream(name, sum(minutes.values()), "2026-12-03 06:59:59", 3, None, p50, 2.5, per_minute)


def _section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, anchor
    return match.group(1)


def test_quarantine_frame_lists_each_table_s_reasons_most_frequent_first():
    frame = quarantine_frame({"pin": {"b": 1, "a": 4}, "geo": {}, "user": {"c": 2}})
    assert frame.values.tolist() == [["pin", "a", 4], ["pin", "b", 1], ["user", "c", 2]]


def test_history_frame_shows_the_newest_runs_first_with_read_and_quarantined_per_table():
    records = [_record(f"2026120{day}T000000Z-aa", read=day * 10, quarantined=day) for day in range(1, 6)]
    frame = history_frame(records, shown=3)
    assert frame["run"].tolist() == ["20261205T000000Z-aa", "20261204T000000Z-aa", "20261203T000000Z-aa"]
    assert frame.columns.tolist() == [
        "run", "finished (UTC)", "seconds", "pin read", "geo read", "pin quarantined", "geo quarantined"
    ]  # fmt: skip
    assert frame.iloc[0][["pin read", "geo quarantined"]].tolist() == [50, 5]


def test_rows_per_minute_puts_tables_side_by_side_with_zero_for_a_quiet_minute():
    streams = [
        _stream("t_pin", {"2026-12-03 06:58": 5, "2026-12-03 06:59": 2}),
        _stream("t_geo", {"2026-12-03 06:57": 1}),
    ]
    frame = rows_per_minute_frame([*streams, _stream("t_empty", {})])
    assert frame.columns.tolist() == ["minute", "t_pin", "t_geo", "t_empty"]
    assert frame.values.tolist() == [
        ["2026-12-03 06:57", 0, 1, 0],
        ["2026-12-03 06:58", 5, 0, 0],
        ["2026-12-03 06:59", 2, 0, 0],
    ]


def test_the_page_shows_the_breakdown_the_history_and_the_streaming_tables():
    page = render_report(
        {},
        {"pin": {"read": 3}},
        "meta",
        quarantine={"pin": {"corrupt JSON: <not> an object": 2}},
        history=[_record("r1", 3, 2, seconds=12.5)],
        streams=[_stream("t_pin", {"2026-12-03 06:58": 5}), _stream("t_geo", {}, p50=None)],
        warehouse="s3a://b/delta",
    )
    assert 'corrupt JSON: &lt;not&gt; an object</td><td class="num">2</td>' in _section(page, "quarantine")
    assert "<td>r1</td>" in _section(page, "history") and '<td class="num">12.5</td>' in _section(page, "history")
    streaming = _section(page, "streaming")
    assert "2 Delta tables under s3a://b/delta" in streaming
    assert '<td>t_pin</td><td class="num">5</td>' in streaming and '<td class="num">0.8</td>' in streaming
    assert "<td>t_geo</td>" in streaming and 'alt="rows per minute chart"' in streaming
    for anchor in ("quarantine", "history", "streaming"):
        assert f'href="#{anchor}"' in page


def test_the_page_says_when_there_is_nothing_to_show():
    empty = render_report({}, {}, "meta", quarantine={"pin": {}}, history=[], streams=[], warehouse="/w")
    assert "No records quarantined." in _section(empty, "quarantine")
    assert "No runs recorded yet." in _section(empty, "history")
    assert "No streaming tables yet under /w" in _section(empty, "streaming")
    broken = render_report({}, {}, "meta", streams=[], warehouse="/w", stream_errors={"t_geo": "Oops: <bad> log"})
    assert "t_geo: Oops: &lt;bad&gt; log" in _section(broken, "streaming")
    assert "No streaming tables yet" not in _section(broken, "streaming")
    skipped = render_report({}, {}, "meta")
    assert "Not computed by this run (no Delta warehouse given)" in _section(skipped, "streaming")


def test_latency_counts_rows_after_the_newest_commit_that_rewrote_files():
    t = [datetime(2026, 12, 3, 6, minute) for minute in range(6)]
    appends = [{"timestamp": t[5], "operationMetrics": {"numOutputRows": "4"}}]
    optimize = {"timestamp": t[3], "operationMetrics": {"numRemovedFiles": "12", "numAddedFiles": "1"}}
    older_optimize = {"timestamp": t[1], "operationMetrics": {"numRemovedFiles": "3"}}
    assert latency_since([*appends, optimize, older_optimize]) == t[3]
    compacted_by_delta_rs = {"timestamp": t[4], "operationMetrics": {"numFilesRemoved": 5, "numFilesAdded": 1}}
    assert latency_since([*appends, compacted_by_delta_rs, optimize]) == t[4]
    assert latency_since([*appends, {"timestamp": t[0], "operationMetrics": None}]) is None  # whole history read
    # A full scan without a rewrite: one may be older than the scan, so the oldest commit read is the bound.
    assert latency_since([*appends, {"timestamp": t[2], "operationMetrics": {}}], scan=2) == t[2]


def test_the_job_reads_the_streaming_tables_where_the_streaming_job_writes_them():
    from pipeline.settings import load_settings
    from spark_jobs.batch import parse_args

    settings = load_settings(pipeline_user_id="7e57c0de0004")
    assert parse_args([], settings).warehouse == settings.warehouse_uri
    assert parse_args(["--warehouse", "/tmp/w"], settings).warehouse == "/tmp/w"
    assert parse_args(["--input", "/tmp/files"], settings).warehouse is None  # no bucket access for local files
    assert parse_args(["--input", "/tmp/files", "--warehouse", "/tmp/w"], settings).warehouse == "/tmp/w"
