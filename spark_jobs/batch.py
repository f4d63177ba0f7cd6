"""The batch job: the S3 sink's JSON files -> cleaned tables -> the nine docs/contract.md §5 results as Parquet + report.html.

The thin I/O edge around cleaning.py and queries.py. Reads `s3a://<bucket>/topics/<id>.<table>/partition=*/*.json`
(or the same layout under `--input`, any Hadoop path or local folder), writes `<results>/<query>/` (Parquet,
overwrite: a re-run replaces the previous results), `<results>/quarantine/<table>/`, `<results>/cleaned/<table>/`
(the cleaned, de-duplicated rows it queried) and `<results>/report.html`, and
for the report and the console `<results>/quarantine_summary.json` (this run's quarantine by table and reason) and
`<results>/history/<run id>.json` (one record per run: rows read and quarantined, duration; pipeline/run_history.py).
The report also summarises the streaming job's Delta tables under `--warehouse` (spark_jobs/stream_stats.py); by
default those of the bucket when the job reads the bucket, none (the section says so) for another `--input`.

    python -m spark_jobs.batch [--input PATH] [--results PATH] [--warehouse PATH] [--master local[2]]
    PATH=.state/venv/bin:$PATH spark-submit $(python -m spark_jobs.session --submit-args) spark_jobs/batch.py [...]

Each table's JSON is parsed once: the parsed, flagged records are cached, keeping the raw text only for
quarantined records. Each table is de-duplicated once, written to `<results>/cleaned/<table>/`, and the queries run
on that output read back, cached and pruned to the columns they use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline import layout, run_history
from pipeline.settings import TABLES, Settings, get_settings
from spark_jobs import cleaning, results_store, stream_stats
from spark_jobs.maintenance import is_delta_table
from spark_jobs.queries import run_queries
from spark_jobs.report import HISTORY_SHOWN, TableStream, render_report
from spark_jobs.session import build_spark, require_jars

LOCAL_DRIVER_MEMORY = "4g"
# Columns the queries read; everything else is dropped after de-duplication.
QUERY_COLUMNS = {
    "pin": ("ind", "category", "poster_name", "follower_count"),
    "geo": ("ind", "country", "timestamp"),
    "user": ("ind", "user_name", "age", "date_joined"),
}


@dataclass
class TableRun:
    table: DataFrame
    read: int
    quarantined: int
    duplicates_dropped: int
    rows: int
    reasons: dict[str, int]  # quarantine reason -> records

    def counts(self) -> dict[str, int]:
        return {
            "read": self.read,
            "quarantined": self.quarantined,
            "duplicates_dropped": self.duplicates_dropped,
            "rows": self.rows,
        }


def quiet_glob_warning(spark: SparkSession) -> None:
    """Reading a glob logs a stack trace ("Assume no metadata directory") on every run; it is not an error."""
    jvm = spark.sparkContext._jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.spark.sql.execution.streaming.sinks.FileStreamSink", jvm.org.apache.logging.log4j.Level.ERROR
    )


def read_records(spark: SparkSession, path: str) -> DataFrame:
    """One row per JSON line: `value` plus the file it came from (kept for quarantined records)."""
    return spark.read.text(path).select("value", F.col("_metadata.file_path").alias("source_file"))


def prepare_table(
    spark: SparkSession, table: str, path: str, quarantine_path: str, cleaned_path: str | None = None
) -> TableRun:
    flagged = cleaning.parse_and_flag(read_records(spark, path), table)
    # Raw text is only needed for quarantined records; dropping it for the rest keeps the cache small.
    flagged = flagged.withColumn(
        cleaning.VALUE_COLUMN, F.when(F.col(cleaning.REASON_COLUMN).isNotNull(), F.col(cleaning.VALUE_COLUMN))
    ).persist(StorageLevel.MEMORY_AND_DISK)
    by_reason = dict(flagged.groupBy(cleaning.REASON_COLUMN).count().collect())  # reason None: a good record
    good = by_reason.pop(None, 0)
    read = good + sum(by_reason.values())
    cleaning.quarantined_records(flagged, table).coalesce(1).write.mode("overwrite").parquet(quarantine_path)

    cleaned = cleaning.drop_duplicate_records(
        cleaning.valid_records(flagged).drop("source_file").transform(cleaning.clean, table)
    )
    if cleaned_path:  # every column, for a look at what the run queried (the console's trace reads it)
        cleaned.write.mode("overwrite").parquet(cleaned_path)
        # The queries read back what was written, de-duplicating (a shuffle and an aggregation) once, not twice; a
        # file per shuffle partition, not one, so they read it back in parallel.
        cleaned = spark.read.parquet(cleaned_path)
    deduplicated = cleaned.select(*QUERY_COLUMNS[table]).persist(StorageLevel.MEMORY_AND_DISK)
    rows = deduplicated.count()
    flagged.unpersist()
    return TableRun(deduplicated, read, read - good, good - rows, rows, by_reason)


def error_line(error: Exception) -> str:
    """One readable line for an error; for a JVM error, the Java exception's own message (py4j's first line only
    names the method that was called)."""
    java = getattr(error, "java_exception", None)
    text = str(java.toString()) if java is not None else f"{type(error).__name__}: {error}"
    return (text.strip().splitlines() or [type(error).__name__])[0][:500]


def stream_tables(spark: SparkSession, settings: Settings, warehouse: str) -> tuple[list[TableStream], dict[str, str]]:
    """The streaming section's numbers for each streaming table that exists under `warehouse` (none: empty), and why
    any of them could not be read. A table that cannot be read is reported, not raised: the results, the history
    and the rest of the report do not depend on the streaming job's tables."""
    streams, errors = [], {}
    for name in [*settings.delta_tables, settings.stream_quarantine_table]:
        path = layout.table_path(warehouse, name)
        try:
            if is_delta_table(spark, path):
                streams.append(stream_stats.table_stream(name, *stream_stats.read_stream_table(spark, path)))
        except Exception as error:  # any failure to read one table: named in the report and on stderr
            errors[name] = error_line(error)
            print(f"batch: streaming table {path} not summarised: {errors[name]}", file=sys.stderr, flush=True)
    return streams, errors


