"""Is every Kafka offset in S3 exactly once? The audit behind `make verify` (`python -m services.audit`).

For each partition of the user's topics it compares Kafka's offsets (earliest .. end) with the offsets the S3 sink's
objects hold (start offset from the key, one offset per line; every object is read) and reports missing and
duplicated offsets. Clean only when nothing is missing, duplicated or unexpected. Because the sink uploads on a
timer, the newest records can be seconds away from S3: `audit_until_complete` re-checks missing offsets for a while
(duplicates never heal, so they fail at once), and rides out a Kafka or S3 restart.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from pipeline.kafka_clients import kafka_python_config
from pipeline.layout import TOPICS_PREFIX, count_lines, parse_object_key, topic_prefix
from pipeline.settings import KEY_COLUMNS, TABLES, Settings

MAX_RANGES_SHOWN = 5


@dataclass
class PartitionAudit:
    topic: str
    partition: int
    earliest: int
    end: int
    objects: int = 0
    offsets_in_s3: int = 0
    invalid_json_lines: int = 0
    missing: list[tuple[int, int]] = field(default_factory=list)  # [start, stop) ranges
    duplicated: list[tuple[int, int]] = field(default_factory=list)
    beyond_end: list[tuple[int, int]] = field(default_factory=list)

    @staticmethod
    def _count(ranges: list[tuple[int, int]]) -> int:
        return sum(stop - start for start, stop in ranges)

    @property
    def missing_count(self) -> int:
        return self._count(self.missing)

    @property
    def duplicated_count(self) -> int:
        return self._count(self.duplicated)

    @property
    def beyond_end_count(self) -> int:
        return self._count(self.beyond_end)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.duplicated or self.beyond_end)


@dataclass
class AuditReport:
    partitions: list[PartitionAudit]
    missing_topics: list[str]

    @property
    def clean(self) -> bool:
        return not self.missing_topics and all(p.clean for p in self.partitions)

    @property
    def missing_count(self) -> int:
        return sum(p.missing_count for p in self.partitions)

    @property
    def duplicated_count(self) -> int:
        return sum(p.duplicated_count for p in self.partitions)


def compare(audit: PartitionAudit, intervals: list[tuple[int, int]]) -> None:
    """Fill `audit`'s missing/duplicated/beyond-end ranges from the objects' [start, stop) offset intervals."""
    covered_until = audit.earliest
    seen_until = -1
    for start, stop in sorted(intervals):
        if start > covered_until and covered_until < audit.end:
            audit.missing.append((covered_until, min(start, audit.end)))
        if seen_until > start:
            audit.duplicated.append((start, min(stop, seen_until)))
        if stop > audit.end:
            audit.beyond_end.append((max(start, audit.end), stop))
        seen_until = max(seen_until, stop)
        covered_until = max(covered_until, stop)
    if covered_until < audit.end:
        audit.missing.append((covered_until, audit.end))


def kafka_offsets(settings: Settings, topics: list[str]) -> tuple[dict[TopicPartition, tuple[int, int]], list[str]]:
    """(earliest, end) per partition of the topics that exist, and the topics that do not."""
    config = kafka_python_config(settings, "audit")
    admin = KafkaAdminClient(**config)
    try:
        described = {t["name"]: t for t in admin.describe_topics(topics)}
    finally:
        admin.close()
    partitions, missing = [], []
    for topic in topics:
        info = described.get(topic)
        if info is None or info["error_code"] != 0:
            missing.append(topic)
            continue
        partitions += [TopicPartition(topic, p["partition_index"]) for p in info["partitions"]]
    consumer = KafkaConsumer(**config, enable_auto_commit=False)
    try:
        earliest = consumer.beginning_offsets(partitions) if partitions else {}
        end = consumer.end_offsets(partitions) if partitions else {}
    finally:
        consumer.close()
    return {tp: (earliest[tp], end[tp]) for tp in partitions}, missing


@dataclass(frozen=True)
class SinkObject:
    """One sink object: its first offset, and per line the record's source key (None for a line that is not a JSON
    object with the table's key field), plus how many lines are not JSON at all."""

    start: int
    keys: tuple[object, ...]
    invalid_json: int

    @property
    def stop(self) -> int:
        return self.start + len(self.keys)


ObjectCache = dict[tuple[str, str], tuple[tuple[object, ...], int]]


def s3_objects(
    settings: Settings, topics: list[str], cache: ObjectCache | None = None
) -> dict[TopicPartition, list[SinkObject]]:
    """Every sink object of `topics`, per partition; each object is read in full.

    `cache` maps (key, ETag) to (line keys, invalid lines) so repeated audits (--wait) read each object version once.
    """
    cache = {} if cache is None else cache
    key_fields = {settings.topic(table): KEY_COLUMNS[table] for table in TABLES}
    client = boto3.client("s3", **settings.boto3_client_kwargs("s3"))
    found: dict[TopicPartition, list[SinkObject]] = defaultdict(list)
    paginator = client.get_paginator("list_objects_v2")
    for topic in topics:
        for page in paginator.paginate(Bucket=settings.bucket, Prefix=topic_prefix(topic)):
            for item in page.get("Contents", []):
                parsed = parse_object_key(item["Key"])
                if parsed is None or parsed[0] != topic:
                    continue
                version = (item["Key"], item.get("ETag", ""))
                if version not in cache:
                    content = client.get_object(Bucket=settings.bucket, Key=item["Key"])["Body"].read()
                    cache[version] = line_keys(content, key_fields.get(topic))
                keys, invalid = cache[version]
                found[TopicPartition(topic, parsed[1])].append(SinkObject(parsed[2], keys, invalid))
    return found


