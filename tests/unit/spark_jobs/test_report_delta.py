"""The report's streaming numbers read from real Delta tables (spark_jobs/batch.stream_tables): a local warehouse
whose pin table delta-rs wrote in two appends a minute apart and then compacted, whose geo table has a broken log,
while the user and quarantine tables do not exist. Runs in its own JVM with the Delta jars (the unit tests' shared session has none), on local
files: no stack. Skipped when spark_jobs/fetch_jars.sh has not run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pipeline import layout
from pipeline.settings import REPO_ROOT, load_settings
from spark_jobs.session import jar_paths

USER_ID = "7e57c0de0003"
SETTINGS = load_settings(pipeline_user_id=USER_ID)
# The job's own code in a small session with the jars; prints each table's numbers as JSON.
READ_TABLES = """
import dataclasses, json, sys
from pipeline.settings import load_settings
from spark_jobs import batch
from spark_jobs.session import build_spark

settings = load_settings(pipeline_user_id=sys.argv[1])
small = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "1", "spark.driver.memory": "768m",
         "spark.databricks.delta.snapshotPartitions": "1"}
spark = build_spark("test-report-delta", settings, master="local[1]", extra_conf=small)
streams, errors = batch.stream_tables(spark, settings, sys.argv[2])
spark.stop()
print(json.dumps([[dataclasses.asdict(s) | {"per_minute": s.per_minute.values.tolist()} for s in streams], errors]))
"""


def _append(path: str, arrivals: list[datetime]) -> None:
    times = pa.array(arrivals, pa.timestamp("us", "UTC"))
    write_deltalake(path, pa.table({"ind": list(range(len(arrivals))), "arrival_time": times}), mode="append")


@pytest.mark.skipif(not jar_paths(SETTINGS), reason="no Delta jars: run spark_jobs/fetch_jars.sh")
def test_streaming_numbers_come_from_the_tables_that_exist(tmp_path):
    pin_table = layout.table_path(str(tmp_path), SETTINGS.delta_table("pin"))
    # Arrival times in the past: the rows written before the compaction have latencies of 10 minutes or more.
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    _append(pin_table, [base + timedelta(seconds=s) for s in range(3)])
    _append(pin_table, [base + timedelta(minutes=1, seconds=s) for s in range(2)])
    DeltaTable(pin_table).optimize.compact()  # rewrites those 5 rows into a file written now
    # Rows arriving after the compaction: only these count for latency, which is small.
    arrived = datetime.now(UTC)
    _append(pin_table, [arrived, arrived])
    broken_log = Path(layout.table_path(str(tmp_path), SETTINGS.delta_table("geo"))) / "_delta_log"
    broken_log.mkdir(parents=True)
    (broken_log / f"{0:020d}.json").write_text("not a Delta commit\n")

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", READ_TABLES, USER_ID, str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (pin,), errors = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(errors) == [SETTINGS.delta_table("geo")], errors
    assert "_delta_log" in errors[SETTINGS.delta_table("geo")]  # the Java exception's message, not py4j's
    assert "not summarised" in done.stderr
    assert (pin["name"], pin["rows"], pin["latency_rows"]) == (SETTINGS.delta_table("pin"), 7, 2)
    assert pin["newest_arrival"] == f"{arrived:%Y-%m-%d %H:%M:%S}"
    assert pin["latency_since"] is not None and pin["latency_since"] <= f"{arrived:%Y-%m-%d %H:%M:%S}"
    assert 0 <= pin["p50_seconds"] <= pin["p95_seconds"] < 60
    minutes = [f"{base + timedelta(minutes=m):%Y-%m-%d %H:%M}" for m in (0, 1)]
    assert pin["per_minute"] == [[minutes[0], 3], [minutes[1], 2], [f"{arrived:%Y-%m-%d %H:%M}", 2]]
