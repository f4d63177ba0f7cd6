"""The streaming job's Delta tables and their exactly-once writer (the foreachBatch body of each query).

Exactly-once, also across `kill -9`: the source replays a logged micro-batch with exactly the same records (offsets
are concrete sequence numbers), and every Delta commit of a batch is marked with `userMetadata` =
`{"app": "stream-<table>-<query id>", "batch": <batch id>}` (the query id lives in its checkpoint). A writer that
starts (or restarts) reads the newest commits of each table once (`DeltaTable.history`, no table scan), learns the
last batch its query committed there, and skips a replayed batch it already committed; afterwards it keeps that
number in memory. Why not Delta's own `txnAppId`/`txnVersion` options (what the Delta streaming sink uses): in Delta
4.4 each such write looks the version up in the table's full state (`Snapshot.setTransactions` ignores the copy in
the .crc file), i.e. three extra Spark jobs per write, which would double an append's time: more than the streaming
latency goal (p95 < 5 s at a 1 s trigger) can absorb three times per trigger (measurements: docs/design/streaming.md).
Assumption this relies on: each table is written by this job only, and a replayed batch's commit is among the
newest `HISTORY_SCAN` commits of the table (a replay is the first batch after a restart). Why foreachBatch rather
than a plain Delta sink: one read of Kinesis feeds two tables (clean rows and quarantine) atomically per table.
The tables checkpoint their log every `CHECKPOINT_INTERVAL` commits (Delta's default, 10, costs a 3-4 s checkpoint
every 10 s of a 1 s trigger).

A skipped replay is printed (the job's log), so an operator, and the fault test, can see the skip happen. For that
test, `STREAM_CRASH_AFTER_COMMIT=<table>:<n>` makes the job exit at once (status 137, as a kill -9) right after its
n-th commit to that table, before the stream's checkpoint records the batch: the one moment a replay must be skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from pipeline import layout
from pipeline.settings import Settings
from spark_jobs import cleaning
from spark_jobs.stream_transforms import clean_rows, quarantine_rows

HISTORY_SCAN = 1000  # commits read back when a writer starts, to find the last batch its query committed
CHECKPOINT_INTERVAL = 100


# --- tables -----------------------------------------------------------------------------------------------------
def table_properties(stats_columns: Sequence[str]) -> dict[str, str]:
    """Delta properties of the streaming tables.

    - `delta.checkpointInterval`: see the module docstring.
    - `delta.dataSkippingStatsColumns`: Delta collects min/max/null-count statistics for data skipping while it
      writes each file, by default for the first 32 columns. Every write task generates code for those expressions,
      seconds per micro-batch for the wide clean tables (docs/design/streaming.md). The stream tables keep
      statistics for the columns readers filter on: the post's `ind` and the arrival time.
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


# --- exactly-once appends ------------------------------------------------------------------------------------
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
        self._commits = 0  # commits to the clean table by this process (STREAM_CRASH_AFTER_COMMIT)

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
        if batch_id <= self._last_committed(spark, self.table_path, app_id):
            print(
                f"skipping replayed batch {batch_id} of {self.table}: committed to its Delta table before a restart",
                flush=True,
            )
        else:
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
        if path == self.table_path:
            self._commits += 1
            if crash_point() == (self.table, self._commits):
                print(f"{CRASH_AFTER_COMMIT}: exiting after commit {self._commits} to {self.table}", flush=True)
                os._exit(137)


CRASH_AFTER_COMMIT = "STREAM_CRASH_AFTER_COMMIT"


def crash_point() -> tuple[str, int] | None:
    """(table, n) of `STREAM_CRASH_AFTER_COMMIT=<table>:<n>`, the fault tests' crash point; None when unset."""
    value = os.environ.get(CRASH_AFTER_COMMIT, "")
    table, _, count = value.partition(":")
    return (table, int(count)) if table and count.isdigit() else None
