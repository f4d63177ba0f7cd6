"""Renders the batch job's results as one self-contained HTML page: the run's counts, the quarantine by reason, the
history of runs, the streaming tables' rows per minute and latency, then per query a table and a matplotlib chart
embedded as a base64 PNG, so the page opens anywhere (S3 console, a browser, a CI artifact) without a server or
network. Pure: pandas and plain values in, HTML text out; the job computes the numbers and decides where the page
is written.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI
import matplotlib.pyplot as plt
import pandas as pd

MAX_CHART_BARS = 30
MAX_TABLE_ROWS = 300
HISTORY_SHOWN = 20
LATENCY_COMMITS = 100  # the streaming latency covers rows of each table's newest commits (stream_stats.py)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
section { border-top: 2px solid #e60023; margin-top: 2rem; }
.scroll { max-height: 24rem; overflow-y: auto; display: inline-block; }
img { max-width: 100%; } .note { color: #666; font-size: 0.9rem; }
"""


@dataclass
class TableStream:
    """One streaming Delta table's numbers for the report (computed by spark_jobs/stream_stats.py). Times are UTC
    text; `per_minute` has `minute` (`yyyy-MM-dd HH:mm`) and `rows`."""

    name: str
    rows: int
    newest_arrival: str | None
    latency_rows: int
    latency_since: str | None
    p50_seconds: float | None
    p95_seconds: float | None
    per_minute: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["minute", "rows"]))


def _png(figure) -> str:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _chart_png(name: str, frame: pd.DataFrame) -> str | None:
    """A horizontal bar chart of the query's measure (last column) by its other columns, as base64 PNG."""
    if frame.empty:
        return None
    measure = frame.columns[-1]
    shown = frame.nlargest(MAX_CHART_BARS, measure) if len(frame) > MAX_CHART_BARS else frame
    labels = shown[list(frame.columns[:-1])].astype(str).agg(" | ".join, axis=1)
    figure, axes = plt.subplots(figsize=(9, 0.3 * len(shown) + 1.2))
    axes.barh(labels[::-1], shown[measure][::-1], color="#e60023")
    axes.set_xlabel(measure)
    title = name if len(frame) <= MAX_CHART_BARS else f"{name} (top {MAX_CHART_BARS} of {len(frame)})"
    axes.set_title(title)
    return _png(figure)


def _table_html(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.head(MAX_TABLE_ROWS).itertuples(index=False):
        cells = []
        for value in record:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            cells.append(f'<td class="num">{value}</td>' if numeric else f"<td>{html.escape(str(value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (
        f"<p>{len(frame) - MAX_TABLE_ROWS} more rows in the Parquet result.</p>" if len(frame) > MAX_TABLE_ROWS else ""
    )
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(rows)}</table></div>{more}'


def quarantine_frame(reasons: Mapping[str, Mapping[str, int]]) -> pd.DataFrame:
    """`table, reason, records`: per table (in the given order), the most frequent reason first."""
    rows = [
        (table, reason, count)
        for table, by_reason in reasons.items()
        for reason, count in sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))
    ]
    return pd.DataFrame(rows, columns=["table", "reason", "records"])


def history_frame(records: Sequence[Mapping[str, Any]], shown: int = HISTORY_SHOWN) -> pd.DataFrame:
    """The newest `shown` run records (pipeline/run_history.py), newest first: one row per run, rows read and
    quarantined per table."""
    tables = list(dict.fromkeys(table for record in records for table in record["tables"]))
    rows = []
    for record in sorted(records, key=lambda r: r["run_id"], reverse=True)[:shown]:
        row: dict[str, Any] = {
            "run": record["run_id"],
            "finished (UTC)": record["finished_at"],
            "seconds": record["seconds"],
        }
        for name in ("read", "quarantined"):
            for table in tables:
                row[f"{table} {name}"] = record["tables"].get(table, {}).get(name, 0)
        rows.append(row)
    columns = ["run", "finished (UTC)", "seconds", *(f"{t} {n}" for n in ("read", "quarantined") for t in tables)]
    return pd.DataFrame(rows, columns=columns)


def stream_summary_frame(streams: Sequence[TableStream]) -> pd.DataFrame:
    def seconds(value: float | None) -> object:
        return "" if value is None else round(value, 2)

    return pd.DataFrame(
        [
            (
                s.name,
                s.rows,
                s.newest_arrival or "",
                s.latency_rows,
                s.latency_since or "all rows",
                seconds(s.p50_seconds),
                seconds(s.p95_seconds),
            )
            for s in streams
        ],
        columns=[
            "Delta table",
            "rows",
            "newest arrival (UTC)",
            "latency rows",
            "latency over rows arrived after (UTC)",
            "latency p50 (s)",
            "latency p95 (s)",
        ],
    )


def rows_per_minute_frame(streams: Sequence[TableStream]) -> pd.DataFrame:
    """`minute` then one column per table: rows that arrived in Kinesis in that minute (0 when none), oldest first."""
    parts = [s.per_minute.assign(table=s.name) for s in streams if not s.per_minute.empty]
    if not parts:
        return pd.DataFrame(columns=["minute", *(s.name for s in streams)])
    pivot = pd.concat(parts).pivot_table(index="minute", columns="table", values="rows", aggfunc="sum", fill_value=0)
    pivot = pivot.reindex(columns=[s.name for s in streams], fill_value=0).astype(int).sort_index()
    return pivot.reset_index().rename_axis(columns=None)


