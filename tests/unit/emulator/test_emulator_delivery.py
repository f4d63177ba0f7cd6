"""Per-record outcome handling and retries, against a small scripted HTTP server on 127.0.0.1."""

import asyncio
import json

import httpx
import pytest

from emulator.ledger import Ledger, load
from emulator.limiter import AdaptiveLimiter
from emulator.sender import KafkaRestPath, KinesisGatewayPath, RetryPolicy, Stats, deliver

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.002)
ROWS = [{"ind": i, "country": "Albania"} for i in range(3)]


@pytest.fixture
def server(scripted_server):
    return scripted_server


def ok_offsets(n, codes=None):
    codes = codes or [None] * n
    return {
        "offsets": [{"partition": 0, "offset": i, "error_code": c, "error": c and "boom"} for i, c in enumerate(codes)],
        "key_schema_id": None,
        "value_schema_id": None,
    }


async def _deliver_to(url, path_type, rows, table="geo", destination="0a1b2c3d4e5f.geo", ledger=None):
    stats = Stats()
    async with httpx.AsyncClient(timeout=5) as client:
        path = path_type(client, url, {"x-api-key": "k"})
        await deliver(path, table, destination, rows, stats, FAST, AdaptiveLimiter(max_concurrency=1), ledger)
    return stats


def run(path_type, server, rows, table="geo", destination="0a1b2c3d4e5f.geo", ledger=None):
    return asyncio.run(_deliver_to(server.url, path_type, rows, table, destination, ledger))


def test_the_ledger_holds_each_records_outcome_and_where_it_was_written(server, tmp_path):
    offsets = ok_offsets(3, [None, 1, None])
    offsets["offsets"][0].update(partition=2, offset=41)
    offsets["offsets"][2] = {"partition": None, "offset": None, "error_code": 1, "error": "possibly written: timeout"}
    server.script.append((200, offsets))
    ledger = Ledger(tmp_path, "run-1", "batch", "proxy")
    run(KafkaRestPath, server, ROWS, ledger=ledger)
    ledger.close()
    reading = load(tmp_path)
    assert reading.unreadable == 0 and list(reading.runs) == ["run-1"]
    lines = {entry["row"]: entry for entry in reading.entries}
    assert lines[0]["outcome"] == "acked" and (lines[0]["partition"], lines[0]["offset"]) == (2, 41)
    assert lines[1]["outcome"] == "failed" and "error_code 1" in lines[1]["reason"]
    assert lines[2]["outcome"] == "possibly_written" and "offset" not in lines[2]
    assert {entry["destination"] for entry in reading.entries} == {"0a1b2c3d4e5f.geo"}


def test_a_ledger_line_torn_by_a_kill_is_counted_not_skipped(tmp_path):
    (tmp_path / "run-2.jsonl").write_text('{"run": "run-2", "event": "start", "at": 1.0}\n{"run": "run-2", "outc')
    reading = load(tmp_path)
    assert reading.unreadable == 1 and reading.entries == []


def test_kinesis_acknowledgements_record_shard_and_sequence_number(server, tmp_path):
    records = [{"ShardId": "shardId-000000000001", "SequenceNumber": str(100 + i)} for i in range(3)]
    server.script.append((200, {"FailedRecordCount": 0, "Records": records}))
    ledger = Ledger(tmp_path, "run-3", "stream", "gateway")
    run(KinesisGatewayPath, server, ROWS, destination="streaming-0a1b2c3d4e5f-geo", ledger=ledger)
    ledger.close()
    entries = load(tmp_path).entries
    assert [(e["shard"], e["sequence"]) for e in entries] == [("shardId-000000000001", str(100 + i)) for i in range(3)]


def test_all_acked_in_one_request(server):
    server.script.append((200, ok_offsets(3)))
    stats = run(KafkaRestPath, server, ROWS)
    assert (stats.sent, stats.acked, stats.failed, stats.retries) == (3, 3, 0, 0)
    request = server.requests[0]
    assert request["method"] == "POST" and request["path"] == "/topics/0a1b2c3d4e5f.geo"
    assert request["headers"]["Content-Type"] == "application/vnd.kafka.json.v2+json"
    assert request["headers"]["x-api-key"] == "k"
    assert json.loads(request["body"]) == {"records": [{"value": r} for r in ROWS]}


def test_only_retriable_records_are_resent(server):
    # record 1 retriable (code 2), record 2 non-retriable (code 1): 1 is re-sent alone, 2 fails for good.
    server.script.extend([(200, ok_offsets(3, [None, 2, 1])), (200, ok_offsets(1))])
    stats = run(KafkaRestPath, server, ROWS)
    assert (stats.acked, stats.failed, stats.retries) == (2, 1, 1)
    assert json.loads(server.requests[1]["body"]) == {"records": [{"value": ROWS[1]}]}
    assert stats.failures[0]["row"] == ROWS[2] and "error_code 1" in stats.failures[0]["reason"]


def test_http_200_with_error_code_is_not_success(server):
    server.script.extend([(200, ok_offsets(1, [1]))])
    stats = run(KafkaRestPath, server, ROWS[:1])
    assert (stats.acked, stats.failed) == (0, 1)


