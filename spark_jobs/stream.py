"""The streaming job: Kinesis streams `streaming-<id>-pin|geo|user` -> cleaned Delta tables `<id>_<table>_table`.

    python -m spark_jobs.stream [--warehouse PATH] [--trigger-seconds 1] [--until-idle SECONDS] [--tables pin ...]

Three queries, one per table, each with its own checkpoint (`<warehouse>/_checkpoints/<table>`), read the
`kinesis` source (spark_jobs/kinesis_source.py), parse `data` with the docs/contract.md schemas and clean it with the very
functions the batch job uses (spark_jobs/cleaning.py). Each micro-batch appends the cleaned rows, with lineage
columns `shard_id, sequence_number, arrival_time`, to the table's Delta table and the records that fail to parse,
with the reason, to `<id>_stream_quarantine_table`. Tables live under `s3a://<bucket>/delta/<name>` (or
`--warehouse`) and are registered in the session catalog by name; any other session can read them by path or call
`register_tables`.

Exactly-once, also across `kill -9`: the source replays a logged micro-batch with exactly the same records (offsets
are concrete sequence numbers), and every Delta commit of a batch is marked with `userMetadata` =
`{"app": "stream-<table>-<query id>", "batch": <batch id>}` (the query id lives in its checkpoint). A writer that
starts (or restarts) reads the newest commits of each table once (`DeltaTable.history`, no table scan), learns the
last batch its query committed there, and skips a replayed batch it already committed; afterwards it keeps that
number in memory. Why not Delta's own `txnAppId`/`txnVersion` options (what the Delta streaming sink uses): in Delta
4.4 each such write looks the version up in the table's full state (`Snapshot.setTransactions` ignores the copy in
the .crc file), i.e. three extra Spark jobs per write: measured 1.0-2.0 s per append against 0.5-0.6 s without, on
2 cores, and the streaming latency goal (p95 < 5 s at a 1 s trigger) cannot absorb that three times per trigger.
Assumption this relies on: each table is written by this job only, and a replayed batch's commit is among the
newest `HISTORY_SCAN` commits of the table (a replay is the first batch after a restart). Why foreachBatch rather
than a plain Delta sink: one read of Kinesis feeds two tables (clean rows and quarantine) atomically per table.
The tables checkpoint their log every `CHECKPOINT_INTERVAL` commits (Delta's default, 10, costs a 3-4 s checkpoint
every 10 s of a 1 s trigger).

No de-duplication here, deliberately: docs/contract.md §6 asks for every Kinesis record exactly once, and a post the emulator
re-sends is a new Kinesis record (new sequence number). The batch job's `drop_duplicate_records` is for analytics;
readers wanting one row per post apply it (or a MERGE) to these tables.

`--until-idle N` stops once every query has seen no new record for N seconds (tests, benchmarks); without it the
job runs until SIGINT or SIGTERM (`make stream-stop` sends SIGINT, which the Spark JVM ignores), then stops the
queries cleanly. A status file (`state/run/stream-status.json`) is rewritten every few seconds with each query's
progress; the runner's readiness probe reads it. A query that fails (e.g. its Python worker missed Spark's fixed
10 s connect-back window on a loaded machine) is restarted up to 5 times.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import StructType

from pipeline import layout
from pipeline.settings import REPO_ROOT, TABLES, Settings, get_settings
from spark_jobs import cleaning
from spark_jobs.kinesis_source import SCHEMA as KINESIS_SCHEMA
from spark_jobs.kinesis_source import KinesisDataSource
from spark_jobs.session import build_spark, require_jars

LINEAGE_COLUMNS = ("shard_id", "sequence_number", "arrival_time")
QUARANTINE_COLUMNS = ("source_table", "value", "reason", *LINEAGE_COLUMNS, "stream")
STATUS_INTERVAL_SECONDS = 2.0
# Spark cannot lengthen its 10 s wait for a Python worker to connect back; on a loaded machine a query may fail
# to start and is retried.
MAX_QUERY_RESTARTS = 5
HISTORY_SCAN = 1000  # commits read back when a writer starts, to find the last batch its query committed
CHECKPOINT_INTERVAL = 100
STREAM_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.driver.memory": "1g",
    # A progress event per idle trigger keeps the status file (and --until-idle) current.
    "spark.sql.streaming.noDataProgressEventInterval": "1000",
    "spark.sql.streaming.stopTimeout": "30000",
    # Delta rebuilds table state with 50 shuffle partitions by default: far too many for small micro-batches.
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.ui.showConsoleProgress": "false",
}


# --- transformations (pure DataFrame -> DataFrame) --------------------------------------------------------------
def kinesis_records(df: DataFrame) -> DataFrame:
    """The source's columns -> `value` (the record's JSON text) plus lineage, the input cleaning.py expects."""
    return df.select(
        F.col("data").cast("string").alias(cleaning.VALUE_COLUMN),
        F.col("shardId").alias("shard_id"),
        F.col("sequenceNumber").alias("sequence_number"),
        F.col("approximateArrivalTimestamp").alias("arrival_time"),
        F.col("stream"),
    )


def prepare(records: DataFrame, table: str) -> DataFrame:
    """`kinesis_records` -> every record parsed, flagged and cleaned in one row-wise projection: the cleaned
    columns, the lineage, and `value` plus `quarantine_reason` (set for records to quarantine, whose cleaned columns
    are then meaningless). The streaming query applies it once, when it starts, so a micro-batch builds no plan in
    Python: building the cleaning plan through py4j and re-analysing it inside foreachBatch cost 2-4 s per batch on
    2 cores. The cleaning functions are row-wise and null-safe (`try_cast`), so running them on records that will be
    quarantined changes nothing for the valid ones (tests/unit/test_stream_transform.py compares with batch)."""
    return cleaning.parse_and_flag(records, table).transform(cleaning.clean, table)


def clean_rows(prepared: DataFrame, table: str) -> DataFrame:
    """Valid records, cleaned exactly as the batch job cleans them, with the lineage columns last."""
    return prepared.where(F.col(cleaning.REASON_COLUMN).isNull()).select(
        *cleaning.CLEAN_COLUMNS[table], *LINEAGE_COLUMNS
    )


def quarantine_rows(prepared: DataFrame, table: str) -> DataFrame:
    return prepared.where(F.col(cleaning.REASON_COLUMN).isNotNull()).select(
        F.lit(table).alias("source_table"),
        cleaning.VALUE_COLUMN,
        F.col(cleaning.REASON_COLUMN).alias("reason"),
        *QUARANTINE_COLUMNS[3:],
    )


def output_schemas(spark: SparkSession, table: str) -> tuple[StructType, StructType]:
    """(clean table schema, quarantine schema), derived from the transformations themselves."""
    prepared = prepare(kinesis_records(spark.createDataFrame([], KINESIS_SCHEMA)), table)
    return clean_rows(prepared, table).schema, quarantine_rows(prepared, table).schema


# --- tables -----------------------------------------------------------------------------------------------------
def table_properties(stats_columns: Sequence[str]) -> dict[str, str]:
    """Delta properties of the streaming tables.

    - `delta.checkpointInterval`: see the module docstring.
    - `delta.dataSkippingStatsColumns`: Delta collects min/max/null-count statistics for data skipping while it
      writes each file, by default for the first 32 columns. Every write task generates code for those expressions,
      about 1.5-4 s per micro-batch on 2 cores for the wide clean tables (measured with JFR, 2026-11-26). The stream
      tables keep statistics for the columns readers filter on: the post's `ind` and the arrival time.
    """
    return {
        "delta.checkpointInterval": str(CHECKPOINT_INTERVAL),
        "delta.dataSkippingStatsColumns": ",".join(stats_columns),
    }


def ensure_table(spark: SparkSession, name: str, path: str, schema: StructType, stats_columns: Sequence[str]) -> None:
    """Create the Delta table at `path` if missing, with `table_properties`, and register `name` for it in this
    session's catalog."""
    from delta.tables import DeltaTable

    DeltaTable.createIfNotExists(spark).tableName(name).location(path).addColumns(schema).execute()
    # Set apart from creation: createIfNotExists refuses an existing table whose properties differ (tables made
    # before a property was introduced), and a commit only when a value is not already there.
    current = DeltaTable.forPath(spark, path).detail().first()["properties"] or {}
    missing = {key: value for key, value in table_properties(stats_columns).items() if current.get(key) != value}
    if missing:
        settings = ", ".join(f"'{key}' = '{value}'" for key, value in missing.items())
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({settings})")