def _minutes_chart_png(frame: pd.DataFrame) -> str | None:
    if frame.empty:
        return None
    figure, axes = plt.subplots(figsize=(9, 3.5))
    for table in frame.columns[1:]:
        axes.plot(frame["minute"], frame[table], marker=".", label=table)
    axes.set_ylabel("rows per minute")
    axes.set_title("Rows per minute by Kinesis arrival time (UTC)")
    axes.tick_params(axis="x", labelrotation=60, labelsize=7)
    step = max(1, len(frame) // 15)
    axes.set_xticks(range(0, len(frame), step), frame["minute"].iloc[::step])
    axes.legend(fontsize=7)
    return _png(figure)


def _quarantine_html(reasons: Mapping[str, Mapping[str, int]] | None) -> str:
    if reasons is None:
        return "<p>Not computed by this run.</p>"
    frame = quarantine_frame(reasons)
    return _table_html(frame) if not frame.empty else "<p>No records quarantined.</p>"


def _history_html(history: Sequence[Mapping[str, Any]] | None) -> str:
    if not history:
        return "<p>No runs recorded yet.</p>"
    shown = min(len(history), HISTORY_SHOWN)
    runs = "The one run" if shown == 1 else f"The last {shown} runs"
    return f"<p>{runs} recorded, newest first.</p>{_table_html(history_frame(history))}"


STREAM_NOTE = (
    "Rows per minute: by the minute of each row's <code>arrival_time</code> (the record's ApproximateArrivalTimestamp "
    "in Kinesis), the newest 60 minutes that have rows. Latency: the time the Delta data file holding the row was "
    "written (<code>_metadata.file_modification_time</code>) minus <code>arrival_time</code>; it leaves out the "
    "commit to <code>_delta_log</code> that follows. Only rows that arrived after the table's newest file-rewriting "
    "commit (OPTIMIZE, DELETE, MERGE) count, since a rewritten file has a new time, and only those within the "
    f"table's newest {LATENCY_COMMITS} commits: the recent latency."
)


def _stream_html(
    streams: Sequence[TableStream] | None, warehouse: str | None, errors: Mapping[str, str] | None = None
) -> str:
    if streams is None:
        return "<p>Not computed by this run (no Delta warehouse given).</p>"
    unreadable = "".join(
        f"<li>{html.escape(name)}: {html.escape(error)}</li>" for name, error in (errors or {}).items()
    )
    unreadable = (
        f"<p>Could not be read (the rest of the report is complete):</p><ul>{unreadable}</ul>" if errors else ""
    )
    if not streams:
        if errors:
            return unreadable
        return (
            f"<p>No streaming tables yet under {html.escape(warehouse or 'the warehouse')}: the streaming job "
            "(<code>make stream</code>) creates them.</p>"
        )
    minutes = rows_per_minute_frame(streams)
    png = _minutes_chart_png(minutes)
    chart = f'<img alt="rows per minute chart" src="data:image/png;base64,{png}">' if png else ""
    location = f" under {html.escape(warehouse)}" if warehouse else ""
    tables = f"{len(streams)} Delta table{'s' if len(streams) > 1 else ''}{location}"
    return (
        f"<p>{tables}.</p>{_table_html(stream_summary_frame(streams))}{unreadable}"
        f'<p class="note">{STREAM_NOTE}</p><h3>Rows per minute</h3>'
        + (_table_html(minutes) + chart if not minutes.empty else "<p>No rows yet.</p>")
    )


def render_report(
    results: Mapping[str, pd.DataFrame],
    counts: Mapping[str, Mapping[str, int]],
    meta: str,
    *,
    quarantine: Mapping[str, Mapping[str, int]] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
    streams: Sequence[TableStream] | None = None,
    warehouse: str | None = None,
    stream_errors: Mapping[str, str] | None = None,
) -> str:
    """The whole page. `counts` maps table -> {read, quarantined, duplicates_dropped, rows}; `quarantine` table ->
    reason -> records; `history` the run records (pipeline/run_history.py), this run's included; `streams` one
    entry per readable streaming table (empty: none exists yet; None: not computed); `stream_errors` table -> why
    it could not be read."""
    count_names = ("read", "quarantined", "duplicates_dropped", "rows")
    count_rows = "".join(
        f"<tr><td>{html.escape(table)}</td>"
        + "".join(f'<td class="num">{values.get(name, 0)}</td>' for name in count_names)
        + "</tr>"
        for table, values in counts.items()
    )
    run_sections = {
        "quarantine": ("Quarantine by reason", _quarantine_html(quarantine)),
        "history": ("Run history", _history_html(history)),
        "streaming": ("Streaming tables", _stream_html(streams, warehouse, stream_errors)),
    }
    sections = [
        f'<section id="{anchor}"><h2>{title}</h2>{body}</section>' for anchor, (title, body) in run_sections.items()
    ]
    for name, frame in results.items():
        png = _chart_png(name, frame)
        chart = f'<img alt="{name} chart" src="data:image/png;base64,{png}">' if png else "<p>No rows.</p>"
        sections.append(
            f'<section id="{name}"><h2>{name}</h2><p>{len(frame)} rows</p>{_table_html(frame)}{chart}</section>'
        )
    toc = "".join(f'<li><a href="#{anchor}">{title}</a></li>' for anchor, (title, _) in run_sections.items())
    toc += "".join(f'<li><a href="#{name}">{name}</a></li>' for name in results)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pinterest batch analytics</title><style>{STYLE}</style></head>
<body><h1>Pinterest batch analytics</h1><p class="meta">{html.escape(meta)}</p>
<h2>Run counts</h2><table><tr><th>table</th>{"".join(f"<th>{n}</th>" for n in count_names)}</tr>{count_rows}</table>
<ul>{toc}</ul>
{"".join(sections)}
</body></html>
"""
