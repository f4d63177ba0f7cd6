"""Reading a whole Kinesis stream back, as the tests and benchmarks check what a store kept."""

from __future__ import annotations

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
