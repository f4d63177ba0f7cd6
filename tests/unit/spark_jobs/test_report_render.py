"""report.html renders in headless Chromium with its run sections (quarantine by reason, run history, streaming
tables with their chart) and every query's section, table and chart; the screenshot goes to test-artifacts/ for a
human to look at. The results come from the DuckDB reference on generated files, the run sections from small
hand-made values, so this test needs no Spark. Chromium comes from scripts/install_chromium.sh (CI runs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline import run_history
from pipeline.settings import REPO_ROOT, TABLES, load_settings
from spark_jobs.queries import QUERIES
from spark_jobs.report import TableStream, render_report
from tests.support import duckdb_reference
from tests.support.synthetic import write_topic_files

ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    write_topic_files(root, load_settings(pipeline_user_id="7e57c0de0001"), posts=2_000, seed=3)
    connection = duckdb.connect()
    globs = {t: f"{root}/topics/7e57c0de0001.{t}/partition=*/*.json" for t in TABLES}
    counts = duckdb_reference.tables(connection, globs)
    frames = {name: connection.sql(sql).df() for name, sql in duckdb_reference.QUERIES.items()}
    history = [
        run_history.run_record(
            f"2026120{day}T060000Z-00000{day}", datetime(2026, 12, day, 6, tzinfo=UTC), 30.0 + day, "t", counts
        )
        for day in (1, 2)
    ]
    quarantine = {"pin": {"corrupt JSON: not a JSON object": 2, "invalid values: follower_count": 2}, "geo": {}}
    minutes = [f"2026-12-03 06:{m:02d}" for m in range(10)]
    streams = [
        TableStream(f"t_{table}", 10 * n, "2026-12-03 06:09:59", n, None, 0.6 * n, 1.1 * n,
                    pd.DataFrame({"minute": minutes, "rows": [n * (m % 4 + 1) for m in range(10)]}))
        for n, table in enumerate(TABLES, start=1)
    ]  # fmt: skip
    page = render_report(frames, counts, "test run", quarantine=quarantine, history=history, streams=streams)
    path = root / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def test_report_has_every_query_with_a_chart(report):
    page = report.read_text()
    for name in QUERIES:
        section = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
        assert section, name
        assert "<table>" in section.group(1) and 'src="data:image/png;base64,' in section.group(1), name
    assert "quarantined" in page and "duplicates_dropped" in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run scripts/install_chromium.sh")
def test_report_renders_in_headless_chromium(report):
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "batch_report.png"
    screenshot.unlink(missing_ok=True)
    common = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
    dom = subprocess.run(
        [CHROMIUM, *common, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=180, check=True
    ).stdout
    for name in (*QUERIES, "quarantine", "history", "streaming"):  # what the browser built, not only what we wrote
        assert f'<section id="{name}">' in dom, name
    assert dom.count("<img") == len(QUERIES) + 1  # one chart per query, and the streaming rows per minute
    subprocess.run(
        [CHROMIUM, *common, f"--screenshot={screenshot}", "--window-size=1280,9000", report.as_uri()],
        capture_output=True,
        timeout=180,
        check=True,
    )
    assert screenshot.stat().st_size > 10_000
