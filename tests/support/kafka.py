"""Where a Kafka topic ends, as tests check what a run added to it."""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition

from pipeline.kafka_clients import kafka_python_config
from pipeline.settings import Settings


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The next offset of each partition of `topic` (empty for a topic that does not exist yet)."""
    consumer = KafkaConsumer(**kafka_python_config(settings, "tests-end-offsets"))
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()} if partitions else {}
    finally:
        consumer.close()
