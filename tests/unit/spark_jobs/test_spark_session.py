"""The Spark session's S3A wiring per target (no JVM needed)."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline.settings import load_settings
from spark_jobs.session import base_conf, local_dir, reclaim_local_dirs, s3a_conf


def test_local_target_uses_the_local_s3_endpoint_path_style_and_test_credentials():
    conf = s3a_conf(load_settings(pipeline_target="local", aws_endpoint_url_s3="http://127.0.0.1:9000"))
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert (conf["spark.hadoop.fs.s3a.access.key"], conf["spark.hadoop.fs.s3a.secret.key"]) == ("test", "test")


def test_aws_target_has_no_endpoint_and_uses_the_default_credential_chain():
    conf = s3a_conf(load_settings(pipeline_target="aws", aws_region="eu-west-1"))
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"
    assert not any(key.endswith(("endpoint", "access.key", "secret.key", "credentials.provider")) for key in conf)


def test_master_is_left_to_spark_submit_when_not_given():
    settings = load_settings()
    assert "spark.master" not in base_conf(settings, None, with_jars=False)
    local = base_conf(settings, "local[2]", with_jars=False)
    assert local["spark.master"] == "local[2]" and local["spark.sql.session.timeZone"] == "UTC"


def test_local_scratch_space_is_per_driver_under_the_state_folder(tmp_path):
    settings = load_settings(state_dir=tmp_path, pipeline_target="local")
    conf = base_conf(settings, None, with_jars=False)  # spark-submit's default master is local too
    assert conf["spark.local.dir"] == str(tmp_path / "tmp" / "spark" / str(os.getpid()))
    assert "spark.local.dir" not in base_conf(load_settings(state_dir=tmp_path, pipeline_target="aws"), None, False)


def test_what_dead_drivers_left_is_reclaimed_and_live_ones_are_kept(tmp_path):
    settings = load_settings(state_dir=tmp_path)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = local_dir(settings).parent / finished.stdout.strip()
    mine = local_dir(settings)
    parent = local_dir(settings).parent / str(os.getppid())
    for path in (dead, mine, parent):
        (path / "userFiles-x").mkdir(parents=True)
        (path / "userFiles-x" / "delta.jar").write_bytes(b"jar")
    assert reclaim_local_dirs(settings) == [dead]
    assert not dead.exists() and mine.exists() and parent.exists()
