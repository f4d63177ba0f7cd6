"""Where everything lives in the bucket (docs/contract.md §3) and the names of the nine results (§5).

Pure and standard library only, so every side imports the same layout: the batch and streaming jobs, the audit,
provisioning, benchmarks, tests, and the DAG's tasks in Airflow's own virtualenv. Names derived from the user id
(topics, bucket, Delta tables) come from `pipeline/settings.py`; this module only says where they go.

The S3 sink writes the object keys (services/s3_sink/.../ObjectKeys.java); `object_key` is its one Python mirror:
`topics/<topic>/partition=<p>/<topic>+<p>+<start offset, 10 digits>.json`.

    topics/<topic>/...             the S3 sink's JSON-lines objects
    analytics/<query>/             the batch job's results (a run may write them under another results root)
    analytics/quarantine/<table>/  records the batch job quarantined
    analytics/report.html          the batch job's report
    delta/<table name>/            the streaming job's Delta tables (or under another warehouse)
    delta/_checkpoints/<table>/    one checkpoint per streaming query
"""

from __future__ import annotations

import re

TOPICS_DIR = "topics"
RESULTS_DIR = "analytics"
DELTA_DIR = "delta"
QUARANTINE_DIR = "quarantine"
CHECKPOINTS_DIR = "_checkpoints"
REPORT_FILE = "report.html"
OBJECT_SUFFIX = ".json"
TOPICS_PREFIX = f"{TOPICS_DIR}/"
RESULTS_PREFIX = f"{RESULTS_DIR}/"

# docs/contract.md §5, in its order: each is a function of spark_jobs/queries.py and a folder under the results.
QUERY_NAMES = (
    "popular_category_by_country",
    "popular_category_by_year",
    "top_user_by_country",
    "country_with_top_user",
    "popular_category_by_age_group",
    "median_followers_by_age_group",
    "users_joined_by_year",
    "median_followers_by_join_year",
    "median_followers_by_join_year_and_age_group",
)

_FILE_NAME = re.compile(r"^(?P<topic>.+)\+(?P<partition>\d+)\+(?P<start>\d{10,})\.json$")


def join(root: str, *parts: str) -> str:
    """`root/part/...` for a URI or a folder, whether or not `root` ends with a slash."""
    return "/".join((root.rstrip("/"), *parts))


def s3a_uri(bucket: str, *parts: str) -> str:
    """The Hadoop (Spark) URI of `parts` in `bucket`; the bucket itself without parts."""
    return join(f"s3a://{bucket}", *parts)


# --- the S3 sink's objects -------------------------------------------------------------------------------------
def topic_prefix(topic: str) -> str:
    return f"{TOPICS_PREFIX}{topic}/"


def partition_prefix(topic: str, partition: int | str) -> str:
    """The folder of one partition's objects; `partition="*"` gives the glob over every partition."""
    return f"{topic_prefix(topic)}partition={partition}/"


def object_key(topic: str, partition: int, start_offset: int) -> str:
    return f"{partition_prefix(topic, partition)}{topic}+{partition}+{start_offset:010d}{OBJECT_SUFFIX}"


def parse_object_key(key: str) -> tuple[str, int, int] | None:
    """(topic, partition, start offset) of a sink object's key, or None for any other key."""
    match = _FILE_NAME.match(key.rsplit("/", 1)[-1])
    if match is None:
        return None
    topic, partition = match["topic"], int(match["partition"])
    if not key.startswith(partition_prefix(topic, partition)):
        return None
    return topic, partition, int(match["start"])


def count_lines(content: bytes) -> int:
    """Records in an object: one per line, every line newline-terminated (a missing last newline is tolerated)."""
    return content.count(b"\n") + (1 if content and not content.endswith(b"\n") else 0)


def input_glob(root: str, topic: str, table: str) -> str:
    """The sink's files of `topic` under `root` (a bucket URI or a folder holding `topics/`).
    A root containing `{topic}` or `{table}` is used as the pattern itself."""
    if "{topic}" in root or "{table}" in root:
        return root.format(topic=topic, table=table)
    return join(root, f"{partition_prefix(topic, '*')}*{OBJECT_SUFFIX}")


# --- the batch job's results, under a results root (by default s3a://<bucket>/analytics) -----------------------
def result_prefix(name: str) -> str:
    """The key prefix of one query's result in the bucket."""
    return f"{RESULTS_PREFIX}{name}/"


def result_path(results_root: str, name: str) -> str:
    return join(results_root, name)


def quarantine_path(results_root: str, table: str) -> str:
    return join(results_root, QUARANTINE_DIR, table)


def report_path(results_root: str) -> str:
    return join(results_root, REPORT_FILE)


# --- the streaming job's tables, under a warehouse (by default s3a://<bucket>/delta) ----------------------------
def table_path(warehouse: str, name: str) -> str:
    return join(warehouse, name)


def checkpoints_root(warehouse: str) -> str:
    return join(warehouse, CHECKPOINTS_DIR)


def checkpoint_path(checkpoints: str, table: str) -> str:
    return join(checkpoints, table)