def register_tables(spark: SparkSession, settings: Settings, warehouse: str) -> dict[str, str]:
    """Make the streaming tables readable by name in `spark` (for other jobs, notebooks, tests): name -> path."""
    names = [*settings.delta_tables, settings.stream_quarantine_table]
    registered = {}
    for name in names:
        path = layout.table_path(warehouse, name)
        spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION '{path}'")
        registered[name] = path
    return registered


# --- queries ----------------------------------------------------------------------------------------------------
def batch_marker(app_id: str, batch_id: int) -> str:
    """The `userMetadata` of a streaming commit: which query (app) wrote it, for which micro-batch."""
    return json.dumps({"app": app_id, "batch": batch_id}, separators=(",", ":"))


def last_committed_batch(user_metadata: Iterable[str | None], app_id: str) -> int:
    """The batch id of the newest commit of `app_id` among commits' userMetadata, newest first; -1 if none."""
    for value in user_metadata:
        if not value or not value.startswith("{"):
            continue
        try:
            marker = json.loads(value)
        except ValueError:
            continue
        if isinstance(marker, dict) and marker.get("app") == app_id and isinstance(marker.get("batch"), int):
            return marker["batch"]
    return -1


class BatchWriter:
    """foreachBatch body for one table: its batch is already `prepare`d; append the clean rows and the quarantined
    rows, each exactly once."""

    def __init__(self, table: str, table_path_: str, quarantine_path: str, checkpoint: str) -> None:
        self.table, self.table_path, self.quarantine_path, self.checkpoint = (
            table,
            table_path_,
            quarantine_path,
            checkpoint,
        )
        self.query_id: str | None = None
        self.committed: dict[str, int] = {}  # table path -> last batch id this query committed there

    def _app_id(self, spark: SparkSession) -> str:
        # The query id lives in the checkpoint, so it survives restarts and changes when the checkpoint is reset.
        if self.query_id is None:
            metadata = spark.read.text(f"{self.checkpoint}/metadata").first()
            self.query_id = json.loads(metadata[0])["id"]
        return f"stream-{self.table}-{self.query_id}"

    def _last_committed(self, spark: SparkSession, path: str, app_id: str) -> int:
        if path not in self.committed:
            from delta.tables import DeltaTable

            history = DeltaTable.forPath(spark, path).history(HISTORY_SCAN).select("userMetadata").collect()
            self.committed[path] = last_committed_batch((row[0] for row in history), app_id)
        return self.committed[path]

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        # One Spark job per batch in the common case: the clean write also counts the records to quarantine
        # (`observe`), so no separate count (with its shuffle) and no cache are needed. The rare batch with records
        # to quarantine reads its records a second time (the source hands the same records again).
        spark = batch.sparkSession
        app_id = self._app_id(spark)
        quarantined: int | None = None
        if batch_id > self._last_committed(spark, self.table_path, app_id):
            counts = Observation(f"{self.table}_batch_{batch_id}")
            observed = batch.observe(counts, F.count(F.col(cleaning.REASON_COLUMN)).alias("quarantined"))
            self._append(clean_rows(observed, self.table), self.table_path, app_id, batch_id)
            quarantined = counts.get["quarantined"]
        if batch_id > self._last_committed(spark, self.quarantine_path, app_id):
            bad = quarantine_rows(batch, self.table)
            if quarantined if quarantined is not None else not bad.isEmpty():
                self._append(bad, self.quarantine_path, app_id, batch_id)

    def _append(self, frame: DataFrame, path: str, app_id: str, batch_id: int) -> None:
        frame.write.format("delta").mode("append").option("userMetadata", batch_marker(app_id, batch_id)).save(path)
        self.committed[path] = batch_id


