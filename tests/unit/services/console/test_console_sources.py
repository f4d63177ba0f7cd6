"""The console's readers on small fixtures: the ledger read incrementally, the sink's objects located by offset, the
caches, the Host check, and the trace's text."""

from __future__ import annotations

import itertools
import json
import threading
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient
from moto import mock_aws

from emulator.ledger import Entry, Ledger
from pipeline import layout
from pipeline.settings import load_settings
from services.console import sources
from services.console.app import create_app
from services.console.trace import render_text


@pytest.fixture(autouse=True)
def fresh_s3_clients():
    """The console keeps one S3 client per endpoint for its process; each test starts without one (moto's mock and
    the event handlers a test registers stay with the test)."""
    sources._S3_CLIENTS.clear()
    yield
    sources._S3_CLIENTS.clear()


def _calls(client, operation: str) -> list[dict]:
    """The parameters of every `operation` request `client` makes from now on."""
    calls: list[dict] = []
    service = client.meta.service_model.service_name
    client.meta.events.register(
        f"provide-client-params.{service}.{operation}", lambda params, **_: calls.append(params)
    )
    return calls


def _line(**fields) -> str:
    return json.dumps({"run": "r1", "at": time.time(), **fields}) + "\n"


def test_ledger_counts_read_only_new_complete_lines(tmp_path):
    file = tmp_path / "r1.jsonl"
    file.write_text(
        json.dumps({"run": "r1", "event": "start", "at": 1.0, "path": "batch"})
        + "\n"
        + _line(path="batch", via="gateway", table="pin", row=1, outcome="acked", ms=12.0)
        + _line(path="batch", via="proxy", table="geo", row=1, outcome="failed", ms=40.0)
    )
    ledger = sources.LedgerCounts(tmp_path).refresh()
    assert ledger.total("batch", "acked") == 1
    assert ledger.total("batch", "acked", via="gateway") == 1
    assert ledger.total("batch", "failed") == 1
    assert list(ledger.latencies["batch"]) == [12.0, 40.0]

    # a torn line (the emulator is writing it) is not counted until it is complete
    with file.open("a") as handle:
        handle.write('{"run": "r1", "path": "stream", "via": "gateway", "table": "pin", "row": 2, "outco')
    ledger.refresh()
    assert ledger.total("stream", "acked") == 0 and ledger.unreadable == 0
    with file.open("a") as handle:
        handle.write('me": "acked", "at": 5.0}\n')
    ledger.refresh()
    assert ledger.total("stream", "acked") == 1
    assert ledger.total("batch", "acked") == 1  # earlier lines are not counted twice

    # a file that goes away (make clean) starts the counts again
    file.unlink()
    (tmp_path / "r2.jsonl").write_text(_line(path="batch", via="proxy", table="pin", row=3, outcome="acked"))
    ledger.refresh()
    assert ledger.total("batch", "acked") == 1 and ledger.total("stream", "acked") == 0


def _run(folder, run: str, n: int, destination: str = "aaaaaaaaaaaa.pin") -> Ledger:
    ledger = Ledger(folder, run, "batch", "gateway")
    for row in range(n):
        outcome = "failed" if row % 7 == 0 else "acked"
        ledger.record(Entry("pin", row, destination, outcome, 1, {"partition": 0, "offset": row}, ms=float(row)))
    return ledger


def _seen(ledger: sources.LedgerCounts):
    return ledger.counts, {p: list(v) for p, v in ledger.latencies.items()}, ledger.last_at, ledger.unreadable


def test_ledger_counts_from_a_runs_summary_equal_the_counts_from_its_lines(tmp_path):
    _run(tmp_path, "r1", 900).close()
    _run(tmp_path, "r2", 40, destination="bbbbbbbbbbbb.pin").close()  # another user id's run
    ours = frozenset({"aaaaaaaaaaaa.pin"})
    from_summaries = sources.LedgerCounts(tmp_path, ours).refresh()
    assert from_summaries.runs_from_summary == 2
    assert from_summaries.total("batch", "acked", via="gateway") == 900 - 129
    assert from_summaries.total("batch", "failed") == 129
    assert len(from_summaries.latencies["batch"]) == sources.LATENCY_SAMPLES
    for summary in tmp_path.glob("*.summary.json"):
        summary.unlink()
    from_lines = sources.LedgerCounts(tmp_path, ours).refresh()
    assert from_lines.runs_from_summary == 0
    assert _seen(from_summaries) == _seen(from_lines)