def record_run(
    settings: Settings, results_root: str, input_root: str, tables: dict[str, TableRun], seconds: float
) -> tuple[str, list[dict[str, object]]]:
    """Write this run's history record and the quarantine summary; returns the run id and the newest records, this
    run's included."""
    finished = datetime.now(UTC)
    run_id = run_history.new_run_id(finished)
    counts = {table: run_.counts() for table, run_ in tables.items()}
    record = run_history.run_record(run_id, finished, seconds, input_root, counts)
    summary = run_history.quarantine_summary(run_id, finished, {t: r.reasons for t, r in tables.items()})
    for target, document in (
        (layout.history_record_path(results_root, run_id), record),
        (layout.quarantine_summary_path(results_root), summary),
    ):
        results_store.write_text(target, json.dumps(document, indent=1), "application/json", settings)
    newest = results_store.read_newest(
        layout.history_prefix(results_root), layout.HISTORY_SUFFIX, HISTORY_SHOWN, settings
    )
    return run_id, [run_history.parse_run_record(text, f"history record {name}") for name, text in newest]


def write_report(page: str, results_root: str, settings: Settings) -> str:
    return results_store.write_text(layout.report_path(results_root), page, "text/html", settings)


def run(
    spark: SparkSession, settings: Settings, input_root: str, results_root: str, warehouse: str | None = None
) -> dict[str, object]:
    """Clean, query, write; returns the summary printed by `main`. `warehouse`: where the streaming job's Delta
    tables are, for the report's streaming section (None: the section says it was not computed)."""
    started = time.monotonic()
    results_root = results_root.rstrip("/")
    tables = {
        table: prepare_table(
            spark,
            table,
            layout.input_glob(input_root, settings.topic(table), table),
            layout.quarantine_path(results_root, table),
            layout.cleaned_path(results_root, table),
        )
        for table in TABLES
    }
    frames: dict[str, pd.DataFrame] = {}
    for name, result in run_queries(*(tables[t].table for t in TABLES)).items():
        result = result.persist()
        result.coalesce(1).write.mode("overwrite").parquet(layout.result_path(results_root, name))
        frames[name] = result.toPandas()
        result.unpersist()
    counts = {table: tables[table].counts() for table in TABLES}
    for run_ in tables.values():
        run_.table.unpersist()
    run_id, history = record_run(settings, results_root, input_root, tables, time.monotonic() - started)
    streams, stream_errors = stream_tables(spark, settings, warehouse) if warehouse is not None else (None, None)
    meta = (
        f"Run {run_id}, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, user {settings.pipeline_user_id}, "
        f"input {input_root}, {time.monotonic() - started:.1f} s"
    )
    quarantine = {table: tables[table].reasons for table in TABLES}
    page = render_report(
        frames,
        counts,
        meta,
        quarantine=quarantine,
        history=history,
        streams=streams,
        warehouse=warehouse,
        stream_errors=stream_errors,
    )
    report = write_report(page, results_root, settings)
    return {
        "run_id": run_id,
        "counts": counts,
        "results": {name: len(frame) for name, frame in frames.items()},
        "report": report,
        "seconds": round(time.monotonic() - started, 1),
    }


