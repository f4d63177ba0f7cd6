"""What the benchmarks share: recording a result row in docs/BENCHMARKS.md (right after the last table row of the
script's section; a missing section is created with its description and table header first) and the machine's
description.

The benchmarks run as scripts (`python scripts/bench/bench_x.py`), so Python puts only this folder on the path and
imports this module first: it puts the repo root there too, for the shared test support (`tests.support`).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "BENCHMARKS.md"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def record_row(title: str, header: str, row: str, results: Path = RESULTS) -> None:
    """`title` is the section's `## ...` line; `header` its description and table header (used only when the
    section does not exist yet); `row` one Markdown table row."""
    lines = (results.read_text() if results.exists() else "# Benchmarks\n").splitlines()
    if title not in lines:
        lines += ["", title, "", *header.strip("\n").splitlines()]
    start = position = lines.index(title) + 1
    while position < len(lines) and not lines[position].startswith("## "):
        position += 1
    # The results table is the one under the section's own header line (notes below it may hold other tables).
    table_header = next((line for line in header.splitlines() if line.startswith("|")), None)
    if table_header in lines[start:position]:
        position = lines.index(table_header, start) + 1
        while position < len(lines) and lines[position].startswith("|"):
            position += 1
    else:
        while not lines[position - 1].startswith("|"):
            position -= 1
    lines.insert(position, row)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("\n".join(lines) + "\n")


def machine() -> str:
    """CPU model, cores, memory and the current load average, for a result row."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{cpu}, {os.cpu_count()} cores, {memory_kb / 1024**2:.0f} GB RAM, load average {os.getloadavg()[0]:.1f}"
