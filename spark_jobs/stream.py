"""The streaming job: Kinesis streams `streaming-<id>-pin|geo|user` -> cleaned Delta tables `<id>_<table>_table`.

    python -m spark_jobs.stream [--warehouse PATH] [--trigger-seconds 1] [--until-idle SECONDS] [--tables pin ...]

Three queries, one per table, each with its own checkpoint (`<warehouse>/_checkpoints/<table>`), read the
`kinesis` source (spark_jobs/kinesis_source.py), parse `data` with the docs/contract.md schemas and clean it with the very
functions the batch job uses (spark_jobs/cleaning.py). Each micro-batch appends the cleaned rows, with lineage
columns `shard_id, sequence_number, arrival_time`, to the table's Delta table and the records that fail to parse,
with the reason, to `<id>_stream_quarantine_table`. Tables live under `s3a://<bucket>/delta/<name>` (or
`--warehouse`) and are registered in the session catalog by name; any other session can read them by path or call
`spark_jobs.delta_writer.register_tables`.

This module is the job's command line: it starts the queries and watches them. The transformations are in
spark_jobs/stream_transforms.py; the tables and their exactly-once writer (also across `kill -9`) in
spark_jobs/delta_writer.py.

`--until-idle N` stops once every query has seen no new record for N seconds and none has a batch in flight (tests,
benchmarks); without it the job runs until SIGINT or SIGTERM (`make stream-stop` sends SIGINT, which the Spark JVM
ignores), then stops the queries cleanly. A status file (`state/run/stream-status.json`) is rewritten every few
seconds with each query's progress; the runner's readiness probe reads it. A query that fails (e.g. its Python worker
missed Spark's fixed 10 s connect-back window on a loaded machine) is restarted up to 5 times.

When Kinesis no longer has a checkpoint's sequence number (a re-created stream, a store that lost records), the
source resumes by arrival time instead of failing the query on every restart (spark_jobs/kinesis_offsets.py). The
source runs in Spark's Python workers, so it reports each resume, and each logged batch it could not fully replay,
as a JSON line in an event log next to the status file (`stream-status-events.jsonl`); every status counts them per
query (`resumed`, `last_resume`, `lost_ranges`, `last_lost_range`). The counts cover the whole file, across restarts
of the job: a resume stays visible after a later restart. Delete the file to start counting afresh.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from pipeline import layout
from pipeline.settings import REPO_ROOT, TABLES, Settings, get_settings
from spark_jobs.delta_writer import BatchWriter, ensure_table
from spark_jobs.kinesis_source import KinesisDataSource
from spark_jobs.session import build_spark, require_jars
from spark_jobs.stream_transforms import kinesis_records, output_schemas, prepare

STATUS_INTERVAL_SECONDS = 2.0
# Spark cannot lengthen its 10 s wait for a Python worker to connect back; on a loaded machine a query may fail
# to start and is retried.
MAX_QUERY_RESTARTS = 5
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


def query_name(table: str) -> str:
    return f"stream_{table}"


def start_query(
    spark: SparkSession,
    settings: Settings,
    table: str,
    warehouse: str,
    checkpoints: str,
    args: argparse.Namespace,
    event_log: Path,
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
        .option("eventLog", str(event_log))
        .option("maxBytesPerShardPerBatch", str(settings.stream_max_bytes_per_shard_per_batch))
    )
    if args.timestamp:
        source = source.option("timestamp", args.timestamp)
    if settings.kinesis_endpoint_url:
        source = source.option("endpointUrl", settings.kinesis_endpoint_url)
    return (
        source.load()
        .transform(kinesis_records)
        .transform(prepare, table)
        .writeStream.queryName(query_name(table))
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime=f"{args.trigger_seconds} seconds")
        .foreachBatch(writer)
        .start()
    )


def source_events_file(status_file: Path) -> Path:
    """The Kinesis sources' event log: next to the status file, which it feeds."""
    return status_file.with_name(f"{status_file.stem}-events.jsonl")


def no_source_events() -> dict[str, object]:
    return {"resumed": 0, "last_resume": None, "lost_ranges": 0, "last_lost_range": None}