def test_a_closed_run_is_counted_once_until_its_file_changes(tmp_path):
    _run(tmp_path, "r1", 10).close()
    counts = sources.LedgerCounts(tmp_path).refresh()
    (tmp_path / "r1.summary.json").unlink()
    assert counts.refresh().runs_from_summary == 1 and counts.total("batch", "acked") == 8  # not read again
    with (tmp_path / "r1.jsonl").open("a") as handle:  # the file changed: its counts are taken again, from its lines
        handle.write(_line(path="batch", via="gateway", table="pin", row=99, outcome="acked"))
    assert counts.refresh().runs_from_summary == 0 and counts.total("batch", "acked") == 9


def test_a_stale_summary_of_a_killed_run_gives_way_to_its_lines(tmp_path, monkeypatch):
    ledger = _run(tmp_path, "r1", 10)
    ledger.flush()  # the summary covers 10 entries
    ledger.record(Entry("pin", 10, "aaaaaaaaaaaa.pin", "acked", 1, {"partition": 0, "offset": 10}, ms=1.0))
    ledger._file.flush()  # the 11th line is on disk, and the emulator is killed before its next summary
    counts = sources.LedgerCounts(tmp_path).refresh()
    assert counts.runs_from_summary == 1 and counts.total("batch", "acked") == 8  # a live run: its last summary

    later = time.time() + sources.SUMMARY_STALE_S + 1
    monkeypatch.setattr(sources.time, "time", lambda: later)
    counts.refresh()
    assert counts.runs_from_summary == 0 and counts.total("batch", "acked") == 9  # every line, as make verify counts

    (tmp_path / "r1.summary.json").write_text("{torn")  # an unreadable summary: the lines again
    assert sources.LedgerCounts(tmp_path).refresh().total("batch", "acked") == 9


def test_ledger_entries_finds_a_row_in_every_run(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        _line(path="batch", via="proxy", table="pin", row=7, outcome="acked", partition=0, offset=3)
        + _line(path="batch", via="proxy", table="pin", row=70, outcome="acked", partition=0, offset=4)
    )
    (tmp_path / "b.jsonl").write_text(_line(path="stream", via="gateway", table="geo", row=7, outcome="acked"))
    assert [e["path"] for e in sources.ledger_entries(tmp_path, 7)] == ["batch", "stream"]
    assert [e["path"] for e in sources.ledger_entries(tmp_path, 7, run="b")] == ["stream"]
    assert sources.ledger_entries(tmp_path, 8) == []


def test_partition_objects_locate_an_offset():
    known = sources.PartitionObjects(starts=[(0, "k0"), (5, "k5"), (9, "k9")], newest_lines=3)
    assert known.landed == 12
    assert known.object_at(0) == ("k0", 0)
    assert known.object_at(7) == ("k5", 2)
    assert known.object_at(11) == ("k9", 2)
    assert known.object_at(12) is None  # not written yet
    assert sources.PartitionObjects().object_at(0) is None


def test_percentile():
    assert sources.percentile([], 0.5) is None
    assert sources.percentile([5, 1, 3, 2, 4], 0.5) == 3
    assert sources.percentile(list(range(100)), 0.95) == 95