def print_summary(summary: dict[str, object], results_root: str) -> None:
    print(f"batch: done in {summary['seconds']} s")
    for table, counts in summary["counts"].items():  # type: ignore[union-attr]
        print(
            f"  {table:<5} read {counts['read']:>9}  quarantined {counts['quarantined']:>6}  "
            f"duplicates dropped {counts['duplicates_dropped']:>7}  rows {counts['rows']:>9}"
        )
    for name, rows in summary["results"].items():  # type: ignore[union-attr]
        print(f"  {layout.result_path(results_root, name)}/  {rows} rows")
    print(f"  report: {summary['report']}")


def parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.batch", description=__doc__.split("\n\n")[0])
    defaults = layout.batch_job_paths(settings.bucket_uri)
    parser.add_argument("--input", default=defaults["input"], help="bucket URI or folder holding topics/")
    parser.add_argument("--results", default=defaults["results"], help="results root")
    parser.add_argument(
        "--warehouse",
        default=None,
        help="root of the streaming job's Delta tables, for the report (default: the bucket's, when --input is the bucket)",
    )
    parser.add_argument("--master", default=None, help="Spark master (default: SPARK_MASTER or local[*])")
    args = parser.parse_args(argv)
    if args.warehouse is None and args.input == settings.bucket_uri:
        # A run over local files (tests, benchmarks) must not reach for the bucket just for the report.
        args.warehouse = settings.warehouse_uri
    return args


def local_conf() -> dict[str, str]:
    """The driver's heap when the job starts its own JVM (local mode; spark-submit and clusters set their own).
    Spark's default, 1 GB, made the cached tables of 1,000,000 posts spill, and the job slower (docs/BENCHMARKS.md,
    "Spark batch"). `SPARK_DRIVER_MEMORY` overrides it, as it does for spark-submit."""
    return {"spark.driver.memory": os.environ.get("SPARK_DRIVER_MEMORY", LOCAL_DRIVER_MEMORY)}


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    args = parse_args(argv, settings)
    require_jars(settings, [args.input, args.results, args.warehouse or ""])
    spark = build_spark("pinterest-batch", settings, master=args.master, extra_conf=local_conf())
    quiet_glob_warning(spark)
    try:
        summary = run(spark, settings, args.input, args.results, args.warehouse)
    except Exception as error:  # the job's contract is a readable message and a non-zero exit
        print(f"batch: FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print_summary(summary, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
