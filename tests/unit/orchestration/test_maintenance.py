"""Retention steps of the maintenance DAG (orchestration.maintenance) without Airflow: the sink's old objects (S3 is
moto's in-process AWS; "old" is reached by running the step at a later `now`) and Airflow's old logs."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestration import maintenance
from pipeline import layout
from pipeline.settings import Settings, load_settings


def keys(client, bucket: str) -> set[str]:
    return {item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])}


def put_sink_objects(client, settings: Settings) -> set[str]:
    written = set()
    for table, partition, starts in (("pin", 0, (0, 10, 25)), ("pin", 1, (0, 7)), ("geo", 2, (40,))):
        for start in starts:
            key = layout.object_key(settings.topic(table), partition, start)
            client.put_object(Bucket=settings.bucket, Key=key, Body=b'{"ind":1}\n')
            written.add(key)
    return written


def test_old_sink_objects_go_except_each_partitions_newest_and_a_second_run_finds_nothing(settings, s3):
    written = put_sink_objects(s3, settings)
    other = "topics/ffffffffffff.pin/partition=0/ffffffffffff.pin+0+0000000000.json"  # not this user's topic
    stray = f"{layout.topic_prefix(settings.topic('pin'))}notes.txt"  # not a sink object
    for key in (other, stray, "analytics/report.html"):
        s3.put_object(Bucket=settings.bucket, Key=key, Body=b"x")
    now = datetime.now(UTC)

    assert maintenance.prune_sink_objects(settings, now, client=s3).expired == 0  # all newer than 30 days

    later = now + timedelta(days=31)
    dry = maintenance.prune_sink_objects(settings, later, dry_run=True, client=s3)
    assert (dry.scanned, dry.expired, dry.kept, dry.deleted) == (7, 3, 3, 0)
    assert keys(s3, settings.bucket) >= written  # a dry run deletes nothing

    done = maintenance.prune_sink_objects(settings, later, client=s3)
    assert (done.expired, done.deleted) == (3, 3)
    newest = {layout.object_key(settings.topic(t), p, s) for t, p, s in (("pin", 0, 25), ("pin", 1, 7), ("geo", 2, 40))}
    assert keys(s3, settings.bucket) == newest | {other, stray, "analytics/report.html"}
    assert maintenance.prune_sink_objects(settings, later, client=s3).deleted == 0  # idempotent


def test_a_bucket_not_provisioned_yet_is_nothing_to_prune(settings, s3):
    elsewhere = settings.model_copy(update={"pipeline_user_id": "7e57c0de0002"})
    result = maintenance.prune_sink_objects(elsewhere, datetime.now(UTC), dry_run=True, client=s3)
    assert result.scanned == 0 and "no such bucket yet" in result.summary(dry_run=True)


def test_retention_zero_keeps_every_sink_object(settings, s3):
    put_sink_objects(s3, settings)
    keep_all = settings.model_copy(update={"s3_topics_retention_days": 0})
    result = maintenance.prune_sink_objects(keep_all, datetime.now(UTC) + timedelta(days=3650), client=s3)
    assert (result.scanned, result.deleted) == (0, 0)


def test_sink_objects_may_not_be_pruned_while_kafka_still_has_their_records():
    with pytest.raises(SystemExit, match="S3_TOPICS_RETENTION_DAYS=3 is shorter than KAFKA_RETENTION_HOURS=168"):
        load_settings(s3_topics_retention_days=3)


def age(path: Path, days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("log line\n")
    when = (datetime.now(UTC) - timedelta(days=days)).timestamp()
    os.utime(path, (when, when))
    return path


def test_old_airflow_logs_and_the_folders_they_leave_empty_go(settings):
    logs = settings.airflow_log_dir
    old_run = age(logs / "dag_id=x" / "run_id=old" / "task_id=t" / "attempt=1.log", days=8)
    new_run = age(logs / "dag_id=x" / "run_id=new" / "task_id=t" / "attempt=1.log", days=1)
    processor = age(logs / "dag_processor" / "2026-11-01" / "dags-folder" / "pinterest_dag.py.log", days=30)
    now = datetime.now(UTC)

    dry = maintenance.prune_airflow_logs(settings, now, dry_run=True)
    assert (dry.scanned, dry.expired, dry.deleted) == (3, 2, 0)
    assert old_run.exists() and processor.exists()

    done = maintenance.prune_airflow_logs(settings, now)
    assert (done.expired, done.deleted) == (2, 2)
    assert new_run.exists() and not old_run.exists() and not processor.exists()
    assert not (logs / "dag_id=x" / "run_id=old").exists() and not (logs / "dag_processor").exists()
    assert (logs / "dag_id=x" / "run_id=new").is_dir() and logs.is_dir()
    assert maintenance.prune_airflow_logs(settings, now).deleted == 0


def test_no_airflow_log_folder_is_nothing_to_do(settings):
    assert maintenance.prune_airflow_logs(settings, datetime.now(UTC)).scanned == 0
