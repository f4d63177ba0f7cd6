"""Builds the SparkSession every job uses, configured from pipeline.settings and nothing else.

Why one builder: the S3A wiring (endpoint, path-style access, credentials) differs only between the local target
(LocalStack / the durable S3 store, fixed test credentials) and AWS (default credential chain, no endpoint), and
that difference must live in one place. The extra JVM jars (hadoop-aws + AWS SDK bundle, Delta Lake) are fetched
by spark_jobs/fetch_jars.sh into `<state>/jars/spark` and passed with `spark.jars`. When the job runs under
`spark-submit`, pass them on its command line too (`python -m spark_jobs.session --submit-args` prints them), since
a driver JVM that is already running cannot add jars to its own class path.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from pipeline.processes import alive
from pipeline.settings import REPO_ROOT, Settings, get_settings

DEFAULT_MASTER = "local[*]"
LOCAL_SHUFFLE_PARTITIONS = "8"
FETCH_HINT = "run spark_jobs/fetch_jars.sh (scripts/setup.sh does it) to fetch hadoop-aws and delta-spark"


def jar_dir(settings: Settings) -> Path:
    return settings.tools_dir / "jars" / "spark"


def jar_paths(settings: Settings) -> list[str]:
    """The fetched jars, sorted; empty when fetch_jars.sh has not run."""
    folder = jar_dir(settings)
    return sorted(str(path) for path in folder.glob("*.jar")) if folder.is_dir() else []


def s3a_conf(settings: Settings) -> dict[str, str]:
    """`spark.hadoop.fs.s3a.*` settings for the configured target."""
    conf = {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region": settings.aws_region,
    }
    endpoint = settings.s3_endpoint_url
    if endpoint:
        conf |= {
            "spark.hadoop.fs.s3a.endpoint": endpoint,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https")).lower(),
        }
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        conf |= {
            "spark.hadoop.fs.s3a.aws.credentials.provider": ("org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"),
            "spark.hadoop.fs.s3a.access.key": settings.aws_access_key_id,
            "spark.hadoop.fs.s3a.secret.key": settings.aws_secret_access_key,
        }
    elif settings.pipeline_target == "local":
        # Same fixed credentials as settings.boto3_client_kwargs: a user's real AWS profile never reaches local runs.
        conf |= {
            "spark.hadoop.fs.s3a.aws.credentials.provider": ("org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"),
            "spark.hadoop.fs.s3a.access.key": "test",
            "spark.hadoop.fs.s3a.secret.key": "test",
        }
    # aws target without explicit keys: S3A's default chain (env, profile, instance/pod role).
    return conf


def local_dir_root(settings: Settings) -> Path:
    return settings.state_dir / "tmp" / "spark"


def local_dir(settings: Settings) -> Path:
    """This driver's `spark.local.dir`: `<state>/tmp/spark/<pid>`, not /tmp.

    Each session copies `spark.jars` (about 630 MB: Delta, hadoop-aws, the AWS SDK bundle) into a `userFiles`
    folder of its local dir. Spark deletes it at a clean exit, but a driver killed with SIGKILL (the fault tests do
    it, and so can a supervisor's stop timeout) leaves it behind: 1.2 GB in /tmp per test run, which filled this
    machine's disk. Under the state folder, one folder per driver process, `reclaim_local_dirs` can remove what
    dead drivers left.
    """
    return local_dir_root(settings) / str(os.getpid())


def reclaim_local_dirs(settings: Settings) -> list[Path]:
    """Remove the local dirs of driver processes that no longer run; returns what was removed."""
    removed = []
    root = local_dir_root(settings)
    for path in sorted(root.glob("*")) if root.is_dir() else []:
        if path.name.isdigit() and int(path.name) != os.getpid() and not alive(int(path.name)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def base_conf(settings: Settings, master: str | None, with_jars: bool = True) -> dict[str, str]:
    """Everything the builder sets, as a plain dict. `master=None` leaves the master to spark-submit."""
    local = master is not None and master.startswith("local")
    conf = {
        "spark.master": master or "",
        "spark.ui.port": str(settings.spark_ui_port),
        "spark.driver.host": "127.0.0.1" if local else "",
        # One machine (local[*], spark-submit's default, or Docker mode's one-worker cluster): 200 shuffle partitions
        # per stage would be mostly scheduling overhead. Clusters on AWS keep theirs.
        "spark.sql.shuffle.partitions": LOCAL_SHUFFLE_PARTITIONS if settings.pipeline_target == "local" else "",
        # Python workers without pyspark's zips on their path: 0.2-0.6 s less per task (spark_jobs/pyworker.py).
        "spark.python.daemon.module": "spark_jobs.pyworker" if local else "",
        "spark.executorEnv.PYTHONPATH": str(REPO_ROOT) if local else "",
        # Local target (including spark-submit's default local master): scratch space under the state folder.
        "spark.local.dir": str(local_dir(settings)) if settings.pipeline_target == "local" else "",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        **s3a_conf(settings),
    }
    jars = jar_paths(settings) if with_jars else []
    if jars:
        conf["spark.jars"] = ",".join(jars)
    else:
        # Without the jars there is neither Delta nor S3A; local-file jobs and unit tests still work.
        conf.pop("spark.sql.extensions")
        conf.pop("spark.sql.catalog.spark_catalog")
    return {key: value for key, value in conf.items() if value != ""}


def build_spark(
    app_name: str,
    settings: Settings | None = None,
    master: str | None = None,
    with_jars: bool = True,
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """A SparkSession for `app_name`. Master: the argument, else spark-submit's `--master` when launched by
    spark-submit, else settings' `SPARK_MASTER`, else local[*]."""
    settings = settings or get_settings()
    os.environ.setdefault("SPARK_LOCAL_IP", settings.bind_host)  # what the driver and its UI bind
    launched_by_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # the JVM exists, configured by spark-submit
    on_runner = settings.spark_jars == "cluster"  # EMR Serverless, Databricks: the runner's session and master
    if master is None and not launched_by_spark_submit and not on_runner:
        master = settings.spark_master or DEFAULT_MASTER
    if settings.pipeline_target == "local":
        reclaim_local_dirs(settings)
    builder = SparkSession.builder.appName(app_name)
    for key, value in {**base_conf(settings, master, with_jars), **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def require_jars(settings: Settings, paths: list[str]) -> None:
    """Fail early with the fix when an s3a:// path is used but the S3A jars were never fetched. Only where the
    project manages the jars (`SPARK_JARS=project`, local mode): on EMR Serverless and Databricks hadoop-aws and
    Delta are on the cluster's class path, and the job package's entry sets `SPARK_JARS=cluster`."""
    if settings.spark_jars != "project":
        return
    if any(path.startswith("s3a://") for path in paths) and not jar_paths(settings):
        raise SystemExit(f"s3a:// paths need hadoop-aws, but {jar_dir(settings)} holds no jars: {FETCH_HINT}")


def submit_args(settings: Settings) -> list[str]:
    """`spark-submit` arguments: the cluster's master when settings name one, and the fetched jars on the driver's
    class path from the start."""
    jars = jar_paths(settings)
    master = ["--master", settings.spark_master] if settings.spark_master else []
    return master + (["--jars", ",".join(jars)] if jars else [])


if __name__ == "__main__":
    if sys.argv[1:] == ["--submit-args"]:
        print(" ".join(submit_args(get_settings())))
    else:
        raise SystemExit("usage: python -m spark_jobs.session --submit-args")
