"""The batch job: the S3 sink's JSON files -> cleaned tables -> the nine docs/contract.md §5 results as Parquet + report.html.

The thin I/O edge around cleaning.py and queries.py. Reads `s3a://<bucket>/topics/<id>.<table>/partition=*/*.json`
(or the same layout under `--input`, any Hadoop path or local folder), writes `<results>/<query>/` (Parquet,
overwrite: a re-run replaces the previous results), `<results>/quarantine/<table>/` and `<results>/report.html`.

    python -m spark_jobs.batch [--input PATH] [--results PATH] [--master local[2]]
    PATH=.state/venv/bin:$PATH spark-submit $(python -m spark_jobs.session --submit-args) spark_jobs/batch.py [...]

Each table's JSON is parsed once: the parsed, flagged records are cached, keeping the raw text only for
quarantined records, and the queries run on cached, de-duplicated tables pruned to the columns they use.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline import layout
from pipeline.settings import TABLES, Settings, get_settings
from spark_jobs import cleaning
from spark_jobs.queries import run_queries
from spark_jobs.report import render_report
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


def prepare_table(spark: SparkSession, table: str, path: str, quarantine_path: str) -> TableRun:
    flagged = cleaning.parse_and_flag(read_records(spark, path), table)
    # Raw text is only needed for quarantined records; dropping it for the rest keeps the cache small.
    flagged = flagged.withColumn(
        cleaning.VALUE_COLUMN, F.when(F.col(cleaning.REASON_COLUMN).isNotNull(), F.col(cleaning.VALUE_COLUMN))
    ).persist(StorageLevel.MEMORY_AND_DISK)
    by_validity = dict(flagged.groupBy(F.col(cleaning.REASON_COLUMN).isNull().alias("ok")).count().collect())
    read, good = sum(by_validity.values()), by_validity.get(True, 0)
    cleaning.quarantined_records(flagged, table).coalesce(1).write.mode("overwrite").parquet(quarantine_path)

    cleaned = cleaning.valid_records(flagged).drop("source_file").transform(cleaning.clean, table)
    deduplicated = (
        cleaning.drop_duplicate_records(cleaned).select(*QUERY_COLUMNS[table]).persist(StorageLevel.MEMORY_AND_DISK)
    )
    rows = deduplicated.count()
    flagged.unpersist()
    return TableRun(deduplicated, read, read - good, good - rows, rows)


def write_report(page: str, results_root: str, settings: Settings) -> str:
    target = layout.report_path(results_root)
    if target.startswith("s3a://") or target.startswith("s3://"):
        import boto3  # only the S3 path needs it

        bucket, _, key = target.split("://", 1)[1].partition("/")
        with tempfile.NamedTemporaryFile("w", suffix=".html", encoding="utf-8", delete=False) as handle:
            handle.write(page)
        client = boto3.client("s3", **settings.boto3_client_kwargs("s3"))
        client.upload_file(handle.name, bucket, key, ExtraArgs={"ContentType": "text/html; charset=utf-8"})
        Path(handle.name).unlink()
    else:
        local = Path(target.removeprefix("file://"))
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(page, encoding="utf-8")
    return target


def run(spark: SparkSession, settings: Settings, input_root: str, results_root: str) -> dict[str, object]:
    """Clean, query, write; returns the summary printed by `main`."""
    started = time.monotonic()
    results_root = results_root.rstrip("/")
    tables = {
        table: prepare_table(
            spark,
            table,
            layout.input_glob(input_root, settings.topic(table), table),
            layout.quarantine_path(results_root, table),
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
    meta = (
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, user {settings.pipeline_user_id}, input {input_root}, "
        f"{time.monotonic() - started:.1f} s"
    )
    report = write_report(render_report(frames, counts, meta), results_root, settings)
    return {
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
    parser.add_argument("--input", default=settings.bucket_uri, help="bucket URI or folder holding topics/")
    parser.add_argument("--results", default=settings.results_uri, help="results root")
    parser.add_argument("--master", default=None, help="Spark master (default: SPARK_MASTER or local[*])")
    return parser.parse_args(argv)


def local_conf() -> dict[str, str]:
    """The driver's heap when the job starts its own JVM (local mode; spark-submit and clusters set their own).
    Spark's default, 1 GB, made the cached tables of 1,000,000 posts spill, and the job slower (docs/BENCHMARKS.md,
    "Spark batch"). `SPARK_DRIVER_MEMORY` overrides it, as it does for spark-submit."""
    return {"spark.driver.memory": os.environ.get("SPARK_DRIVER_MEMORY", LOCAL_DRIVER_MEMORY)}


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    args = parse_args(argv, settings)
    require_jars(settings, [args.input, args.results])
    spark = build_spark("pinterest-batch", settings, master=args.master, extra_conf=local_conf())
    quiet_glob_warning(spark)
    try:
        summary = run(spark, settings, args.input, args.results)
    except Exception as error:  # the job's contract is a readable message and a non-zero exit
        print(f"batch: FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print_summary(summary, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
