"""The job package's entry file (spark_jobs/cluster_entry.py): it splits its own arguments from the job's, and the
settings it sets are the ones the job then reads on the cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from orchestration import runners
from pipeline import layout
from pipeline.settings import TABLES, load_settings
from services.provision import jobs
from spark_jobs import cluster_entry
from tests.support import SAMPLES_DIR


def test_the_runner_arguments_round_trip_into_the_job_s_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    sent = load_settings(_env_file=None, pipeline_target="aws", pipeline_user_id="7e57c0de0001", aws_region="eu-west-1")
    args, job_args = cluster_entry.parse_args(runners.job_arguments(sent, "batch"))
    assert (args.job, args.code) == ("batch", "s3a://user-7e57c0de0001-bucket/jobs/code.zip")
    assert job_args == ["--input", sent.bucket_uri, "--results", sent.results_uri]
    environment = cluster_entry.cluster_environment(args.setting)
    for name in list(environment):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    received = load_settings(_env_file=None)
    for name in runners.CLUSTER_SETTINGS:
        assert getattr(received, name) == getattr(sent, name), name
    assert received.spark_jars == "cluster"
    # Not the default next to the code (inside the zip on the cluster): a folder the driver can write.
    assert received.state_dir == Path(tempfile.gettempdir()) / "pipeline-state"


def test_a_setting_without_a_value_is_refused() -> None:
    with pytest.raises(SystemExit):
        cluster_entry.parse_args(["--setting", "PIPELINE_USER_ID", "batch"])


def test_the_stream_job_gets_no_batch_arguments() -> None:
    settings = load_settings(_env_file=None, pipeline_user_id="7e57c0de0001")
    args, job_args = cluster_entry.parse_args(runners.job_arguments(settings, "stream"))
    assert (args.job, job_args) == ("stream", [])
    request = runners.emr_serverless_job_run(
        load_settings(_env_file=None, emr_serverless_execution_role_arn="arn:aws:iam::1:role/r"), "stream", "app-1"
    )
    assert (request["mode"], request["name"]) == ("STREAMING", "0a1b2c3d4e5f-stream")


def test_the_batch_job_runs_from_the_package_as_a_runner_starts_it(tmp_path: Path) -> None:
    """spark-submit of the entry file alone, outside the checkout, with the code zip and the runner's arguments:
    the nine results and the report come out (local files stand in for the bucket)."""
    settings = load_settings(_env_file=None, pipeline_user_id="7e57c0de0001")
    bucket = tmp_path / "bucket"
    for table in TABLES:
        key = bucket / layout.object_key(settings.topic(table), 0, 0)
        key.parent.mkdir(parents=True)
        shutil.copy(SAMPLES_DIR / f"original_{table}.jsonl", key)
    package = jobs.build_package(load_settings(_env_file=None, batch_runner="databricks"), tmp_path / "package")
    arguments = runners.job_arguments(settings, "batch")
    arguments[arguments.index("--code") + 1] = str(package["code.zip"])
    arguments[-4:] = layout.batch_job_arguments(str(bucket))
    python = Path(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "PYTHONPATH", "SPARK_"))}
    env |= {"PYSPARK_PYTHON": str(python), "PYSPARK_DRIVER_PYTHON": str(python), "SPARK_LOCAL_IP": "127.0.0.1"}
    result = subprocess.run(
        [str(python.with_name("spark-submit")), "--master", "local[2]", str(package["entry.py"]), *arguments],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    results = layout.batch_job_paths(str(bucket))["results"]
    for name in layout.QUERY_NAMES:
        assert list(Path(layout.result_path(results, name)).glob("*.parquet")), name
    assert Path(layout.report_path(results)).is_file()
