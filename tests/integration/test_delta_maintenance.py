"""The maintenance DAG's Delta step (spark_jobs/maintenance.py) on real Delta tables: a local Spark with the fetched
Delta jars and a warehouse in a temporary folder, so no service is needed. Twelve appends stand for twelve
micro-batches of the streaming job (one small file each): compaction leaves one live file with the same rows, and
VACUUM deletes the replaced files once they are older than the retention, not before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pipeline.settings import load_settings
from spark_jobs.maintenance import LISTING_PARALLELISM, run, stream_table_paths
from spark_jobs.session import build_spark, jar_paths

MAINTENANCE_USER_ID = "7e57c0de0de1"


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    settings = load_settings()
    if not jar_paths(settings):
        pytest.fail("the Delta jars are missing: run `make setup` (spark_jobs/fetch_jars.sh)")
    session = build_spark(
        "delta-maintenance-test",
        settings,
        master="local[1]",
        extra_conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "1"},
    )
    yield session
    session.stop()


def data_files(table: str) -> int:
    return len(list(Path(table.removeprefix("file:")).glob("*.parquet")))


def test_compaction_keeps_the_rows_in_one_file_and_vacuum_deletes_replaced_files_after_the_retention(spark, tmp_path):
    settings = load_settings(pipeline_user_id=MAINTENANCE_USER_ID)
    paths = stream_table_paths(settings, str(tmp_path / "delta"))
    pin = paths[0]
    for batch in range(12):
        spark.range(batch * 5, batch * 5 + 5).withColumnRenamed("id", "ind").write.format("delta").mode("append").save(
            pin
        )
    rows = sorted(row.ind for row in spark.read.format("delta").load(pin).collect())
    assert data_files(pin) == 12

    (dry,) = run(spark, paths, retain_hours=168, dry_run=True)  # the other tables do not exist: skipped
    assert spark.conf.get(LISTING_PARALLELISM) == "1", "VACUUM lists in one task per core (local[1]), not 10,000"
    assert (dry.files_before, dry.files_after, dry.vacuumed) == (12, 12, 0) and data_files(pin) == 12

    (compacted,) = run(spark, paths, retain_hours=168, dry_run=False)
    assert (compacted.files_before, compacted.files_after, compacted.vacuumed) == (12, 1, 0)
    assert data_files(pin) == 13, "replaced files stay until they are older than the retention"
    assert sorted(row.ind for row in spark.read.format("delta").load(pin).collect()) == rows

    (vacuumed,) = run(spark, paths, retain_hours=0, dry_run=False)
    assert (vacuumed.files_before, vacuumed.files_after, vacuumed.vacuumed) == (1, 1, 12)
    assert data_files(pin) == 1
    assert sorted(row.ind for row in spark.read.format("delta").load(pin).collect()) == rows