def source_counts(event_log: Path) -> dict[str, dict[str, object]]:
    """Per stream, from the sources' event log (spark_jobs/kinesis_fetch.py): how many times reading resumed after
    a vanished sequence number and the last such resume; how many logged batches could not be fully replayed and the
    last of them."""
    try:
        lines = event_log.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    counts: dict[str, dict[str, object]] = {}
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line still being written
        stream = counts.setdefault(event.get("stream"), no_source_events())
        details = {k: v for k, v in event.items() if k not in ("event", "stream")}
        if event.get("event") == "resumed":
            stream["resumed"] = int(stream["resumed"]) + 1
            stream["last_resume"] = details
        elif event.get("event") == "lost_range":
            stream["lost_ranges"] = int(stream["lost_ranges"]) + 1
            stream["last_lost_range"] = details
    return counts


def query_status(query: StreamingQuery, source: dict[str, object] | None = None) -> dict[str, object]:
    """A query's progress, and what its source reported (`source_counts` of its stream)."""
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
        **(source or no_source_events()),
    }


def write_status(path: Path, queries: list[StreamingQuery], streams: dict[str, str] | None = None) -> None:
    """Rewrite the status file; `streams` maps query names to the streams they read, whose source events (in the
    event log next to the file) each query's entry counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    streams = streams or {}
    counts = source_counts(source_events_file(path)) if streams else {}
    status = {
        "pid": os.getpid(),
        "updated_at": datetime.now(UTC).isoformat(),
        "queries": [query_status(q, counts.get(streams.get(q.name, ""))) for q in queries],
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

    # Absolute: the sources write the event log next to it from Spark's Python workers.
    path = (Path(args.status_file) if args.status_file else settings.stream_status_file).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    streams = {query_name(table): settings.stream(table) for table in args.tables}

    def start(table: str) -> StreamingQuery:
        return start_query(spark, settings, table, warehouse, checkpoints, args, source_events_file(path))

    queries = {}
    for table in args.tables:  # one at a time: each start launches a Python worker that must connect back in 10 s
        queries[table] = start(table)
        wait_for_first_trigger(queries[table])
        write_status(path, list(queries.values()), streams)
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
            if busy(query.status):
                last_rows_at[table] = time.monotonic()
            for progress in query.recentProgress:
                key = f"{progress['runId']}/{progress['batchId']}"
                if progress["numInputRows"] and key not in counted[table]:
                    counted[table].add(key)
                    last_rows_at[table] = time.monotonic()
                    totals[table] += progress["numInputRows"]
        write_status(path, list(queries.values()), streams)
        idle = all(
            (q.lastProgress or {}).get("numInputRows") == 0 and time.monotonic() - last_rows_at[t] >= args.until_idle
            for t, q in queries.items()
        )
        if args.until_idle and idle:
            print(f"stream: no new records for {args.until_idle} s, stopping", flush=True)
            break
    for query in queries.values():
        query.stop()
    write_status(path, list(queries.values()), streams)
    print(f"stream: stopped after {time.monotonic() - started:.0f} s; records read {totals}", flush=True)
    return exit_code


def busy(status: dict[str, object]) -> bool:
    """Whether a query has found records it has not committed yet (`StreamingQuery.status["isDataAvailable"]`: set
    when a trigger plans a batch with data, cleared by the next trigger that finds none). The idle clock of
    `--until-idle` runs only while no query is busy: a batch that takes longer than the idle time (a resumed shard's
    first batch, a loaded machine) is work, not idleness, and stopping the query in its middle would leave its
    records for the next run. `isTriggerActive` is not used: it is also true for the short planning of each empty
    trigger, and sampling it would keep resetting the clock."""
    return bool(status.get("isDataAvailable"))


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
    default log store for `file:` both use it, about ten process launches per micro-batch and query (a fifth of the
    streaming threads' time: docs/design/streaming.md). The FileSystem-based checkpoint manager and
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
    parser.add_argument(
        "--status-file",
        default=None,
        help="progress file (default: state/run/stream-status.json); the sources' event log goes next to it",
    )
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
        # On a runner's cluster (SPARK_JARS=cluster) the session exists already, with the runner's master.
        master=None
        if settings.spark_jars == "cluster"
        else args.master or os.environ.get("SPARK_MASTER") or "local[2]",
        extra_conf=STREAM_CONF | local_storage_conf([args.warehouse, args.checkpoints or args.warehouse]),
    )
    spark.sparkContext.setLogLevel("WARN")
    try:
        return run(spark, settings, args)
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