def test_throttling_and_refused_connections_are_retried(server):
    server.script.extend([(503, {"message": "busy"}), (429, {"message": "slow down"}), (200, ok_offsets(3))])
    stats = run(KafkaRestPath, server, ROWS)
    assert (stats.acked, stats.failed, stats.retries) == (3, 0, 6)
    assert len(server.requests) == 3
    refused = asyncio.run(_deliver_to("http://127.0.0.1:9", KafkaRestPath, ROWS))  # nothing listens on port 9
    assert refused.failed == 3 and refused.possibly_written == 0, "a refused connection sent nothing"
    assert all(f["attempts"] == FAST.max_attempts for f in refused.failures), "and was retried"


@pytest.mark.parametrize(
    "answer",
    [("drop", None), (500, {"message": "bug"}), (502, {"message": "bad gateway"}), (504, {"message": "timed out"})],
)
def test_an_answer_that_leaves_the_outcome_unknown_is_possibly_written_and_never_re_sent(server, answer):
    """A connection closed after the request was sent, or a 5xx other than 503: the service (or the gateway's
    backend) may have written the records, so a retry could write them twice."""
    server.script.extend([answer, (200, ok_offsets(3))])
    stats = run(KafkaRestPath, server, ROWS)
    assert (stats.acked, stats.failed, stats.possibly_written, stats.retries) == (0, 3, 3, 0)
    assert len(server.requests) == 1
    assert all(f["possibly_written"] and f["reason"].startswith("possibly written") for f in stats.failures)


def test_a_proxy_record_error_marked_possibly_written_is_not_re_sent(server):
    offsets = ok_offsets(3)
    offsets["offsets"][1] = {
        "partition": None,
        "offset": None,
        "error_code": 1,
        "error": "possibly written: Local: Message timed out after the record was sent",
    }
    server.script.extend([(200, offsets)])
    stats = run(KafkaRestPath, server, ROWS)
    assert (stats.acked, stats.failed, stats.possibly_written, stats.retries) == (2, 1, 1, 0)


def test_retries_are_bounded_and_failures_kept(server):
    server.script.extend([(503, {"message": "down"})] * 4)
    stats = run(KafkaRestPath, server, ROWS)
    assert (stats.acked, stats.failed) == (0, 3)
    assert len(server.requests) == FAST.max_attempts
    assert all(f["attempts"] == FAST.max_attempts and "HTTP 503" in f["reason"] for f in stats.failures)
    assert [f["row"] for f in stats.failures] == ROWS


def test_4xx_is_final_with_the_servers_message(server):
    server.script.append((404, {"error_code": 40401, "message": "Topic not found."}))
    stats = run(KafkaRestPath, server, ROWS)
    assert (stats.acked, stats.failed) == (0, 3)
    assert len(server.requests) == 1
    assert "HTTP 404: Topic not found." in stats.failures[0]["reason"]


def test_stream_single_record(server):
    server.script.append((200, {"SequenceNumber": "4959", "ShardId": "shardId-000000000000"}))
    stats = run(KinesisGatewayPath, server, ROWS[:1], destination="streaming-0a1b2c3d4e5f-geo")
    assert (stats.acked, stats.failed) == (1, 0)
    request = server.requests[0]
    assert request["method"] == "PUT" and request["path"] == "/streams/streaming-0a1b2c3d4e5f-geo/record"
    assert json.loads(request["body"]) == {
        "StreamName": "streaming-0a1b2c3d4e5f-geo",
        "Data": ROWS[0],
        "PartitionKey": "0",
    }


def test_stream_put_records_retries_throttled_entries(server):
    server.script.extend(
        [
            (
                200,
                {
                    "FailedRecordCount": 2,
                    "Records": [
                        {"SequenceNumber": "1", "ShardId": "s"},
                        {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"},
                        {"ErrorCode": "AccessDeniedException", "ErrorMessage": "no"},
                    ],
                },
            ),
            (200, {"SequenceNumber": "2", "ShardId": "s"}),
        ]
    )
    stats = run(KinesisGatewayPath, server, ROWS, destination="streaming-0a1b2c3d4e5f-geo")
    assert (stats.acked, stats.failed, stats.retries) == (2, 1, 1)
    assert server.requests[0]["path"] == "/streams/streaming-0a1b2c3d4e5f-geo/records"
    # the one record left is re-sent alone, through PutRecord
    assert server.requests[1]["path"] == "/streams/streaming-0a1b2c3d4e5f-geo/record"
    assert json.loads(server.requests[1]["body"])["Data"] == ROWS[1]


def test_kinesis_error_passed_through_as_4xx_is_final(server):
    server.script.append((400, {"__type": "ResourceNotFoundException", "message": "Stream not found"}))
    stats = run(KinesisGatewayPath, server, ROWS[:1], destination="streaming-0a1b2c3d4e5f-geo")
    assert stats.failed == 1 and "Stream not found" in stats.failures[0]["reason"]
    assert len(server.requests) == 1