def test_memo_computes_once_per_ttl_and_keeps_the_last_value_on_error():
    calls = []

    def compute():
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("broker down")
        return len(calls)

    memo = sources.Memo(0.2, compute)
    threads = [threading.Thread(target=memo.get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert memo.get() == (1, None) and len(calls) == 1  # eight callers, one computation
    time.sleep(0.25)
    assert memo.get() == (1, "ConnectionError: broker down")
    time.sleep(0.25)
    assert memo.get() == (3, None)


def test_a_slow_source_answers_with_its_last_value_instead_of_blocking():
    release = threading.Event()
    answers = itertools.chain([1], itertools.repeat(2))

    def compute():
        value = next(answers)
        if value == 2:
            release.wait(5)
        return value

    memo = sources.Memo(0.05, compute, wait=0.2)
    assert memo.get() == (1, None)
    time.sleep(0.1)
    started = time.monotonic()
    value, note = memo.get()
    assert time.monotonic() - started < 1.0
    assert value == 1 and note.startswith("still reading after 0 s")
    release.set()
    time.sleep(0.1)
    assert memo.get() == (2, None)


@mock_aws
def test_sink_progress_lists_only_new_objects_and_counts_the_newest():
    settings = load_settings(pipeline_target="local", aws_endpoint_url=None, aws_endpoint_url_s3=None)
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=settings.bucket)
    topic = settings.topic("pin")

    def put(start: int, lines: int) -> None:
        body = "".join(json.dumps({"index": start + i}) + "\n" for i in range(lines))
        client.put_object(Bucket=settings.bucket, Key=layout.object_key(topic, 0, start), Body=body.encode())

    put(0, 4)
    progress = sources.SinkProgress(settings)
    calls = _calls(sources.s3_client(settings), "ListObjectsV2")
    assert progress.refresh({topic: {0: 10}})[(topic, 0)].landed == 4
    put(4, 6)
    known = progress.refresh({topic: {0: 10}})[(topic, 0)]
    assert known.landed == 10 and known.objects == 2
    assert calls[-1]["StartAfter"] == layout.object_key(topic, 0, 0)  # listed after the newest key seen
    # the objects reach the end offset: nothing new can land, so the bucket is not asked again until the topic grows
    listed = len(calls)
    assert progress.refresh({topic: {0: 10}})[(topic, 0)].landed == 10
    assert len(calls) == listed
    put(10, 2)
    assert progress.refresh({topic: {0: 12}})[(topic, 0)].landed == 12
    assert len(calls) == listed + 1
    # the topic was recreated (its end offset went back): the partition's objects are listed again from scratch
    assert progress.refresh({topic: {0: 3}})[(topic, 0)].objects == 3


@mock_aws
def test_kinesis_counts_read_on_from_where_they_stopped_and_list_shards_once_per_ttl(monkeypatch):
    settings = load_settings(pipeline_target="local", aws_endpoint_url=None, aws_endpoint_url_kinesis=None)
    client = boto3.client("kinesis", region_name="us-east-1")
    stream = settings.stream("pin")
    client.create_stream(StreamName=stream, ShardCount=2)

    def put(n: int) -> None:
        for i in range(n):
            client.put_record(StreamName=stream, Data=b"{}", PartitionKey=str(i))

    put(5)
    counts = sources.KinesisCounts(settings)
    listed = _calls(counts._kinesis(), "ListShards")
    first = counts.refresh()[stream]
    assert (first["exists"], first["records"], first["shards"]) == (True, 5, 2)
    assert abs(first["last_arrival"] - time.time()) < 60  # the newest record's arrival, as epoch seconds
    put(3)
    assert counts.refresh()[stream]["records"] == 8  # read on from each shard's last sequence number, not again
    assert [call["StreamName"] for call in listed].count(stream) == 1  # the shard list is kept
    monkeypatch.setattr(sources.KinesisCounts, "SHARDS_TTL_S", 0.0)
    assert counts.refresh()[stream]["records"] == 8
    assert [call["StreamName"] for call in listed].count(stream) == 2
    client.delete_stream(StreamName=stream)
    assert counts.refresh()[stream] == {"exists": False, "records": 0, "shards": 0, "last_arrival": None}


def test_the_counting_kinesis_client_parses_only_sequence_numbers_and_arrival_times():
    settings = load_settings(pipeline_target="local")
    counting = sources.KinesisCounts(settings)._kinesis()
    record = counting.meta.service_model.operation_model("GetRecords").output_shape.members["Records"].member
    assert sorted(record.members) == sorted(sources.COUNTED_RECORD_FIELDS)
    # another client, even made after it, keeps the whole model
    other = boto3.client("kinesis", **settings.boto3_client_kwargs("kinesis"))
    assert (
        "Data" in other.meta.service_model.operation_model("GetRecords").output_shape.members["Records"].member.members
    )


@mock_aws
def test_a_delta_table_not_created_yet_is_not_opened(monkeypatch):
    import deltalake

    settings = load_settings(pipeline_target="local", aws_endpoint_url=None, aws_endpoint_url_s3=None)
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=settings.bucket)
    opened = []
    monkeypatch.setattr(deltalake, "DeltaTable", lambda *args, **kwargs: opened.append(args))
    tables = sources.DeltaTables(settings)
    summary = tables.summary()
    assert set(summary) == set(tables.names())
    assert all(not table["exists"] for table in summary.values())
    assert opened == []  # no _delta_log/: delta-rs is not asked to open the table


