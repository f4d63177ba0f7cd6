"""Seed benchmark: generate + load N posts (default 1,000,000) into MariaDB, against a baseline in the same run.

Baseline: MariaDB's `LOAD DATA LOCAL INFILE` of the very same files, already generated (pure ingest). The ratio
(full seed / ingest alone) says what generation costs on top of the database. Target: 1,000,000 rows < 60 s.
Uses its own database (`<MYSQL_DATABASE>_bench`) so a user's data is untouched. Needs `make up`.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

from results import record_row  # scripts/bench/results.py (run as a script)

from pipeline.settings import load_settings
from services.mysql import seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-record", action="store_true", help="do not append to docs/BENCHMARKS.md")
    args = parser.parse_args()
    base = load_settings()
    settings = load_settings(mysql_database=f"{base.mysql_database}_bench")

    started = time.monotonic()
    seed.seed_database(settings, args.rows, 42)
    full = time.monotonic() - started

    folder = Path(tempfile.mkdtemp(prefix="seed-bench-"))
    try:
        parts = list(seed.write_tsv_files(args.rows, 42, folder, progress=False))
        connection = seed.connect(settings, settings.mysql_database, autocommit=True)
        with connection, connection.cursor() as cursor:
            for statement in seed.schema_statements():
                cursor.execute(statement)
        started = time.monotonic()
        for paths in parts:
            for table, path in paths.items():
                seed.load_part(settings, table, path)
        ingest = time.monotonic() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert seed.table_counts(settings)["user_data"] == args.rows

    line = (
        f"| {time.strftime('%Y-%m-%d')} | {platform.node()} ({_cpus()} cores) | {args.rows:,} | {full:.1f} s | "
        f"{ingest:.1f} s | {full / ingest:.2f} | {'yes' if args.rows < 1_000_000 or full < 60 else 'NO'} |"
    )
    print(line)
    if not args.no_record:
        _record(line)


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def _record(line: str) -> None:
    title = "## Seed generator (`python scripts/bench/bench_seed.py`)"
    header = (
        "Full `make seed` (generate + load) vs MariaDB ingesting the same pre-generated files alone.\n\n"
        "| date | machine | posts | full seed | ingest alone (baseline) | ratio | < 60 s per 1M |\n"
        "|---|---|---|---|---|---|---|"
    )
    record_row(title, header, line)


if __name__ == "__main__":
    main()
