"""librdkafka client configuration and the proxy's view of cluster metadata.

Every client the proxy builds (the native shared producer; confluent-kafka's admin client and per-instance
consumers: librdkafka all three, so one configuration dictionary serves them) starts from
`client_config(settings)`: bootstrap servers from settings, PLAINTEXT locally, SASL OAUTHBEARER with an MSK IAM
token on AWS. `ClusterMetadata` caches topic -> partition count so a produce request checks its topic and
partitions without a broker round trip; a miss triggers at most one refresh per `MISS_REFRESH_INTERVAL`, shared by
all waiting requests. Metadata is always fetched for *all* topics: asking librdkafka about one named topic would
let the broker auto-create it, and an unknown topic must be answered with 40401 instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import TimeoutError as FutureTimeout

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource

from pipeline.kafka_clients import confluent_config
from pipeline.settings import Settings
from services.rest_proxy.errors import Error, RestError, kafka_error

log = logging.getLogger("rest_proxy.metadata")

METADATA_TIMEOUT_S = 5.0
CACHE_TTL_S = 30.0
MISS_REFRESH_INTERVAL_S = 0.5


def client_config(settings: Settings) -> dict[str, object]:
    """PLAINTEXT locally, MSK IAM (SASL OAUTHBEARER) when KAFKA_AUTH=iam: see pipeline/kafka_clients.py."""
    return confluent_config(settings, "rest-proxy")


def producer_config(settings: Settings) -> dict[str, object]:
    """The proxy's producer settings; the benchmark's native producer uses the very same dictionary."""
    return {
        **client_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.rest_proxy_linger_ms,
        "message.timeout.ms": settings.rest_proxy_delivery_timeout_ms,
        # Same key -> same partition as Confluent's (Java) proxy and every Java producer.
        "partitioner": "murmur2_random",
        # Headroom above the per-record limit for batch/record overhead, below the broker's 1 MiB + 12 default.
        "message.max.bytes": max(1_048_576, settings.rest_proxy_max_record_bytes + 65_536),
        "queue.buffering.max.kbytes": 262_144,
    }


class ClusterMetadata:
    """Cluster id, brokers and topics, from librdkafka metadata requests run off the event loop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin = AdminClient(client_config(settings))  # metadata and topic configs
        self._topics: dict[str, int] = {}
        self._refreshed_at = 0.0
        self._refreshing: asyncio.Future | None = None
        self.cluster_id: str | None = None

    def _fetch(self):
        try:
            return self._admin.list_topics(timeout=METADATA_TIMEOUT_S)
        except KafkaException as error:
            raise kafka_error(error.args[0]) from None

    async def describe(self):
        """A fresh metadata snapshot (ClusterMetadata of confluent-kafka); also refreshes the topic cache."""
        metadata = await asyncio.to_thread(self._fetch)
        self._store(metadata)
        return metadata

    def _store(self, metadata) -> None:
        self.cluster_id = metadata.cluster_id
        self._topics = {name: len(topic.partitions) for name, topic in metadata.topics.items() if topic.error is None}
        self._refreshed_at = time.monotonic()

    async def _refresh(self) -> None:
        if self._refreshing is not None:
            await asyncio.shield(self._refreshing)
            return
        self._refreshing = asyncio.get_running_loop().create_future()
        try:
            await self.describe()
            self._refreshing.set_result(None)
        except BaseException as error:
            self._refreshing.set_exception(error)
            self._refreshing.exception()  # retrieved: waiters re-raise it, nobody else must log it
            raise
        finally:
            self._refreshing = None

    async def partitions(self, topic: str) -> int | None:
        """Partition count of `topic`, or None when the topic does not exist (after a bounded refresh)."""
        age = time.monotonic() - self._refreshed_at
        count = self._topics.get(topic)
        if count is not None and age < CACHE_TTL_S:
            return count
        if age >= MISS_REFRESH_INTERVAL_S or self._refreshing is not None:
            try:
                await self._refresh()
            except RestError:
                if count is not None:
                    return count  # broker briefly unreachable: the cached answer is still the best one
                raise
        return self._topics.get(topic)

    async def require_partitions(self, topic: str, missing: Error = Error.TOPIC_NOT_FOUND) -> int:
        count = await self.partitions(topic)
        if count is None:
            raise RestError(missing)
        return count

    async def topic_configs(self, topic: str) -> dict[str, str | None]:
        def fetch() -> dict[str, str | None]:
            resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
            try:
                entries = self._admin.describe_configs([resource])[resource].result(timeout=METADATA_TIMEOUT_S)
            except KafkaException as error:
                if error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise RestError(Error.TOPIC_NOT_FOUND) from None
                raise kafka_error(error.args[0]) from None
            except FutureTimeout:
                raise RestError(Error.KAFKA_RETRIABLE_ERROR, "Timed out describing topic configs.") from None
            return {name: entry.value for name, entry in sorted(entries.items())}

        return await asyncio.to_thread(fetch)
