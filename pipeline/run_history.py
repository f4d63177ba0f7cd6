"""What the batch job keeps about its runs, as JSON, for its report and for the console: one record per run under
`layout.history_prefix(results root)` and the last run's quarantine counts at `layout.quarantine_summary_path`.

Standard library only, like pipeline/layout.py, so a reader needs neither Spark nor pandas. The job writes, readers
parse with `parse_run_record` / `parse_quarantine_summary`, which check the shape and name what is wrong.

A run record (`<results>/history/<run id>.json`):

    {"run_id": "20261203T065410Z-3f9a1c", "finished_at": "2026-12-03T06:54:10Z", "seconds": 41.2,
     "input": "s3a://...", "tables": {"pin": {"read": 1000, "quarantined": 3, "duplicates_dropped": 7, "rows": 990},
                                       "geo": {...}, "user": {...}}}

The quarantine summary (`<results>/quarantine_summary.json`), the run's quarantined records by table and reason:

    {"run_id": "...", "finished_at": "...", "tables": {"pin": {"quarantined": 3,
                                                               "reasons": {"corrupt JSON: not a JSON object": 2, ...}}}}

`seconds` is the run's duration up to its results, quarantine and counts being written (the report's streaming
section and upload come after). Run ids start with the UTC time (to the second), so sorting ids sorts runs by time,
and end with a random suffix so two runs in the same second do not overwrite each other's record.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

COUNT_NAMES = ("read", "quarantined", "duplicates_dropped", "rows")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class RunHistoryError(ValueError):
    """A history or summary object that is not what the batch job writes."""


def new_run_id(now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def run_record(
    run_id: str, finished_at: datetime, seconds: float, input_root: str, counts: Mapping[str, Mapping[str, int]]
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "finished_at": finished_at.astimezone(UTC).strftime(TIME_FORMAT),
        "seconds": round(seconds, 1),
        "input": input_root,
        "tables": {table: {name: int(values.get(name, 0)) for name in COUNT_NAMES} for table, values in counts.items()},
    }


def quarantine_summary(run_id: str, finished_at: datetime, reasons: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """`reasons`: table -> reason -> records. Reasons are listed most frequent first."""
    return {
        "run_id": run_id,
        "finished_at": finished_at.astimezone(UTC).strftime(TIME_FORMAT),
        "tables": {
            table: {
                "quarantined": sum(by_reason.values()),
                "reasons": dict(sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))),
            }
            for table, by_reason in reasons.items()
        },
    }


def _load(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunHistoryError(f"{what} is not JSON ({error})") from error
    if not isinstance(data, dict):
        raise RunHistoryError(f"{what} is a JSON {type(data).__name__}, expected an object")
    return data


def _require(data: Mapping[str, Any], keys: Iterable[str], what: str) -> None:
    missing = [key for key in keys if key not in data]
    if missing:
        raise RunHistoryError(f"{what} lacks {', '.join(missing)} (has {', '.join(sorted(data)) or 'nothing'})")


def parse_run_record(text: str, what: str = "run record") -> dict[str, Any]:
    record = _load(text, what)
    _require(record, ("run_id", "finished_at", "seconds", "tables"), what)
    for table, counts in record["tables"].items():
        _require(counts, COUNT_NAMES, f"{what}, table {table}")
    return record


def parse_quarantine_summary(text: str, what: str = "quarantine summary") -> dict[str, Any]:
    summary = _load(text, what)
    _require(summary, ("run_id", "finished_at", "tables"), what)
    for table, entry in summary["tables"].items():
        _require(entry, ("quarantined", "reasons"), f"{what}, table {table}")
    return summary