def line_keys(content: bytes, key_field: str | None) -> tuple[tuple[object, ...], int]:
    """(per line, the record's `key_field` value or None; the number of lines that are not JSON)."""
    keys: list[object] = []
    invalid = 0
    for line in content.split(b"\n")[: count_lines(content)]:
        try:
            record = json.loads(line)
        except ValueError:
            invalid += 1
            keys.append(None)
            continue
        keys.append(record.get(key_field) if isinstance(record, dict) and key_field else None)
    return tuple(keys), invalid


def audit(
    settings: Settings,
    topics: list[str] | None = None,
    cache: ObjectCache | None = None,
    objects: dict[TopicPartition, list[SinkObject]] | None = None,
) -> AuditReport:
    """The offset audit; `objects` (from `s3_objects`) when the caller has read them already."""
    topics = topics or settings.topics
    offsets, missing_topics = kafka_offsets(settings, topics)
    objects = s3_objects(settings, topics, cache) if objects is None else objects
    partitions = []
    for tp in sorted(offsets, key=lambda t: (t.topic, t.partition)):
        earliest, end = offsets[tp]
        entry = PartitionAudit(tp.topic, tp.partition, earliest, end)
        found = objects.get(tp, [])
        entry.objects = len(found)
        entry.offsets_in_s3 = sum(len(o.keys) for o in found)
        entry.invalid_json_lines = sum(o.invalid_json for o in found)
        compare(entry, [(o.start, o.stop) for o in found])
        partitions.append(entry)
    return AuditReport(partitions, missing_topics)


def _ranges(ranges: list[tuple[int, int]]) -> str:
    shown = ", ".join(f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in ranges[:MAX_RANGES_SHOWN])
    return shown + (f", ... ({len(ranges)} ranges)" if len(ranges) > MAX_RANGES_SHOWN else "")


def render(settings: Settings, report: AuditReport) -> str:
    width = max([len(p.topic) for p in report.partitions] + [5])
    lines = [
        f"audit of s3://{settings.bucket}/{TOPICS_PREFIX} against Kafka {settings.kafka_bootstrap_servers}",
        f"{'topic':<{width}}  part  earliest       end   objects  in S3   missing  duplicated  not-json",
    ]
    for p in report.partitions:
        lines.append(
            f"{p.topic:<{width}}  {p.partition:>4}  {p.earliest:>8}  {p.end:>8}  {p.objects:>8}  {p.offsets_in_s3:>6}"
            f"  {p.missing_count:>8}  {p.duplicated_count:>10}  {p.invalid_json_lines:>8}"
        )
    for p in report.partitions:
        where = f"{p.topic}[{p.partition}]"
        if p.missing:
            lines.append(f"  MISSING    {where}: offsets {_ranges(p.missing)}")
        if p.duplicated:
            lines.append(f"  DUPLICATED {where}: offsets {_ranges(p.duplicated)}")
        if p.beyond_end:
            lines.append(f"  UNEXPECTED {where}: offsets {_ranges(p.beyond_end)} are in S3 but past Kafka's end")
    for topic in report.missing_topics:
        lines.append(f"  MISSING TOPIC {topic}: not in Kafka (run `make provision`)")
    total = sum(p.end - p.earliest for p in report.partitions)
    if report.clean:
        lines.append(f"OK: {len(report.partitions)} partitions, {total} offsets, every offset in S3 exactly once")
    else:
        lines.append(
            f"FAILED: {report.missing_count} missing, {report.duplicated_count} duplicated of {total} offsets"
            + (f", {len(report.missing_topics)} topic(s) missing" if report.missing_topics else "")
        )
    return "\n".join(lines)


class Unreachable(Exception):
    """Kafka or S3 did not answer; the message says which and what to do."""


def audit_until_complete(
    settings: Settings, wait_s: float, topics: list[str] | None = None, cache: ObjectCache | None = None
) -> AuditReport:
    """Audit; while only missing offsets (not duplicates) are wrong, or a service does not answer, retry for up to
    `wait_s` seconds. Raises Unreachable when Kafka or S3 still does not answer at the end. `cache` (see
    `s3_objects`) lets a later reader of the same objects skip reading them again."""
    deadline = time.monotonic() + wait_s
    cache = {} if cache is None else cache
    while True:
        try:
            report = audit(settings, topics, cache)
        except (BotoCoreError, ClientError, KafkaError) as error:
            if time.monotonic() >= deadline:
                raise Unreachable(
                    f"audit could not read Kafka ({settings.kafka_bootstrap_servers}) or S3 "
                    f"({settings.s3_endpoint_url or 'AWS'}, bucket {settings.bucket}): {error}. "
                    "Is the stack up (make status) and provisioned (make provision)?"
                ) from error
            time.sleep(1.0)
            continue
        only_missing = not report.missing_topics and all(
            not p.duplicated and not p.beyond_end for p in report.partitions
        )
        if report.clean or not only_missing or time.monotonic() >= deadline:
            return report
        time.sleep(1.0)
