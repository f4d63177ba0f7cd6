"""The S3 sink's object layout as the Python side reads it (docs/contract.md section 3).

The writer is the Java plugin (services/s3_sink/.../ObjectKeys.java); this is its one Python mirror, used by the
audit and tests: `topics/<topic>/partition=<p>/<topic>+<p>+<start offset, 10 digits>.json`.
"""

from __future__ import annotations

import re

TOPICS_DIR = "topics"
_FILE_NAME = re.compile(r"^(?P<topic>.+)\+(?P<partition>\d+)\+(?P<start>\d{10,})\.json$")


def object_key(topic: str, partition: int, start_offset: int) -> str:
    return f"{partition_prefix(topic, partition)}{topic}+{partition}+{start_offset:010d}.json"


def topic_prefix(topic: str) -> str:
    return f"{TOPICS_DIR}/{topic}/"


def partition_prefix(topic: str, partition: int) -> str:
    return f"{topic_prefix(topic)}partition={partition}/"


def parse_object_key(key: str) -> tuple[str, int, int] | None:
    """(topic, partition, start offset) of a sink object's key, or None for any other key."""
    match = _FILE_NAME.match(key.rsplit("/", 1)[-1])
    if match is None:
        return None
    topic, partition = match["topic"], int(match["partition"])
    if not key.startswith(partition_prefix(topic, partition)):
        return None
    return topic, partition, int(match["start"])


def count_lines(content: bytes) -> int:
    """Records in an object: one per line, every line newline-terminated (a missing last newline is tolerated)."""
    return content.count(b"\n") + (1 if content and not content.endswith(b"\n") else 0)
