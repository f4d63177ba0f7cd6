"""Sink benchmark: N pin records (default 100,000) produced to Kafka -> all in S3 (Kafka Connect + our S3 sink).

Measures records/s from the first produce until every new offset is in an S3 object, against a baseline in the
same run: a plain consumer reading the same records from Kafka (what any sink must at least do). Then checks the
audit is clean. Uses its own user id (topics, bucket, connector) so a user's data is untouched. Needs `make up`.
"""

from __future__ import annotations

import argparse
import platform
import time

import boto3
from confluent_kafka import Consumer, Producer, TopicPartition
from results import record_row  # scripts/bench/results.py (run as a script)

from pipeline.layout import count_lines, parse_object_key, topic_prefix
from pipeline.settings import load_settings
from services.audit.sink_audit import audit, render
from services.provision.kafka import provision_connector, provision_topics
from services.provision.s3 import provision_bucket
from tests.support import SAMPLES_DIR

BENCH_USER_ID = "7e57c0deb3c4"
SAMPLE = SAMPLES_DIR / "original_pin.jsonl"


def end_offsets(settings, topic: str) -> dict[int, tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "bench-sink-offsets"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
    finally:
        consumer.close()


def produce(settings, topic: str, count: int) -> None:
    rows = [line.encode() for line in SAMPLE.read_text().splitlines() if line.strip()]
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    for i in range(count):
        while True:
            try:
                producer.produce(topic, rows[i % len(rows)])
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0, "records left unacknowledged"


def wait_in_s3(settings, topic: str, targets: dict[int, int], timeout: float) -> float:
    """Seconds until each partition's objects reach its target end offset (new objects are read once)."""
    client = boto3.client("s3", **settings.boto3_client_kwargs("s3"))
    covered = {p: 0 for p in targets}
    seen: set[str] = set()
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=settings.bucket, Prefix=topic_prefix(topic)
        ):
            for item in page.get("Contents", []):
                parsed = parse_object_key(item["Key"])
                if parsed is None or item["Key"] in seen:
                    continue
                body = client.get_object(Bucket=settings.bucket, Key=item["Key"])["Body"].read()
                covered[parsed[1]] = max(covered[parsed[1]], parsed[2] + count_lines(body))
                seen.add(item["Key"])
        if all(covered[p] >= end for p, end in targets.items()):
            return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit(f"not all records in S3 after {timeout:.0f} s: covered {covered}, targets {targets}")


def read_back(settings, topic: str, starts: dict[int, int], ends: dict[int, int]) -> float:
    """Baseline: seconds for a plain consumer to read the same offsets from Kafka."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": "bench-sink-baseline",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in starts])
    remaining = sum(ends[p] - starts[p] for p in starts)
    started = time.monotonic()
    while remaining > 0:
        for message in consumer.consume(1000, timeout=5):
            if message.error() is None and message.offset() < ends[message.partition()]:
                remaining -= 1
    consumer.close()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--no-record", action="store_true", help="do not append to docs/BENCHMARKS.md")
    args = parser.parse_args()
    settings = load_settings(pipeline_user_id=BENCH_USER_ID)
    for step in (provision_bucket, provision_topics, provision_connector):
        step(settings, False)
    topic = settings.topic("pin")
    before = {p: high for p, (_low, high) in end_offsets(settings, topic).items()}
    started = time.monotonic()
    produce(settings, topic, args.records)
    produced_s = time.monotonic() - started
    after = {p: high for p, (_low, high) in end_offsets(settings, topic).items()}
    wait_in_s3(settings, topic, after, timeout=600)
    sink_s = time.monotonic() - started
    baseline_s = read_back(settings, topic, before, after)
    report = audit(settings, [topic])
    print(render(settings, report))
    line = (
        f"| {time.strftime('%Y-%m-%d')} | {platform.node()} | {args.records:,} | {produced_s:.1f} s | {sink_s:.1f} s "
        f"| {args.records / sink_s:,.0f}/s | {args.records / baseline_s:,.0f}/s | {baseline_s / sink_s:.2f} "
        f"| {'clean' if report.clean else 'NOT CLEAN'} |"
    )
    print(line)
    if not args.no_record:
        _record(line)
    if not report.clean:
        raise SystemExit(1)


def _record(line: str) -> None:
    title = "## S3 sink (`python scripts/bench/bench_sink.py`)"
    header = (
        "Records produced to Kafka until all are in S3 objects (Kafka Connect + our sink), vs a plain consumer\n"
        "reading the same records (baseline). Ratio = sink rate / consumer rate.\n\n"
        "| date | machine | records | produce | produce -> all in S3 | sink rate | consumer rate | ratio | audit |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    record_row(title, header, line)


if __name__ == "__main__":
    main()
