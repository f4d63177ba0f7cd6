"""The DAG's task logic (orchestration.tasks) without Airflow: the sensor's notion of "new objects", the
spark-submit command and environment, the result check, and the Databricks payload. S3 is moto's in-process AWS."""

from __future__ import annotations

import io
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration import tasks
from pipeline import layout
from pipeline.settings import Settings, load_settings

USER_ID = "7e57c0de0001"


def _parquet(rows: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"value": list(range(rows))}), sink)
    return sink.getvalue()


def test_new_input_objects_are_the_sink_files_of_this_user(settings: Settings, s3) -> None:
    wanted = f"topics/{USER_ID}.pin/partition=0/{USER_ID}.pin+0+0000000000.json"
    s3.put_object(Bucket=settings.bucket, Key=wanted, Body=b"{}\n")
    s3.put_object(Bucket=settings.bucket, Key="topics/0a1b2c3d4e5f.pin/partition=0/x.json", Body=b"{}\n")
    s3.put_object(Bucket=settings.bucket, Key=f"topics/{USER_ID}.geo/partition=0/notes.txt", Body=b"")
    s3.put_object(Bucket=settings.bucket, Key="analytics/report.html", Body=b"")
    assert tasks.new_input_objects(settings, None, s3) == [wanted]


def test_new_input_objects_only_counts_objects_since_the_last_success(settings: Settings, s3) -> None:
    key = f"topics/{USER_ID}.user/partition=1/{USER_ID}.user+1+0000000000.json"
    s3.put_object(Bucket=settings.bucket, Key=key, Body=b"{}\n")
    now = datetime.now(UTC)
    assert tasks.new_input_objects(settings, now - timedelta(minutes=5), s3) == [key]
    assert tasks.new_input_objects(settings, now + timedelta(minutes=5), s3) == []


def test_new_input_objects_on_an_empty_bucket(settings: Settings, s3) -> None:
    assert tasks.new_input_objects(settings, None, s3) == []


class LazyProxy:
    """Like the lazy proxy Airflow passes for prev_start_date_success: delegates, but is never `None` itself."""

    def __init__(self, wrapped: datetime | None) -> None:
        self.wrapped = wrapped

    def __bool__(self) -> bool:
        return bool(self.wrapped)

    def isoformat(self) -> str:
        return self.wrapped.isoformat()


def test_sensor_accepts_airflow_s_lazy_previous_success(settings: Settings, s3, monkeypatch) -> None:
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    assert tasks.wait_for_new_objects(LazyProxy(None)) is False
    s3.put_object(Bucket=settings.bucket, Key=f"topics/{USER_ID}.pin/partition=0/x.json", Body=b"{}\n")
    assert tasks.wait_for_new_objects(LazyProxy(None)) is True
    assert tasks.wait_for_new_objects(LazyProxy(datetime.now(UTC) - timedelta(minutes=5))) is True
    assert tasks.wait_for_new_objects(LazyProxy(datetime.now(UTC) + timedelta(minutes=5))) is False


def test_spark_submit_command_runs_the_batch_file_with_the_job_s_own_args(settings: Settings) -> None:
    command = tasks.spark_submit_command(settings, ["--jars", "a.jar"])
    assert command == [
        str(settings.state_dir / "venv" / "bin" / "spark-submit"),
        "--jars",
        "a.jar",
        str(tasks.BATCH_JOB_FILE),
    ]
    assert tasks.BATCH_JOB_FILE.exists()


def test_spark_submit_args_come_from_spark_jobs_session(tmp_path: Path) -> None:
    # The project venv's own python answers, as it does under Airflow; the jars are the ones fetch_jars.sh left.
    jars = tmp_path / "jars" / "spark"
    jars.mkdir(parents=True)
    for name in ("b.jar", "a.jar"):
        (jars / name).touch()
    settings = load_settings(state_dir=tmp_path, spark_submit=str(Path(sys.executable).parent / "spark-submit"))
    env = {"PATH": "/usr/bin", "PIPELINE_ENV_FILE": "/dev/null", "STATE_DIR": str(tmp_path)}
    assert tasks.spark_submit_args(settings, env) == ["--jars", f"{jars / 'a.jar'},{jars / 'b.jar'}"]
    (jars / "a.jar").unlink()
    (jars / "b.jar").unlink()
    assert tasks.spark_submit_args(settings, env) == []


