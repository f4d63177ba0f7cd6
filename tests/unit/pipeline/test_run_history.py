"""The batch job's run records and quarantine summary (pipeline/run_history.py): what the console and the report
read back, and clear errors for objects that are not what the job writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline import layout, run_history

FINISHED = datetime(2026, 12, 3, 6, 54, 10, tzinfo=UTC)
COUNTS = {"pin": {"read": 10, "quarantined": 2, "duplicates_dropped": 1, "rows": 7}, "geo": {"read": 5}}


def test_run_ids_sort_as_their_times_and_differ_within_one_second():
    first, second = run_history.new_run_id(FINISHED), run_history.new_run_id(FINISHED)
    assert first.startswith("20261203T065410Z-") and first != second
    # A later run sorts after, even when its random suffix is smaller.
    later = run_history.new_run_id(FINISHED + timedelta(seconds=1)).replace("-", "-000000")[:-6]
    assert sorted([later, first, second])[-1] == later


def test_run_id_is_in_utc_whatever_the_time_zone_given():
    local = FINISHED.astimezone(timezone(timedelta(hours=2)))
    assert run_history.new_run_id(local).startswith("20261203T065410Z-")


def test_a_run_record_round_trips_with_every_count_of_every_table():
    record = run_history.run_record("r1", FINISHED, 41.26, "s3a://bucket", COUNTS)
    parsed = run_history.parse_run_record(json.dumps(record))
    assert parsed == {
        "run_id": "r1",
        "finished_at": "2026-12-03T06:54:10Z",
        "seconds": 41.3,
        "input": "s3a://bucket",
        "tables": {
            "pin": {"read": 10, "quarantined": 2, "duplicates_dropped": 1, "rows": 7},
            "geo": {"read": 5, "quarantined": 0, "duplicates_dropped": 0, "rows": 0},
        },
    }


def test_the_quarantine_summary_totals_each_table_and_lists_the_most_frequent_reason_first():
    summary = run_history.quarantine_summary(
        "r1", FINISHED, {"pin": {"b reason": 1, "a reason": 1, "missing required fields: index": 5}, "geo": {}}
    )
    parsed = run_history.parse_quarantine_summary(json.dumps(summary))
    assert parsed["tables"]["pin"]["quarantined"] == 7
    assert list(parsed["tables"]["pin"]["reasons"]) == ["missing required fields: index", "a reason", "b reason"]
    assert parsed["tables"]["geo"] == {"quarantined": 0, "reasons": {}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "history record x is not JSON"),
        ("[1]", "history record x is a JSON list, expected an object"),
        ('{"run_id": "r"}', "history record x lacks finished_at, seconds, tables"),
        (
            '{"run_id": "r", "finished_at": "t", "seconds": 1, "tables": {"pin": {"read": 1}}}',
            "history record x, table pin lacks quarantined, duplicates_dropped, rows",
        ),
    ],
)
def test_a_malformed_record_is_named_with_what_it_lacks(text, message):
    with pytest.raises(run_history.RunHistoryError, match=message):
        run_history.parse_run_record(text, "history record x")


def test_the_console_finds_history_and_summary_under_the_results_root():
    assert layout.history_prefix("s3a://b/analytics/") == "s3a://b/analytics/history"
    assert layout.history_record_path("s3a://b/analytics", "r1") == "s3a://b/analytics/history/r1.json"
    assert layout.quarantine_summary_path("/tmp/out") == "/tmp/out/quarantine_summary.json"
