"""The batch report's streaming section: rows per streaming Delta table per minute, and end-to-end latency p50/p95.

Columns used: `arrival_time`, the record's `ApproximateArrivalTimestamp` in Kinesis (spark_jobs/stream_transforms.py
keeps it in every streaming table, the quarantine included), and the time the Delta data file holding the row was
written, `_metadata.file_modification_time` (Delta's `AddFile.modificationTime`: on S3 the object's upload time).
Rows per minute counts rows by the minute of `arrival_time`. Latency is file written minus Kinesis arrival: what a
record waited in the stream, the micro-batch and the Parquet write; the commit to `_delta_log` that follows the
file's write (tens of milliseconds) is not in it. The tables carry no per-row commit time (that would need Delta's
row tracking or change data feed on the tables, and a cost on every streaming write).

A file rewritten by OPTIMIZE (spark_jobs/maintenance.py), DELETE, MERGE or RESTORE gets a new modification time,
which would turn the latency of every row in it into "hours". So latency only counts rows that arrived after the
newest commit that removed files (`latency_since`) among the table's newest `HISTORY_SCAN` commits, or, with none
among them, after the oldest of those commits: the recent latency, reading a hundred small commit files per table
rather than the whole log (a 1 s trigger makes 86,400 commits a day).

Why Spark and not delta-rs (the `deltalake` package the console uses): the batch job already has a Spark session
with Delta and the same S3A settings on every target (local, EMR, Databricks), so the tables are read with no
second set of storage options and no extra package on the cluster, and the per-minute counts and percentiles run
where the data is instead of pulling every row into the driver. The pure functions here take a DataFrame of
`arrival_time, written_time` and are unit-tested without Delta.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs.report import LATENCY_COMMITS, TableStream

ARRIVAL = "arrival_time"
WRITTEN = "written_time"
MINUTES_SHOWN = 60
HISTORY_SCAN = LATENCY_COMMITS  # commits read per table: at a 1 s trigger, the last two minutes or so
MINUTE_FORMAT = "yyyy-MM-dd HH:mm"
PERCENTILE_ACCURACY = 10_000  # percentile_approx's default; its error is at most 1/accuracy of the rank
# How a commit says it removed files: Delta on Spark, and delta-rs (for a table another writer compacted).
REMOVED_FILES_METRICS = ("numRemovedFiles", "numFilesRemoved")


def rows_per_minute(df: DataFrame, limit: int = MINUTES_SHOWN) -> DataFrame:
    """`minute, rows` for the newest `limit` minutes that have rows, by `arrival_time`, oldest first; the minute as
    `yyyy-MM-dd HH:mm` text in the session's time zone (UTC, spark_jobs/session.py), which sorts as time does."""
    minute = F.date_format(F.date_trunc("minute", ARRIVAL), MINUTE_FORMAT).alias("minute")
    counts = df.groupBy(minute).count().withColumnRenamed("count", "rows")
    return counts.orderBy(F.col("minute").desc()).limit(limit).orderBy("minute")


def latency_seconds(df: DataFrame, since: datetime | None) -> DataFrame:
    """One row: `rows, p50, p95` of `written_time - arrival_time` in seconds, over the rows that arrived after
    `since` (all rows when None). p50 and p95 are null when no row qualifies."""
    if since is not None:
        df = df.where(F.col(ARRIVAL) > F.lit(since))
    seconds = (F.unix_micros(WRITTEN) - F.unix_micros(ARRIVAL)) / 1_000_000
    quantiles = F.percentile_approx(seconds, [0.5, 0.95], PERCENTILE_ACCURACY)
    return df.agg(F.count(F.lit(1)).alias("rows"), quantiles.alias("q")).select(
        "rows", F.col("q")[0].alias("p50"), F.col("q")[1].alias("p95")
    )


def latency_since(commits: Iterable[Mapping[str, Any]], scan: int = HISTORY_SCAN) -> datetime | None:
    """From a table's newest commits (Delta history rows: `timestamp`, `operationMetrics`, newest first, at most
    `scan` of them), the time after which every arriving row is still in the file the stream wrote: the newest
    commit that removed files (OPTIMIZE and the like rewrite rows into new files). With none among a full scan,
    such a commit may be older than the scan: the oldest commit read is the bound. None: no bound needed."""
    commits = list(commits)
    for commit in commits:
        metrics = commit.get("operationMetrics") or {}
        if any(int(metrics.get(key) or 0) > 0 for key in REMOVED_FILES_METRICS):
            return commit["timestamp"]
    return commits[-1]["timestamp"] if len(commits) >= scan else None


def table_stream(name: str, rows_and_written: DataFrame, commits: Iterable[Mapping[str, Any]]) -> TableStream:
    """All of one table's numbers from its `arrival_time, written_time` rows and its newest commits."""
    since = latency_since(commits)
    rows_and_written = rows_and_written.persist(StorageLevel.MEMORY_AND_DISK)  # two columns, read three times
    newest = F.date_format(F.max(ARRIVAL), "yyyy-MM-dd HH:mm:ss").alias("newest")
    totals = rows_and_written.agg(F.count(F.lit(1)).alias("rows"), newest).first()
    latency = latency_seconds(rows_and_written, since).first()
    per_minute = rows_per_minute(rows_and_written).toPandas()
    rows_and_written.unpersist()
    return TableStream(
        name=name,
        rows=totals["rows"],
        newest_arrival=totals["newest"],
        latency_rows=latency["rows"],
        # A collected timestamp is a naive datetime in the driver's local time; astimezone reads it so.
        latency_since=None if since is None else f"{since.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
        p50_seconds=latency["p50"],
        p95_seconds=latency["p95"],
        per_minute=per_minute,
    )


def read_stream_table(spark: SparkSession, path: str) -> tuple[DataFrame, list[dict[str, Any]]]:
    """(`arrival_time, written_time` of every row, the newest commits) of the Delta table at `path`."""
    from delta.tables import DeltaTable

    rows = (
        spark.read.format("delta").load(path).select(ARRIVAL, F.col("_metadata.file_modification_time").alias(WRITTEN))
    )
    history = DeltaTable.forPath(spark, path).history(HISTORY_SCAN).select("timestamp", "operationMetrics")
    return rows, [row.asDict() for row in history.collect()]
