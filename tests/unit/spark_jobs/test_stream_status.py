"""The streaming job's status file counts what the Kinesis sources report in their event log (resumes after a
vanished sequence number, batches that could not be fully replayed), per query, from the very lines the source
writes (spark_jobs/kinesis_fetch.record_event)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from spark_jobs import kinesis_fetch as kf
from spark_jobs import stream

PIN, GEO = "streaming-7e57c0de0001-pin", "streaming-7e57c0de0001-geo"


def query(name: str) -> SimpleNamespace:
    """The slice of a StreamingQuery that the status reads."""
    return SimpleNamespace(name=name, id="0000", isActive=True, lastProgress={"batchId": 3, "numInputRows": 5})


def test_status_counts_each_querys_source_events(tmp_path):
    path = tmp_path / "status.json"
    log = stream.source_events_file(path)
    assert log == tmp_path / "status-events.jsonl"
    for shard, seq in (("shardId-000000000000", "10"), ("shardId-000000000001", "11")):
        kf.record_event(str(log), {"event": "resumed", "stream": PIN, "shard": shard, "lost_seq": seq})
    kf.record_event(str(log), {"event": "lost_range", "stream": PIN, "shard": "shardId-000000000001", "until_seq": "9"})
    with log.open("a") as partial:
        partial.write('{"event": "resumed", "str')  # a line still being written is skipped
    stream.write_status(path, [query("stream_pin"), query("stream_geo")], {"stream_pin": PIN, "stream_geo": GEO})

    pin, geo = json.loads(path.read_text())["queries"]
    assert pin["batch_id"] == 3 and pin["resumed"] == 2 and pin["lost_ranges"] == 1
    assert pin["last_resume"]["shard"] == "shardId-000000000001" and pin["last_resume"]["lost_seq"] == "11"
    assert pin["last_resume"]["time"] and pin["last_lost_range"]["until_seq"] == "9"
    assert {k: geo[k] for k in stream.no_source_events()} == stream.no_source_events()


def test_status_without_an_event_log_counts_nothing(tmp_path):
    path = tmp_path / "status.json"
    stream.write_status(path, [query("stream_pin")], {"stream_pin": PIN})
    [pin] = json.loads(path.read_text())["queries"]
    assert pin["resumed"] == 0 and pin["last_resume"] is None
