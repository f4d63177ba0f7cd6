"""Where everything lives in the bucket (docs/contract.md §3) and the names of the nine results (§5).

Pure and standard library only, so every side imports the same layout: the batch and streaming jobs, the audit,
provisioning, benchmarks, tests, and the DAG's tasks in Airflow's own virtualenv. Names derived from the user id
(topics, bucket, Delta tables) come from `pipeline/settings.py`; this module only says where they go.

The S3 sink writes the object keys (services/s3_sink/.../ObjectKeys.java); `object_key` is its one Python mirror:
`topics/<topic>/partition=<p>/<topic>+<p>+<start offset, 10 digits>.json`.

    topics/<topic>/...             the S3 sink's JSON-lines objects
    analytics/<query>/             the batch job's results (a run may write them under another results root)
    analytics/quarantine/<table>/  records the batch job quarantined
    analytics/cleaned/<table>/     the cleaned, de-duplicated rows the batch run queried (all columns)
    analytics/report.html          the batch job's report
    delta/<table name>/            the streaming job's Delta tables (or under another warehouse)
    delta/_checkpoints/<table>/    one checkpoint per streaming query
    jobs/                          the job package provisioning uploads for the aws runners (entry file, code, deps)

`batch_job_paths` is the one place that says which folders the batch job reads and writes under a bucket: its
own defaults, the DAG's arguments for every runner, and settings' `bucket_uri`/`results_uri` all come from it.
"""

from __future__ import annotations

import re

TOPICS_DIR = "topics"
RESULTS_DIR = "analytics"
DELTA_DIR = "delta"
JOBS_DIR = "jobs"
QUARANTINE_DIR = "quarantine"
CLEANED_DIR = "cleaned"
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


# --- the batch job's input and results, under a results root (by default s3a://<bucket>/analytics) -------------
def batch_job_paths(bucket_root: str) -> dict[str, str]:
    """The batch job's `--input` and `--results` for the bucket at `bucket_root` (a URI such as `s3a://<bucket>` or
    a folder): the input is the bucket itself, since `input_glob` appends `topics/...`."""
    return {"input": bucket_root.rstrip("/"), "results": join(bucket_root, RESULTS_DIR)}


def batch_job_arguments(bucket_root: str) -> list[str]:
    """`batch_job_paths` as the job's command-line arguments (what a runner passes to spark_jobs/batch.py)."""
    paths = batch_job_paths(bucket_root)
    return ["--input", paths["input"], "--results", paths["results"]]


def result_prefix(name: str) -> str:
    """The key prefix of one query's result in the bucket."""
    return f"{RESULTS_PREFIX}{name}/"


def result_path(results_root: str, name: str) -> str:
    return join(results_root, name)


def quarantine_path(results_root: str, table: str) -> str:
    return join(results_root, QUARANTINE_DIR, table)


def cleaned_path(results_root: str, table: str) -> str:
    return join(results_root, CLEANED_DIR, table)


def report_path(results_root: str) -> str:
    return join(results_root, REPORT_FILE)


# --- the streaming job's tables, under a warehouse (by default s3a://<bucket>/delta) ----------------------------
def table_path(warehouse: str, name: str) -> str:
    return join(warehouse, name)


def checkpoints_root(warehouse: str) -> str:
    return join(warehouse, CHECKPOINTS_DIR)


def checkpoint_path(checkpoints: str, table: str) -> str:
    return join(checkpoints, table)


# --- what the batch job keeps for the console and its report, under a results root (issue 20) --------------------
HISTORY_DIR = "history"
HISTORY_SUFFIX = ".json"
QUARANTINE_SUMMARY_FILE = "quarantine_summary.json"


def history_prefix(results_root: str) -> str:
    """The folder of the batch runs' history: one small JSON object per run (S3 has no append), named by run id, so
    listing it in key order lists the runs oldest first."""
    return join(results_root, HISTORY_DIR)


def history_record_path(results_root: str, run_id: str) -> str:
    return join(history_prefix(results_root), f"{run_id}{HISTORY_SUFFIX}")


def quarantine_summary_path(results_root: str) -> str:
    """The last batch run's quarantine counts by table and reason, as JSON (pipeline/run_history.py)."""
    return join(results_root, QUARANTINE_SUMMARY_FILE)


# --- the job package for the aws runners (services/provision/jobs.py) --------------------------------------------
def job_key(name: str) -> str:
    """The key of one file of the job package (each provisioning run replaces them; the build is reproducible, so
    an unchanged package uploads nothing)."""
    return f"{JOBS_DIR}/{name}"
