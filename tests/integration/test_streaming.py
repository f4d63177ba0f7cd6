"""The streaming path against the running stack: Kinesis (LocalStack) -> `python -m spark_jobs.stream` -> Delta.

The tests own a user id of their own (`7e57c0de0006`) and recreate its three streams, so the records in them are
exactly the records the test wrote and every count can be compared exactly. Ground truth is Kinesis itself: every
record is read back with boto3 and must be in its Delta table (or the quarantine table) exactly once, keyed by
shard + sequence number, with the record's content. Tables are read through their Delta logs (add actions) with
pyarrow, so checking needs no second Spark session.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import boto3
import pytest

from pipeline import layout
from pipeline.settings import REPO_ROOT, TABLES, Settings, load_settings
from services.audit.ledger_audit import audit_ledger, read_delta, render
from services.kinesis.service import kinesis_client
from services.provision.aws import recreate_streams
from services.provision.s3 import provision_bucket
from services.stack import provision_stack_api, stack_settings
from spark_jobs.delta_writer import CRASH_AFTER_COMMIT
from tests.support import SAMPLES_DIR
from tests.support.kinesis import stream_records

STREAM_USER_ID = "7e57c0de0006"
STREAM_DATABASE = "pinterest_data_stream"
JOB_TIMEOUT = 900
# Spark gives a query's Python worker a fixed 10 s to connect back to the JVM (PythonWorkerFactory: not a setting).
# On a loaded machine a worker can miss it, and the job restarts that query from its checkpoint (spark_jobs/stream.py).
CONNECT_BACK = "Python worker failed to connect back"


@pytest.fixture(scope="module")
def stream_settings(stack) -> Settings:
    stack("localstack")
    return load_settings(pipeline_user_id=STREAM_USER_ID)


@pytest.fixture(scope="module")
def kinesis(stream_settings):
    return boto3.client("kinesis", **stream_settings.boto3_client_kwargs("kinesis"))


def source_rows(table: str) -> list[dict]:
    """Rows in the original's wire form (the samples taken from public copies of the original data)."""
    path = SAMPLES_DIR / f"original_{table}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def put_direct(kinesis, settings: Settings, per_table: int | None = None) -> int:
    """PutRecords the sample rows (plus one record that is not JSON) into each stream; returns the record count."""
    total = 0
    for table in TABLES:
        rows = source_rows(table)[:per_table]
        records = [{"Data": json.dumps(r).encode(), "PartitionKey": str(r.get("ind", r.get("index")))} for r in rows]
        records.append({"Data": b"{not json", "PartitionKey": "broken"})
        response = kinesis.put_records(StreamName=settings.stream(table), Records=records)
        assert response["FailedRecordCount"] == 0
        total += len(records)
    return total


def kinesis_truth(kinesis, settings: Settings) -> dict[str, dict[tuple[str, str], bytes]]:
    """Every record in each stream, read straight from Kinesis: table -> {(shard, sequence): data}."""
    truth: dict[str, dict[tuple[str, str], bytes]] = {}
    for table in TABLES:
        truth[table] = {
            (shard, record["SequenceNumber"]): record["Data"]
            for shard, record in stream_records(kinesis, settings.stream(table))
        }
    return truth


def delta_rows(warehouse: str | Path, name: str, settings: Settings) -> list[dict]:
    """Rows of the Delta table `name` under `warehouse` (a folder or s3a:// URI), read with delta-rs as `make verify`
    reads them; [] when the table does not exist yet."""
    return read_delta(settings, layout.table_path(str(warehouse), name)) or []


def job_command(warehouse: str | Path, *extra: str) -> list[str]:
    """The job's command line; its status file beside a local warehouse, in a temporary folder for an s3a:// one."""
    status = warehouse.parent if isinstance(warehouse, Path) else Path(tempfile.mkdtemp(prefix="stream-status-"))
    return [
        sys.executable,
        "-m",
        "spark_jobs.stream",
        "--warehouse",
        str(warehouse),
        "--status-file",
        str(status / "status.json"),
        "--trigger-seconds",
        "1",
        *extra,
    ]


def job_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PIPELINE_ENV_FILE": os.devnull,
        "PIPELINE_USER_ID": settings.pipeline_user_id,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


