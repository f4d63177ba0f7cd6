"""Benchmark: the Spark batch job (local[2]) against DuckDB running the reference SQL on the same files.

    .state/venv/bin/python scripts/bench/bench_batch.py [--rows 1000000] [--seed 42] [--no-append]

Generates N posts (all three tables, realistic rows from the seed generator plus wire-level dirt) as JSON
lines in the S3 sink's layout on local disk, then runs each engine in its own process: Spark via
`python -m spark_jobs.batch` (clean, de-duplicate, nine queries, Parquet results, quarantine, report.html; JVM
start-up included), DuckDB via tests/support/duckdb_reference.py with 2 threads (same cleaning and queries, results
to Parquet). Wall time, and peak memory as the largest summed RSS of the engine's process tree (sampled every
0.2 s from /proc), go to stdout and, unless --no-append, to docs/BENCHMARKS.md under "Spark batch".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from results import REPO, RESULTS, machine, record_row  # scripts/bench/results.py (run as a script)

from pipeline.layout import input_glob
from pipeline.settings import TABLES, load_settings
from tests.support.synthetic import write_topic_files

SECTION = "## Spark batch"
PYTHON = sys.executable
DUCKDB_RUN = """
import json, sys, duckdb
from tests.support import duckdb_reference as ref
globs, results = json.loads(sys.argv[1]), sys.argv[2]
con = duckdb.connect()
con.execute("SET threads = 2").fetchall()
ref.tables(con, globs)
for name, sql in ref.QUERIES.items():
    con.execute(f"COPY ({sql}) TO '{results}/{name}.parquet' (FORMAT parquet)").fetchall()
"""


def _tree_rss_bytes(root_pid: int) -> int:
    """Summed RSS of root_pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            pid, ppid = int(entry.name), int(fields[1])
            rss[pid] = int(fields[21]) * page
            children.setdefault(ppid, []).append(pid)
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run argv; return (wall seconds, peak tree RSS bytes). Raises on a non-zero exit."""
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_bytes(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({process.returncode}):\n{output[-3000:]}")
    summary = [line for line in output.splitlines() if line.startswith(("batch:", "  pin", "  geo", "  user"))]
    if summary:
        print("\n".join(summary))
    return wall, peak


def append_result(row: str, header_note: str) -> None:
    table_header = (
        "| date (UTC) | posts | input | Spark local[2] wall | Spark peak RSS | DuckDB (2 threads) wall | DuckDB peak RSS "
        "| wall ratio Spark/DuckDB | memory ratio | machine |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    record_row(SECTION, f"{header_note}\n\n{table_header}", row, RESULTS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="posts (each table gets this many, plus dirt)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path, default=None, help="default: <state>/bench/batch-<rows>")
    parser.add_argument("--no-append", action="store_true", help="print only, do not touch docs/BENCHMARKS.md")
    args = parser.parse_args()

    settings = load_settings()
    workdir = args.workdir or settings.state_dir / "bench" / f"batch-{args.rows}"
    files, stamp = workdir / "input", workdir / "input" / f".generated-{args.seed}"
    if not stamp.exists():
        print(f"bench: generating {args.rows:,} posts in {files} ...", flush=True)
        started = time.monotonic()
        written = write_topic_files(files, settings, posts=args.rows, seed=args.seed)
        stamp.touch()
        print(f"bench: {written} lines in {time.monotonic() - started:.0f} s", flush=True)
    input_mb = sum(p.stat().st_size for p in files.rglob("*.json")) / 1024**2

    env = {**os.environ, "PIPELINE_USER_ID": settings.pipeline_user_id}
    note_machine = machine()
    print("bench: Spark ...", flush=True)
    spark_wall, spark_peak = measure(
        [PYTHON, "-m", "spark_jobs.batch", "--input", str(files), "--results", str(workdir / "spark"), "--master",
         "local[2]"],
        env,
    )  # fmt: skip
    print(f"bench: Spark {spark_wall:.1f} s, peak {spark_peak / 1024**2:.0f} MB", flush=True)
    (workdir / "duckdb").mkdir(exist_ok=True)
    globs = {table: input_glob(str(files), settings.topic(table), table) for table in TABLES}
    print("bench: DuckDB ...", flush=True)
    duck_wall, duck_peak = measure([PYTHON, "-c", DUCKDB_RUN, json.dumps(globs), str(workdir / "duckdb")], env)
    print(f"bench: DuckDB {duck_wall:.1f} s, peak {duck_peak / 1024**2:.0f} MB", flush=True)
    wall_ratio, memory_ratio = spark_wall / duck_wall, spark_peak / max(duck_peak, 1)
    print(f"bench: Spark/DuckDB wall {wall_ratio:.2f}x, memory {memory_ratio:.2f}x (goal: wall within 3x)")

    row = (
        f"| {datetime.now(UTC):%Y-%m-%d %H:%M} | {args.rows:,} | {input_mb:,.0f} MB JSON ({len(TABLES)} topics) "
        f"| {spark_wall:.1f} s | {spark_peak / 1024**2:,.0f} MB | {duck_wall:.1f} s | {duck_peak / 1024**2:,.0f} MB "
        f"| {wall_ratio:.2f}x | {memory_ratio:.2f}x | {note_machine} |"
    )
    if not args.no_append:
        note = (
            "`scripts/bench/bench_batch.py --rows N`: the whole job (read JSON, validate and quarantine, clean,\n"
            "de-duplicate, nine queries, Parquet + report) in Spark `local[2]` (JVM start included) against DuckDB\n"
            "running the same cleaning and queries (tests/support/duckdb_reference.py) with 2 threads on the same files.\n"
            "Peak memory: largest summed RSS of each engine's process tree. Goal: Spark within 3x of DuckDB's wall time.\n"
            "The load average shows how busy the (shared) machine was when the run started."
        )
        append_result(row, note)
        print(f"bench: appended to {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
