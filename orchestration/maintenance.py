"""Retention of what the local stack keeps for good otherwise: the S3 sink's objects under `topics/` and Airflow's
logs. The maintenance DAG (airflow/dags/maintenance_dag.py) runs these daily; `make maintain` runs them by hand:

    python -m orchestration.maintenance [--dry-run] [--only topics|airflow-logs ...]

Why hand-written: S3's tool for this is a lifecycle rule, and the local S3 store (S3Proxy 4.1) does not implement
lifecycle configuration (PutBucketLifecycleConfiguration answers 501 NotImplemented, tried 2026-12-02), so locally a
daily step deletes what a rule would expire. On AWS the rule is the right tool: provisioning creates it
(services/provision/s3.py) and the DAG does not prune. Airflow has no log cleaner of its own (its docs leave it to
a maintenance DAG or cron), and no library we use does either.

Both steps are idempotent (they delete what is old at the time they run; a second run finds nothing more) and, with
`dry_run`, only report. Sink objects: every object of the user's topics last written more than
`S3_TOPICS_RETENTION_DAYS` ago, except the newest object of each partition, which the sink reads to know where to
resume (without it, the sink would start that partition again from Kafka's earliest offset). Airflow logs: every
file under Airflow's log folder last written more than `AIRFLOW_LOG_RETENTION_DAYS` ago, then the folders left
empty.

Nothing here imports Airflow: it is tested with the project's venv, as orchestration/tasks.py is.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from botocore.exceptions import ClientError

from pipeline import layout
from pipeline.settings import Settings, get_settings

log = logging.getLogger(__name__)

DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys per request
STEPS = ("topics", "airflow-logs")


@dataclass
class Pruned:
    """What one retention step found and did."""

    what: str
    older_than: datetime
    scanned: int = 0
    expired: int = 0  # old enough to go (in a dry run: what would go)
    kept: int = 0  # old enough but kept on purpose (the newest object of a partition)
    deleted: int = 0
    bytes: int = 0  # size of the expired ones

    def summary(self, dry_run: bool) -> str:
        done = f"would delete {self.expired}" if dry_run else f"deleted {self.deleted}"
        kept = f", kept {self.kept} (newest of their partition)" if self.kept else ""
        return (
            f"{self.what}: {self.scanned} scanned, {done} last written before {self.older_than:%Y-%m-%d %H:%M} UTC "
            f"({self.bytes / 1024**2:.1f} MiB){kept}"
        )


def _objects(client, bucket: str, prefix: str) -> Iterator[dict]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _batches(keys: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def prune_sink_objects(settings: Settings, now: datetime, dry_run: bool = False, client=None) -> Pruned:
    """Delete the sink's objects of the user's topics older than `S3_TOPICS_RETENTION_DAYS`, but never the newest
    object of a partition. Retention 0 keeps everything."""
    older_than = now - timedelta(days=settings.s3_topics_retention_days)
    result = Pruned(f"s3://{settings.bucket}/{layout.TOPICS_PREFIX}", older_than)
    if not settings.s3_topics_retention_days:
        return result
    if client is None:
        import boto3

        client = boto3.client("s3", **settings.boto3_client_kwargs("s3"))
    newest: dict[tuple[str, int], tuple[int, str]] = {}
    old: list[dict] = []
    try:
        for topic in settings.topics:
            for item in _objects(client, settings.bucket, layout.topic_prefix(topic)):
                result.scanned += 1
                parsed = layout.parse_object_key(item["Key"])
                if parsed is None:
                    continue  # not a sink object (never ours to delete)
                name, partition, start = parsed
                if start > newest.get((name, partition), (-1, ""))[0]:
                    newest[(name, partition)] = (start, item["Key"])
                if item["LastModified"] < older_than:
                    old.append({"Key": item["Key"], "Size": item.get("Size", 0)})
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
        result.what += " (no such bucket yet: `make provision` creates it)"
        return result
    keep = {key for _, key in newest.values()}
    expired = [item for item in old if item["Key"] not in keep]
    result.kept = len(old) - len(expired)
    result.expired = len(expired)
    result.bytes = sum(item.get("Size", 0) for item in expired)
    if dry_run:
        return result
    for keys in _batches(sorted(item["Key"] for item in expired), DELETE_BATCH):
        answer = client.delete_objects(
            Bucket=settings.bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
        )
        errors = answer.get("Errors", [])
        for error in errors:
            log.warning("could not delete s3://%s/%s: %s", settings.bucket, error.get("Key"), error.get("Message"))
        result.deleted += len(keys) - len(errors)
    return result


def prune_airflow_logs(settings: Settings, now: datetime, dry_run: bool = False, folder: Path | None = None) -> Pruned:
    """Delete files under Airflow's log folder last written more than `AIRFLOW_LOG_RETENTION_DAYS` ago, then the
    folders that this leaves empty (deepest first)."""
    folder = folder or settings.airflow_log_dir
    older_than = now - timedelta(days=settings.airflow_log_retention_days)
    result = Pruned(str(folder), older_than)
    if not folder.is_dir():
        return result
    cutoff = older_than.timestamp()
    for directory, _subdirs, files in os.walk(folder):
        for name in files:
            path = Path(directory) / name
            try:
                stat = path.lstat()
            except FileNotFoundError:
                continue  # deleted meanwhile
            result.scanned += 1
            if stat.st_mtime >= cutoff:
                continue
            result.expired += 1
            result.bytes += stat.st_size
            if not dry_run:
                path.unlink(missing_ok=True)
                result.deleted += 1
    if not dry_run:
        for directory, _subdirs, _files in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
            if Path(directory) != folder and not any(Path(directory).iterdir()):
                Path(directory).rmdir()
    return result


# --- the DAG's callables ------------------------------------------------------------------------------------
def prune_topics_task() -> str:
    settings = get_settings()
    line = prune_sink_objects(settings, datetime.now(UTC)).summary(dry_run=False)
    log.info("%s", line)
    return line


def prune_airflow_logs_task() -> str:
    settings = get_settings()
    line = prune_airflow_logs(settings, datetime.now(UTC)).summary(dry_run=False)
    log.info("%s", line)
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.maintenance", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="report what would be deleted; delete nothing")
    parser.add_argument("--only", nargs="+", choices=STEPS, default=list(STEPS))
    args = parser.parse_args(argv)
    settings = get_settings()
    now = datetime.now(UTC)
    if "topics" in args.only:
        if settings.pipeline_target == "aws":
            print(f"s3://{settings.bucket}/{layout.TOPICS_PREFIX}: on AWS the bucket's lifecycle rule expires them")
        else:
            print(prune_sink_objects(settings, now, args.dry_run).summary(args.dry_run), flush=True)
    if "airflow-logs" in args.only:
        print(prune_airflow_logs(settings, now, args.dry_run).summary(args.dry_run), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