def run_job(
    settings: Settings, warehouse: str | Path, idle_seconds: int = 10, *extra: str
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        job_command(warehouse, "--until-idle", str(idle_seconds), *extra),
        cwd=REPO_ROOT,
        env=job_env(settings),
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def check_exactly_once(
    settings: Settings, warehouse: str | Path, truth: dict[str, dict[tuple[str, str], bytes]]
) -> None:
    """Each Kinesis record is in its table or the quarantine exactly once, with its content."""
    quarantine = delta_rows(warehouse, settings.stream_quarantine_table, settings)
    for table in TABLES:
        rows = delta_rows(warehouse, settings.delta_table(table), settings)
        bad = [r for r in quarantine if r["source_table"] == table]
        keys = Counter((r["shard_id"], r["sequence_number"]) for r in rows + bad)
        duplicated = {k: n for k, n in keys.items() if n > 1}
        assert not duplicated, f"{table}: {len(duplicated)} records more than once, e.g. {next(iter(duplicated))}"
        missing = set(truth[table]) - set(keys)
        extra = set(keys) - set(truth[table])
        assert not missing and not extra, f"{table}: {len(missing)} missing, {len(extra)} not in Kinesis"
        for row in rows:
            source = json.loads(truth[table][(row["shard_id"], row["sequence_number"])])
            assert row["ind"] == int(source.get("index", source.get("ind")))
            if table == "pin":
                assert row["unique_id"] == source["unique_id"]
            elif table == "geo":
                assert row["country"] == source["country"]
            else:
                assert row["user_name"] == f"{source['first_name']} {source['last_name']}"
            assert row["arrival_time"] is not None
        for row in bad:
            assert row["value"] == truth[table][(row["shard_id"], row["sequence_number"])].decode()
            assert row["reason"]


@pytest.mark.timeout(JOB_TIMEOUT + 300)
def test_records_from_kinesis_and_the_gateway_land_once_in_delta(stream_settings, kinesis, tmp_path):
    recreate_streams(stream_settings)
    put = put_direct(kinesis, stream_settings)
    invoke_url = stack_settings().resolved_invoke_url()  # stored by the stack's provisioning, in its state folder
    if invoke_url:  # the front door: emulator -> API Gateway -> Kinesis, from a source database of its own
        env = {**job_env(stream_settings), "API_INVOKE_URL": invoke_url, "MYSQL_DATABASE": STREAM_DATABASE}
        env["STATE_DIR"] = str(tmp_path / "state")  # the emulator's ledger, for this test alone
        seeded = subprocess.run(
            [sys.executable, "-m", "services.mysql.seed", "--rows", "300", "--seed", "6"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert seeded.returncode == 0, seeded.stdout[-2000:] + seeded.stderr[-2000:]
        emulated = subprocess.run(
            [sys.executable, "-m", "emulator", "--mode", "stream", "--count", "20", "--burst", "--quiet"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert emulated.returncode == 0, emulated.stdout[-2000:] + emulated.stderr[-2000:]
    truth = kinesis_truth(kinesis, stream_settings)
    assert sum(len(t) for t in truth.values()) == put + (60 if invoke_url else 0)

    result = run_job(stream_settings, tmp_path / "warehouse")
    assert "stopping" in result.stdout
    check_exactly_once(stream_settings, tmp_path / "warehouse", truth)
    if invoke_url:  # make verify's ledger audit, on the emulator's ledger and this test's Delta tables
        settings = stream_settings.model_copy(update={"state_dir": tmp_path / "state"})
        report = audit_ledger(settings, None, str(tmp_path / "warehouse"))
        assert report.clean and sum(d.acked for d in report.destinations) == 60, render(report)
        assert sum(d.landed for d in report.destinations) == 60, render(report)


@pytest.mark.timeout(2 * JOB_TIMEOUT + 300)
def test_a_crash_between_the_delta_commit_and_the_checkpoint_on_s3_replays_skips_and_repeats_nothing(
    stream_settings, kinesis
):
    """The job's tables on s3a:// through the S3 store, as `make stream` writes them. The job dies (exit 137, as a
    kill -9) right after its second commit to the pin table and before its checkpoint records that batch: the one
    moment a restart must replay the batch and the writer must skip it. Every record lands exactly once."""
    recreate_streams(stream_settings)
    provision_bucket(stream_settings, dry_run=False)
    warehouse = layout.s3a_uri(stream_settings.bucket, "delta-tests", uuid.uuid4().hex[:8])
    stop_producer = threading.Event()
    produced = Counter()

    def produce() -> None:
        rows = {t: source_rows(t) for t in TABLES}
        i = 0
        while not stop_producer.is_set():
            for table in TABLES:
                row = rows[table][i % len(rows[table])]
                kinesis.put_record(
                    StreamName=stream_settings.stream(table), Data=json.dumps(row).encode(), PartitionKey=str(i)
                )
                produced[table] += 1
            i += 1
            time.sleep(0.05)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    job = subprocess.Popen(
        job_command(warehouse),
        cwd=REPO_ROOT,
        env={**job_env(stream_settings), CRASH_AFTER_COMMIT: "pin:2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = job.communicate(timeout=JOB_TIMEOUT)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # whatever the driver left behind (its JVM), as a crash would
        job.wait()
    assert job.returncode == 137, f"the job did not stop at the crash point (exit {job.returncode}):\n{output[-3000:]}"
    assert f"{CRASH_AFTER_COMMIT}: exiting after commit 2 to pin" in output, output[-3000:]
    time.sleep(2)
    stop_producer.set()
    producer.join()
    before_restart = len(delta_rows(warehouse, stream_settings.delta_table("pin"), stream_settings))
    assert 0 < before_restart < produced["pin"]

    result = run_job(stream_settings, warehouse)
    assert "skipping replayed batch" in result.stdout and "of pin" in result.stdout, (
        "the restart did not replay (and skip) the batch committed before the crash:\n" + result.stdout[-3000:]
    )
    truth = kinesis_truth(kinesis, stream_settings)
    assert {t: len(truth[t]) for t in TABLES} == dict(produced)
    check_exactly_once(stream_settings, warehouse, truth)


@pytest.mark.timeout(JOB_TIMEOUT + 300)
def test_kill_9_of_the_kinesis_store_and_of_localstack_under_load_loses_and_repeats_nothing(
    stream_settings, kinesis, stack_control, tmp_path
):
    """The streaming job keeps running through a kill -9 of the Kinesis store and of LocalStack while records flow
    in: every record the store acknowledged is in its Delta table exactly once, and nothing else."""
    recreate_streams(stream_settings)
    warehouse = tmp_path / "warehouse"
    stop_producer = threading.Event()
    acked: set[tuple[str, str]] = set()
    refused = Counter()

    def produce() -> None:
        client = kinesis_client(stream_settings, timeout=5)  # one attempt per call: the test counts refusals
        rows = {t: source_rows(t) for t in TABLES}
        i = 0
        while not stop_producer.is_set():
            for table in TABLES:
                batch = [rows[table][(i + k) % len(rows[table])] for k in range(10)]
                records = [{"Data": json.dumps(r).encode(), "PartitionKey": f"{i}-{k}"} for k, r in enumerate(batch)]
                try:
                    response = client.put_records(StreamName=stream_settings.stream(table), Records=records)
                except Exception:  # the store is down: nothing acknowledged, the next round tries again
                    refused[table] += 1
                    continue
                acked.update((e["ShardId"], e["SequenceNumber"]) for e in response["Records"] if "SequenceNumber" in e)
            i += 10
            time.sleep(0.1)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    job = subprocess.Popen(
        job_command(warehouse), cwd=REPO_ROOT, env=job_env(stream_settings),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(job.stdout), daemon=True)
    reader.start()
    try:
        pin_log = warehouse / stream_settings.delta_table("pin") / "_delta_log"
        deadline = time.monotonic() + JOB_TIMEOUT
        while len(list(pin_log.glob("*.json"))) < 3:  # table creation + at least two micro-batches committed
            assert job.poll() is None, "the streaming job exited before the kills:\n" + "".join(output[-50:])
            assert time.monotonic() < deadline, "no micro-batch committed in time"
            time.sleep(0.5)
        for service in ("kinesis", "localstack"):
            stack_control.kill(service)
            stack_control.wait_ready(service, timeout=60)
            time.sleep(3)
        stop_producer.set()
        producer.join()
        truth = kinesis_truth(kinesis, stream_settings)
        assert acked <= {key for table in TABLES for key in truth[table]}, "acknowledged records lost by the store"
        expected = sum(len(t) for t in truth.values())
        while True:  # the job catches up with everything in Kinesis, without a restart
            assert job.poll() is None, "the streaming job exited:\n" + "".join(output[-50:])
            landed = sum(
                len(delta_rows(warehouse, name, stream_settings))
                for name in [*(stream_settings.delta_table(t) for t in TABLES), stream_settings.stream_quarantine_table]
            )
            if landed >= expected:
                break
            assert time.monotonic() < deadline, f"{landed} of {expected} records in Delta in time"
            time.sleep(2)
    finally:
        os.killpg(job.pid, signal.SIGINT)
        try:
            job.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        stop_producer.set()
    stack_control.wait_ready("localstack")
    provision_stack_api()  # LocalStack forgot the API, as `make up` would provision it again
    causes = query_restarts("".join(output))
    # The kills must not fail a query: the source retries. A restart for the connect-back window is the machine's load.
    failed = [cause for cause in causes if not cause.startswith(CONNECT_BACK)]
    assert not failed, "a query failed and was restarted:\n" + "".join(output[-50:])
    check_exactly_once(stream_settings, warehouse, truth)
    print(
        f"{len(acked)} records acknowledged, {sum(refused.values())} PutRecords refused while the store was down, "
        f"{len(causes)} queries restarted because a Python worker missed Spark's 10 s to connect back"
    )


def query_restarts(output: str) -> list[str]:
    """The cause of each query restart the job printed (`stream: query NAME stopped (CAUSE...); restart N`)."""
    return re.findall(r"stream: query \S+ stopped \((.*)", output)


@pytest.mark.timeout(2 * JOB_TIMEOUT + 300)
def test_a_checkpoint_whose_sequence_numbers_vanished_resumes_logs_and_counts_it(stream_settings, kinesis, tmp_path):
    """The stream is deleted and created again while the job is stopped, so the sequence numbers in its checkpoint
    no longer exist. The restarted job resumes by arrival time (no failed query, no crash loop), takes each new record
    exactly once, and its status file counts one resume per shard it had read. One table keeps the test short."""
    stream = stream_settings.stream("pin")
    warehouse, status = tmp_path / "warehouse", tmp_path / "status.json"
    rows = source_rows("pin")

    def put(prefix: str, batch: list[dict]) -> dict[tuple[str, str], bytes]:
        records = [{"Data": json.dumps(r).encode(), "PartitionKey": f"{prefix}-{i}"} for i, r in enumerate(batch)]
        assert kinesis.put_records(StreamName=stream, Records=records)["FailedRecordCount"] == 0
        return {(shard, r["SequenceNumber"]): r["Data"] for shard, r in stream_records(kinesis, stream)}

    recreate_streams(stream_settings, [stream])
    old = put("before", rows[:20])
    run_job(stream_settings, warehouse, 10, "--tables", "pin")
    read_shards = {shard for shard, _ in old}

    recreate_streams(stream_settings, [stream])  # the checkpoint's sequence numbers are gone with the old stream
    new = put("after", rows[20:])
    assert read_shards <= {shard for shard, _ in new}, "every shard read before must have new records to resume at"
    assert not set(old) & set(new)

    # Before the resume, each restart failed the query in latestOffset until stream.py gave up (exit code 1).
    result = run_job(stream_settings, warehouse, 10, "--tables", "pin")
    assert f"fetching from Kinesis stream {stream} failed" not in result.stderr, result.stderr[-3000:]
    landed = Counter(
        (r["shard_id"], r["sequence_number"])
        for r in delta_rows(warehouse, stream_settings.delta_table("pin"), stream_settings)
    )
    assert not {k: n for k, n in landed.items() if n > 1}, "records landed twice"
    assert set(landed) == set(old) | set(new)
    [query] = json.loads(status.read_text())["queries"]
    assert query["resumed"] == len(read_shards), query
    assert query["last_resume"]["shard"] in read_shards and query["last_resume"]["resumed_at"]
    assert query["last_resume"]["lost_seq"] in {seq for _, seq in old}
    assert query["lost_ranges"] == 0
    # The WARNING of each resume, from the source in Spark's Python worker, whose stderr Spark passes on.
    assert result.stderr.count("no longer exists") == len(read_shards), result.stderr[-3000:]