def test_spark_submit_path_can_be_configured() -> None:
    custom = load_settings(pipeline_user_id=USER_ID, spark_submit="/opt/spark/bin/spark-submit")
    assert tasks.spark_submit_command(custom, [])[0] == "/opt/spark/bin/spark-submit"
    assert tasks.spark_python(custom) == Path("/opt/spark/bin/python")


def test_spark_submit_env_points_pyspark_at_the_project_venv_python(settings: Settings) -> None:
    base = {"PATH": "/airflow/venv/bin:/usr/bin", "VIRTUAL_ENV": "/airflow/venv", "HOME": "/root"}
    env = tasks.spark_submit_env(settings, base)
    python = str(settings.state_dir / "venv" / "bin" / "python")
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == python
    assert env["PATH"].startswith(str(settings.state_dir / "venv" / "bin") + ":")
    assert "VIRTUAL_ENV" not in env
    assert env["HOME"] == "/root"
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"


def test_run_command_streams_output_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=tasks.log.name):
        tasks.run_command([sys.executable, "-c", "print('rows written: 9')"], env={"PATH": "/usr/bin"})
    assert "rows written: 9" in caplog.messages


def test_run_command_fails_with_the_exit_code() -> None:
    with pytest.raises(RuntimeError, match="exited with code 3"):
        tasks.run_command([sys.executable, "-c", "import sys; sys.exit(3)"], env={"PATH": "/usr/bin"})


def test_run_local_batch_job_says_how_to_install_spark(settings: Settings, monkeypatch) -> None:
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    with pytest.raises(FileNotFoundError, match="make setup"):
        tasks.run_local_batch_job()


def test_result_row_counts_sums_parquet_parts_and_marks_missing(settings: Settings, s3) -> None:
    first, second = layout.QUERY_NAMES[:2]
    s3.put_object(Bucket=settings.bucket, Key=f"analytics/{first}/part-0.parquet", Body=_parquet(3))
    s3.put_object(Bucket=settings.bucket, Key=f"analytics/{first}/part-1.parquet", Body=_parquet(4))
    s3.put_object(Bucket=settings.bucket, Key=f"analytics/{first}/_SUCCESS", Body=b"")
    s3.put_object(Bucket=settings.bucket, Key=f"analytics/{second}/_SUCCESS", Body=b"")
    counts = tasks.result_row_counts(settings, s3)
    assert list(counts) == list(layout.QUERY_NAMES)
    assert counts[first] == 7
    assert counts[second] is None


def test_check_results_fails_naming_the_missing_queries(settings: Settings, s3, monkeypatch) -> None:
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    for name in layout.QUERY_NAMES[1:]:
        s3.put_object(Bucket=settings.bucket, Key=f"analytics/{name}/part-0.parquet", Body=_parquet(1))
    with pytest.raises(tasks.MissingResultsError, match=layout.QUERY_NAMES[0]):
        tasks.check_results()


def test_check_results_returns_row_counts_of_all_nine(settings: Settings, s3, monkeypatch, caplog) -> None:
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    for rows, name in enumerate(layout.QUERY_NAMES):
        s3.put_object(Bucket=settings.bucket, Key=f"analytics/{name}/part-0.parquet", Body=_parquet(rows))
    with caplog.at_level(logging.INFO, logger=tasks.log.name):
        counts = tasks.check_results()
    assert counts == {name: rows for rows, name in enumerate(layout.QUERY_NAMES)}
    assert any("no rows" in message and layout.QUERY_NAMES[0] in message for message in caplog.messages)


def test_results_prefix_is_the_batch_job_s_default() -> None:
    from spark_jobs.batch import parse_args

    settings = load_settings(pipeline_user_id=USER_ID)
    assert parse_args([], settings).results.rstrip("/") + "/" == f"s3a://{settings.bucket}/analytics/"


def test_default_args_come_from_settings() -> None:
    args = tasks.default_args(load_settings(airflow_retries=4, airflow_retry_delay_seconds=30))
    assert args["retries"] == 4
    assert args["retry_delay"] == timedelta(seconds=30)
