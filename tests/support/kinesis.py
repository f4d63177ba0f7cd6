"""Reading a whole Kinesis stream back, as the tests and benchmarks check what a store kept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def stream_records(client: Any, stream: str, limit: int = 10_000) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every record in `stream` as (shard id, record), shard by shard from its trim horizon up to its tip."""
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            answer = client.get_records(ShardIterator=iterator, Limit=limit)
            for record in answer["Records"]:
                yield shard["ShardId"], record
            if not answer["Records"] and answer.get("MillisBehindLatest", 0) == 0:
                break
            iterator = answer.get("NextShardIterator")


def put_tagged(client: Any, stream: str, run: str, count: int) -> set[str]:
    """PutRecords of `count` records `{"run": run, "i": i}` in calls of 10; returns the keys `run/i` acknowledged
    (all of them: a failed record fails the caller's test)."""
    acked = set()
    for start in range(0, count, 10):
        batch = [{"run": run, "i": i} for i in range(start, min(start + 10, count))]
        records = [{"Data": json.dumps(body).encode(), "PartitionKey": str(body["i"])} for body in batch]
        response = client.put_records(StreamName=stream, Records=records)
        assert response["FailedRecordCount"] == 0, response
        acked |= {f"{run}/{body['i']}" for body in batch}
    return acked


def tagged_keys(client: Any, stream: str) -> set[str]:
    """The `run/i` keys of the records `put_tagged` wrote that `stream` still holds."""
    return {
        f"{body['run']}/{body['i']}"
        for _, record in stream_records(client, stream)
        for body in [json.loads(record["Data"])]
    }


def ensure_stream(client: Any, stream: str, shards: int) -> None:
    """`stream` exists and is ACTIVE: created with `shards` shards unless it is there already."""
    if stream not in client.list_streams(Limit=1000)["StreamNames"]:
        client.create_stream(StreamName=stream, ShardCount=shards)
    client.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