def start_query(
    spark: SparkSession, settings: Settings, table: str, warehouse: str, checkpoints: str, args: argparse.Namespace
) -> StreamingQuery:
    checkpoint = layout.checkpoint_path(checkpoints, table)
    writer = BatchWriter(
        table,
        layout.table_path(warehouse, settings.delta_table(table)),
        layout.table_path(warehouse, settings.stream_quarantine_table),
        checkpoint,
    )
    source = (
        spark.readStream.format("kinesis")
        .option("streamName", settings.stream(table))
        .option("region", settings.aws_region)
        .option("initialPosition", args.initial_position)
    )
    if args.timestamp:
        source = source.option("timestamp", args.timestamp)
    if settings.kinesis_endpoint_url:
        source = source.option("endpointUrl", settings.kinesis_endpoint_url)
    return (
        source.load()
        .transform(kinesis_records)
        .transform(prepare, table)
        .writeStream.queryName(f"stream_{table}")
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime=f"{args.trigger_seconds} seconds")
        .foreachBatch(writer)
        .start()
    )


def query_status(query: StreamingQuery) -> dict[str, object]:
    progress = query.lastProgress or {}
    return {
        "name": query.name,
        "id": str(query.id),
        "active": query.isActive,
        "batch_id": progress.get("batchId"),
        "input_rows": progress.get("numInputRows"),
        "input_rows_per_second": progress.get("inputRowsPerSecond"),
        "processed_rows_per_second": progress.get("processedRowsPerSecond"),
        "trigger_ms": (progress.get("durationMs") or {}).get("triggerExecution"),
        "duration_ms": progress.get("durationMs"),
        "progress_at": progress.get("timestamp"),
    }