def test_trace_text_names_every_hop():
    result = {
        "row": 7,
        "entries": [
            {
                "run": "r1",
                "path": "batch",
                "via": "gateway",
                "table": "pin",
                "outcome": "acked",
                "attempts": 1,
                "kafka": {"topic": "t.pin", "partition": 1, "offset": 42},
                "s3": {"state": "written", "key": "topics/t.pin/partition=1/x.json", "line": 3, "text": "{}"},
                "batch": {"state": "quarantined", "reason": "missing ind"},
            },
            {
                "run": "r2",
                "path": "stream",
                "via": "gateway",
                "table": "geo",
                "outcome": "acked",
                "attempts": 2,
                "kinesis": {"stream": "streaming-x-geo", "shard": "shardId-0", "sequence": "495"},
                "delta": {"state": "in table", "table": "x_geo_table", "row": {"ind": 7}},
            },
        ],
    }
    text = render_text(result)
    assert "offset 42" in text and "x.json line 3" in text and "quarantined: missing ind" in text
    assert "sequence 495" in text and 'x_geo_table: {"ind": 7}' in text
    assert "no record of this row" in render_text({"row": 1, "entries": []})


@pytest.fixture
def client():
    settings = load_settings(console_port=8070, bind_host="127.0.0.1")
    return TestClient(create_app(settings), base_url="http://127.0.0.1:8070")


def test_console_refuses_a_foreign_host_and_origin(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz", headers={"Host": "attacker.example"}).status_code == 400
    assert client.get("/healthz", headers={"Origin": "http://attacker.example"}).status_code == 403


def test_console_is_read_only_and_rejects_unknown_names(client):
    assert client.post("/api/flow").status_code == 405
    assert client.get("/topics?topic=not-ours").status_code == 404
    assert client.get("/delta?table=not-ours").status_code == 404
    assert client.get("/results?name=not-ours").status_code == 404
    assert "unknown service" in client.get("/services/log?name=nope").text


def test_ledger_entries_of_other_user_ids_are_not_counted_or_traced(tmp_path):
    (tmp_path / "r.jsonl").write_text(
        _line(path="batch", via="proxy", table="pin", row=1, outcome="acked", destination="aaaaaaaaaaaa.pin")
        + _line(path="batch", via="proxy", table="pin", row=1, outcome="acked", destination="bbbbbbbbbbbb.pin")
    )
    ours = frozenset({"aaaaaaaaaaaa.pin"})
    assert sources.LedgerCounts(tmp_path, ours).refresh().total("batch", "acked") == 1
    assert [e["destination"] for e in sources.ledger_entries(tmp_path, 1, destinations=ours)] == ["aaaaaaaaaaaa.pin"]


@mock_aws
def test_objects_not_there_yet_read_as_none_and_other_errors_raise():
    settings = load_settings(pipeline_target="local", aws_endpoint_url=None, aws_endpoint_url_s3=None)
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=settings.bucket)
    assert sources.report_object(settings) is None  # HeadObject answers a bare 404
    assert sources.quarantine_summary(settings) is None  # GetObject answers NoSuchKey
    client.put_object(Bucket=settings.bucket, Key=layout.report_path(layout.RESULTS_DIR), Body=b"<html></html>")
    assert sources.report_object(settings)["key"] == "analytics/report.html"
    client.delete_object(Bucket=settings.bucket, Key=layout.report_path(layout.RESULTS_DIR))
    client.delete_bucket(Bucket=settings.bucket)
    with pytest.raises(ClientError):
        sources.quarantine_summary(settings)  # NoSuchBucket is not "not there yet"
