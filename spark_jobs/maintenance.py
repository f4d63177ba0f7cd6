"""Maintenance of the streaming job's Delta tables: compaction (OPTIMIZE) and VACUUM, run daily by the maintenance
DAG (airflow/dags/maintenance_dag.py) or by hand.

    python -m spark_jobs.maintenance [--warehouse PATH] [--retain-hours 168] [--dry-run] [--master local[2]]
    PATH=.state/venv/bin:$PATH spark-submit $(python -m spark_jobs.session --submit-args) spark_jobs/maintenance.py

Why: the streaming job appends one small file per table and micro-batch (a 1 s trigger makes up to 86,400 a day),
and files that compaction replaces stay on disk until VACUUM removes them. Unmaintained, a table grows without bound
in files, in storage and in the time it takes to plan a read.

What a Databricks user expects, and why it is a scheduled job here: on Databricks, predictive optimization (or a job
the user schedules) runs OPTIMIZE and VACUUM on a table in the background, apart from the writes. Auto compaction
(`delta.autoOptimize.autoCompact`) would instead compact inside the streaming write that crosses its threshold,
adding seconds to that micro-batch, and the streaming latency goal is not met as it is (docs/design/streaming.md).
OPTIMIZE only rewrites files (dataChange=false), so it does not conflict with the stream's blind appends, and the
job runs while the stream runs. VACUUM deletes files no table version newer than the retention references: 168 hours
by default (`DELTA_VACUUM_RETAIN_HOURS`), Delta's own default, which keeps a week of time travel and is far longer
than any micro-batch or reader takes. A shorter retention is honoured (Delta's retention check is turned off for
that run) and says so, since it shortens time travel.

Each table is compacted, then vacuumed; a table that does not exist yet is skipped. `--dry-run` changes nothing and
reports how many files compaction would take in and VACUUM would delete. The table's log (`_delta_log`) cleans
itself up at checkpoints (`delta.logRetentionDuration`, 30 days) and the queries' checkpoints keep Spark's last 100
batches (`spark.sql.streaming.minBatchesToRetain`), so neither needs this job.

VACUUM lists the table's files in a Spark job of `spark.sql.sources.parallelPartitionDiscovery.parallelism` tasks
(Delta's VacuumCommand reads that setting): Spark's default is 10,000 tasks whatever the table's size, nearly all of
them empty for these unpartitioned tables, and on a local Spark each costs milliseconds. Left at Spark's default, it
is set to the session's default parallelism (its cores) for this job; a value the user set is kept.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass

from pyspark.sql import SparkSession

from pipeline import layout
from pipeline.settings import Settings, get_settings
from spark_jobs.session import build_spark, require_jars

DELTA_RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
SPARK_DEFAULT_LISTING_PARALLELISM = "10000"
DELTA_DEFAULT_RETAIN_HOURS = 168
UNKNOWN_BUCKET = "org.apache.hadoop.fs.s3a.UnknownStoreException"


@dataclass
class TableMaintenance:
    path: str
    files_before: int
    files_after: int  # live files after compaction (unchanged in a dry run)
    vacuumed: int  # files VACUUM deleted (would delete, in a dry run)
    seconds: float


def stream_table_paths(settings: Settings, warehouse: str) -> list[str]:
    """The streaming job's tables: one per source table, and the quarantine."""
    names = [*settings.delta_tables, settings.stream_quarantine_table]
    return [layout.table_path(warehouse, name) for name in names]


def _live_files(spark: SparkSession, path: str) -> int:
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, path).detail().first()["numFiles"])


def _vacuum(spark: SparkSession, path: str, retain_hours: int, dry_run: bool) -> int:
    """Files VACUUM deletes (or would, with `dry_run`). Delta's Python `vacuum()` returns no file list, so this uses
    SQL: its DRY RUN lists the files; the real run returns the table path only."""
    listed = spark.sql(f"VACUUM delta.`{path}` RETAIN {retain_hours} HOURS DRY RUN").count()
    if not dry_run and listed:
        spark.sql(f"VACUUM delta.`{path}` RETAIN {retain_hours} HOURS").collect()
    return listed