def write_status(path: Path, queries: list[StreamingQuery]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    status = {
        "pid": os.getpid(),
        "updated_at": datetime.now(UTC).isoformat(),
        "queries": [query_status(q) for q in queries],
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(status, indent=2))
    temporary.replace(path)


def run(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
    spark.dataSource.register(KinesisDataSource)
    warehouse = args.warehouse
    checkpoints = args.checkpoints or layout.checkpoints_root(warehouse)
    for table in args.tables:
        clean_schema, quarantine_schema = output_schemas(spark, table)
        name = settings.delta_table(table)
        ensure_table(spark, name, layout.table_path(warehouse, name), clean_schema, ("ind", "arrival_time"))
    quarantine = settings.stream_quarantine_table
    ensure_table(spark, quarantine, layout.table_path(warehouse, quarantine), quarantine_schema, ("arrival_time",))

    def start(table: str) -> StreamingQuery:
        return start_query(spark, settings, table, warehouse, checkpoints, args)

    path = Path(args.status_file) if args.status_file else settings.stream_status_file
    queries = {}
    for table in args.tables:  # one at a time: each start launches a Python worker that must connect back in 10 s
        queries[table] = start(table)
        wait_for_first_trigger(queries[table])
        write_status(path, list(queries.values()))
    print(
        f"stream: {len(queries)} queries running ({', '.join(settings.stream(t) for t in args.tables)} -> "
        f"{warehouse}), trigger {args.trigger_seconds} s",
        flush=True,
    )

    stopping = {"flag": False}

    def request_stop(signum, _frame) -> None:
        print(f"stream: signal {signum}, stopping the queries", flush=True)
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    started = time.monotonic()
    last_rows_at = dict.fromkeys(queries, started)
    counted: dict[str, set[str]] = {table: set() for table in queries}
    totals = dict.fromkeys(queries, 0)
    restarts = dict.fromkeys(queries, 0)
    exit_code = 0
    while not stopping["flag"]:
        time.sleep(STATUS_INTERVAL_SECONDS / 4)
        for table, query in list(queries.items()):
            if query.isActive:
                continue
            error = query.exception()
            if restarts[table] >= MAX_QUERY_RESTARTS:
                print(f"stream: query {query.name} failed {restarts[table]} times, giving up: {error}", file=sys.stderr)
                stopping["flag"], exit_code = True, 1
                break
            # Safe: the checkpoint and the idempotent Delta writes make a restarted query continue exactly-once.
            restarts[table] += 1
            print(f"stream: query {query.name} stopped ({error}); restart {restarts[table]}", file=sys.stderr)
            queries[table] = start(table)
        for table, query in queries.items():
            for progress in query.recentProgress:
                key = f"{progress['runId']}/{progress['batchId']}"
                if progress["numInputRows"] and key not in counted[table]:
                    counted[table].add(key)
                    last_rows_at[table] = time.monotonic()
                    totals[table] += progress["numInputRows"]
        write_status(path, list(queries.values()))
        idle = all(
            (q.lastProgress or {}).get("numInputRows") == 0 and time.monotonic() - last_rows_at[t] >= args.until_idle
            for t, q in queries.items()
        )
        if args.until_idle and idle:
            print(f"stream: no new records for {args.until_idle} s, stopping", flush=True)
            break
    for query in queries.values():
        query.stop()
    write_status(path, list(queries.values()))
    print(f"stream: stopped after {time.monotonic() - started:.0f} s; records read {totals}", flush=True)
    return exit_code


def wait_for_first_trigger(query: StreamingQuery, timeout: float = 300.0) -> None:
    """Block until the query has planned its first trigger (or stopped): staggers the Python workers' start."""
    deadline = time.monotonic() + timeout
    while query.isActive and query.lastProgress is None and time.monotonic() < deadline:
        time.sleep(0.5)


def is_local_path(path: str) -> bool:
    return "://" not in path or path.startswith("file:")


def local_storage_conf(paths: list[str]) -> dict[str, str]:
    """Storage settings for a warehouse or checkpoints on the local disk (tests, benchmarks).

    Without Hadoop's native library, Hadoop's FileContext API on the local file system runs a shell command
    (`chmod`, `readlink`) for each file it creates or renames: Spark's default checkpoint file manager and Delta's
    default log store for `file:` both use it, about ten process launches per micro-batch and query, 21 % of the
    streaming threads' time in a profile (jstack samples, 2026-11-26). The FileSystem-based checkpoint manager and
    Delta's LocalLogStore do the same atomic write-then-rename through the FileSystem API, which needs no shell.
    LocalLogStore is safe for one writing process per table, which is how the streaming job writes."""
    if not any(is_local_path(path) for path in paths):
        return {}
    return {
        "spark.sql.streaming.checkpointFileManagerClass": (
            "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
        ),
        "spark.delta.logStore.file.impl": "io.delta.storage.LocalLogStore",
    }


def parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.stream", description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", default=settings.warehouse_uri, help="root of the Delta tables")
    parser.add_argument("--checkpoints", default=None, help="checkpoint root (default: <warehouse>/_checkpoints)")
    parser.add_argument("--trigger-seconds", type=float, default=1.0, help="micro-batch interval (default 1 s)")
    parser.add_argument(
        "--initial-position",
        default="earliest",
        choices=["earliest", "latest", "at_timestamp"],
        help="where a query without a checkpoint starts (default earliest: nothing already in the stream is lost)",
    )
    parser.add_argument("--timestamp", default=None, help="for at_timestamp: ISO 8601 or epoch seconds")
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES))
    parser.add_argument("--until-idle", type=float, default=0, help="stop after this many seconds without records")
    parser.add_argument("--master", default=None, help="Spark master (default: SPARK_MASTER or local[2])")
    parser.add_argument("--status-file", default=None, help="progress file (default: state/run/stream-status.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    args = parse_args(argv, settings)
    require_jars(settings, [args.warehouse, args.checkpoints or ""])
    # Python workers (the Kinesis reader runs in them) need this venv's interpreter and the project on their path.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    spark = build_spark(
        "pinterest-stream",
        settings,
        master=args.master or os.environ.get("SPARK_MASTER") or "local[2]",
        extra_conf=STREAM_CONF | local_storage_conf([args.warehouse, args.checkpoints or args.warehouse]),
    )
    spark.sparkContext.setLogLevel("WARN")
    try:
        return run(spark, settings, args)
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
