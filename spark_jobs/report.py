"""Renders the batch job's results as one self-contained HTML page: the run's counts, then per query a table and a
matplotlib chart embedded as a base64 PNG, so the page opens anywhere (S3 console, a browser, a CI artifact)
without a server or network. Pure: pandas in, HTML text out; the job decides where the page is written.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI
import matplotlib.pyplot as plt
import pandas as pd

MAX_CHART_BARS = 30
MAX_TABLE_ROWS = 300

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
section { border-top: 2px solid #e60023; margin-top: 2rem; }
.scroll { max-height: 24rem; overflow-y: auto; display: inline-block; }
img { max-width: 100%; }
"""


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
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


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


def render_report(results: Mapping[str, pd.DataFrame], counts: Mapping[str, Mapping[str, int]], meta: str) -> str:
    """The whole page. `counts` maps table -> {read, quarantined, duplicates_dropped, rows}."""
    count_names = ("read", "quarantined", "duplicates_dropped", "rows")
    count_rows = "".join(
        f"<tr><td>{html.escape(table)}</td>"
        + "".join(f'<td class="num">{values.get(name, 0)}</td>' for name in count_names)
        + "</tr>"
        for table, values in counts.items()
    )
    sections = []
    for name, frame in results.items():
        png = _chart_png(name, frame)
        chart = f'<img alt="{name} chart" src="data:image/png;base64,{png}">' if png else "<p>No rows.</p>"
        sections.append(
            f'<section id="{name}"><h2>{name}</h2><p>{len(frame)} rows</p>{_table_html(frame)}{chart}</section>'
        )
    toc = "".join(f'<li><a href="#{name}">{name}</a></li>' for name in results)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pinterest batch analytics</title><style>{STYLE}</style></head>
<body><h1>Pinterest batch analytics</h1><p class="meta">{html.escape(meta)}</p>
<h2>Run counts</h2><table><tr><th>table</th>{"".join(f"<th>{n}</th>" for n in count_names)}</tr>{count_rows}</table>
<ul>{toc}</ul>
{"".join(sections)}
</body></html>
"""