def maintain_table(spark: SparkSession, path: str, retain_hours: int, dry_run: bool = False) -> TableMaintenance:
    """Compact the table's small files (OPTIMIZE, bin-packing), then VACUUM what no version within `retain_hours`
    references."""
    from delta.tables import DeltaTable

    started = time.monotonic()
    before = _live_files(spark, path)
    if not dry_run:
        DeltaTable.forPath(spark, path).optimize().executeCompaction()
    after = before if dry_run else _live_files(spark, path)
    vacuumed = _vacuum(spark, path, retain_hours, dry_run)
    return TableMaintenance(path, before, after, vacuumed, round(time.monotonic() - started, 1))


def allow_retention(spark: SparkSession, retain_hours: int) -> None:
    """Delta refuses a VACUUM retention below its default unless its check is off: the setting is the user's
    explicit choice, so turn it off for this session, and say what it costs."""
    if retain_hours < DELTA_DEFAULT_RETAIN_HOURS:
        print(
            f"maintenance: retention {retain_hours} h is below Delta's default {DELTA_DEFAULT_RETAIN_HOURS} h: "
            "time travel reaches back that far only, and a reader or writer slower than that may fail",
            flush=True,
        )
        spark.conf.set(DELTA_RETENTION_CHECK, "false")


def size_vacuum_listing(spark: SparkSession) -> None:
    """VACUUM's file listing in as many tasks as the session has cores, not Spark's default 10,000 (module docstring),
    unless the user chose a value."""
    if spark.conf.get(LISTING_PARALLELISM) == SPARK_DEFAULT_LISTING_PARALLELISM:
        spark.conf.set(LISTING_PARALLELISM, str(spark.sparkContext.defaultParallelism))


def is_delta_table(spark: SparkSession, path: str) -> bool:
    """Whether `path` holds a Delta table; False too when its bucket does not exist yet (S3A's
    UnknownStoreException: a user id that provisioning has not set up)."""
    from delta.tables import DeltaTable
    from py4j.protocol import Py4JJavaError

    try:
        return DeltaTable.isDeltaTable(spark, path)
    except Py4JJavaError as error:
        if error.java_exception.getClass().getName() == UNKNOWN_BUCKET:
            return False
        raise


def run(spark: SparkSession, paths: list[str], retain_hours: int, dry_run: bool) -> list[TableMaintenance]:
    allow_retention(spark, retain_hours)
    size_vacuum_listing(spark)
    done = []
    for path in paths:
        if not is_delta_table(spark, path):
            print(f"maintenance: {path}: no Delta table yet, skipped", flush=True)
            continue
        result = maintain_table(spark, path, retain_hours, dry_run)
        verb = "would compact" if dry_run else "compacted"
        print(
            f"maintenance: {path}: {verb} {result.files_before} live files into {result.files_after}; VACUUM "
            f"{'would delete' if dry_run else 'deleted'} {result.vacuumed} files older than {retain_hours} h "
            f"({result.seconds} s)",
            flush=True,
        )
        done.append(result)
    return done


def parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.maintenance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", default=settings.warehouse_uri, help="root of the streaming job's Delta tables")
    parser.add_argument(
        "--retain-hours",
        type=int,
        default=settings.delta_vacuum_retain_hours,
        help="VACUUM keeps files referenced by any version this recent (default: DELTA_VACUUM_RETAIN_HOURS)",
    )
    parser.add_argument("--dry-run", action="store_true", help="change nothing; report what would be done")
    parser.add_argument("--master", default=None, help="Spark master (default: SPARK_MASTER or local[*])")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    args = parse_args(argv, settings)
    require_jars(settings, [args.warehouse])
    spark = build_spark("pinterest-delta-maintenance", settings, master=args.master)
    spark.sparkContext.setLogLevel("WARN")
    try:
        results = run(spark, stream_table_paths(settings, args.warehouse), args.retain_hours, args.dry_run)
    except Exception as error:  # a readable message and a non-zero exit, as the batch job
        print(f"maintenance: FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print(f"maintenance: {len(results)} table(s) {[asdict(r) for r in results]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
