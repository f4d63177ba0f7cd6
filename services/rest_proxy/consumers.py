"""v2 consumer instances: one librdkafka consumer per (group, instance), driven from worker threads.

Confluent's consumer API is stateful: an instance lives in the proxy process that created it, keeps its fetch
position between requests, and expires after `INSTANCE_TIMEOUT_S` without use (Confluent's
consumer.instance.timeout.ms default). Every call on an instance runs in a thread of the consumers' own executor
(REST_PROXY_CONSUMER_THREADS threads) under the instance's lock, so slow polls never block the event loop, two
requests never drive one consumer at once, and long polls (up to 30 s each) never take the default executor's threads
that metadata requests, and so produce and readiness, need: past the executor's size, consumer calls wait their turn. Records fetched beyond a
request's `max_bytes` stay buffered for the next request instead of being skipped.

Only records handed to the client count as consumed: librdkafka's automatic offset store is off and each record's
offset is stored when a response includes it, so a commit (explicit, or auto-commit) never moves past records still
buffered. A record a json-format consumer cannot decode stays at the head of the buffer: the records before it are
answered, and the next request gets Confluent's error naming its topic, partition and offset, so nothing is lost or
skipped silently (a binary-format consumer of the same group can read it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from services.rest_proxy.errors import Error, RestError, kafka_error
from services.rest_proxy.models import V2CommitOffsetsRequest, V2CreateConsumerRequest, V2Subscription

log = logging.getLogger("rest_proxy.consumers")

INSTANCE_TIMEOUT_S = 300.0
DEFAULT_REQUEST_TIMEOUT_MS = 1000  # Confluent's consumer.request.timeout.ms default
MAX_REQUEST_TIMEOUT_MS = 30_000
MAX_RECORDS_PER_POLL = 500
MAX_INSTANCES = 64  # each librdkafka consumer owns several threads and a few broker connections
EVICTABLE_AFTER_S = 30.0  # at the cap, an instance idle this long makes room for a new one
TOPIC_NAME = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")
UNKNOWN_PARTITION_ERRORS = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC}
)
# librdkafka treats a blank group.id as none and confluent-kafka then aborts the process (a C assert); control
# characters have no business in a group id either.
GROUP_NAME = re.compile(r"^(?=.*\S)[^\x00-\x1f\x7f]{1,255}$")
# Errors inside a fetched batch that mean "nothing to return yet", not a failed request.
BENIGN_FETCH_ERRORS = frozenset(
    {KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC}
)


@dataclass
class ConsumerInstance:
    group: str
    name: str
    format: str
    consumer: Consumer
    request_timeout_ms: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    buffered: deque = field(default_factory=deque)
    subscription: list[str] = field(default_factory=list)
    last_used: float = field(default_factory=time.monotonic)
    closed: bool = False


class NotJson(ValueError):
    """A record's key or value that a json-format consumer cannot decode."""


def _decode(fmt: str, data: bytes | None) -> object:
    if data is None:
        return None
    if fmt == "json":
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise NotJson from None
    return base64.b64encode(data).decode()


def _record(fmt: str, message) -> dict[str, object]:
    return {
        "topic": message.topic(),
        "key": _decode(fmt, message.key()),
        "value": _decode(fmt, message.value()),
        "partition": message.partition(),
        "offset": message.offset(),
    }


def _size(message) -> int:
    return len(message.key() or b"") + len(message.value() or b"")


class ConsumerManager:
    def __init__(self, base_config: dict[str, object], threads: int = 4) -> None:
        self._base_config = base_config
        self._instances: dict[tuple[str, str], ConsumerInstance] = {}
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rest-consumer")

    async def _in_thread(self, function, *args):
        """`function(*args)` on the consumers' executor, never on the event loop's default one."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def create(self, group: str, request: V2CreateConsumerRequest) -> ConsumerInstance:
        if not GROUP_NAME.match(group):
            raise RestError(Error.INVALID_CONSUMER_CONFIG, "group must be 1..255 printable characters, not all blank")
        name = request.name or request.id or f"rest-consumer-{uuid.uuid4()}"
        if (group, name) in self._instances:
            raise RestError(Error.CONSUMER_ALREADY_EXISTS)
        if len(self._instances) >= MAX_INSTANCES and not self._evict_one_idle():
            raise RestError(Error.TOO_MANY_CONSUMERS, limit=MAX_INSTANCES)
        if request.format not in ("binary", "json"):
            raise RestError(Error.INVALID_CONSUMER_CONFIG, f"format {request.format} needs a Schema Registry")
        reset = {"smallest": "earliest", "largest": "latest"}.get(request.auto_offset_reset or "")
        config = {
            **self._base_config,
            "group.id": group,
            "client.id": f"rest-proxy-{name}",
            "enable.auto.commit": request.auto_commit_enable == "true",
            "auto.offset.reset": reset or request.auto_offset_reset or "latest",
            "enable.partition.eof": False,
            "enable.auto.offset.store": False,  # stored per record handed out: see the module docstring
        }
        if request.fetch_min_bytes is not None and request.fetch_min_bytes > 0:
            config["fetch.min.bytes"] = request.fetch_min_bytes
        try:
            consumer = Consumer(config)
        except KafkaException as error:
            raise RestError(Error.INVALID_CONSUMER_CONFIG, error.args[0].str()) from None
        instance = ConsumerInstance(
            group, name, request.format, consumer, request.request_timeout_ms or DEFAULT_REQUEST_TIMEOUT_MS
        )
        self._instances[(group, name)] = instance
        return instance

    def _evict_one_idle(self) -> bool:
        """At the cap, make room by closing the longest-idle instance, if it has been idle for a while."""
        key, instance = min(self._instances.items(), key=lambda item: item[1].last_used)
        if time.monotonic() - instance.last_used < EVICTABLE_AFTER_S:
            return False
        del self._instances[key]
        log.info("consumer %s/%s evicted (instance cap %d reached)", instance.group, instance.name, MAX_INSTANCES)
        threading.Thread(target=self._close, args=(instance,), daemon=True).start()
        return True

    def get(self, group: str, name: str) -> ConsumerInstance:
        instance = self._instances.get((group, name))
        if instance is None:
            raise RestError(Error.CONSUMER_INSTANCE_NOT_FOUND)
        instance.last_used = time.monotonic()
        return instance

    async def delete(self, group: str, name: str) -> None:
        instance = self.get(group, name)
        self._instances.pop((group, name), None)
        await self._in_thread(self._close, instance)

    @staticmethod
    def _close(instance: ConsumerInstance) -> None:
        with instance.lock:
            if not instance.closed:
                instance.closed = True
                with contextlib.suppress(KafkaException, RuntimeError):
                    instance.consumer.close()

    async def expire_idle(self) -> int:
        now = time.monotonic()
        idle = [key for key, inst in self._instances.items() if now - inst.last_used > INSTANCE_TIMEOUT_S]
        for key in idle:
            instance = self._instances.pop(key)
            log.info("consumer %s/%s expired after %.0f s idle", instance.group, instance.name, INSTANCE_TIMEOUT_S)
            await self._in_thread(self._close, instance)
        return len(idle)

    async def close_all(self) -> None:
        instances, self._instances = list(self._instances.values()), {}
        for instance in instances:
            await self._in_thread(self._close, instance)
        self._executor.shutdown(wait=False)

    # --- operations (each runs in a worker thread under the instance lock) --------------------------------------
    async def _run(self, instance: ConsumerInstance, operation):
        def locked():
            with instance.lock:
                if instance.closed:
                    raise RestError(Error.CONSUMER_INSTANCE_NOT_FOUND)
                try:
                    return operation()
                except KafkaException as error:
                    raise kafka_error(error.args[0]) from None

        return await self._in_thread(locked)

    async def subscribe(self, instance: ConsumerInstance, request: V2Subscription) -> None:
        if (request.topics is None) == (request.topic_pattern is None):
            raise RestError(
                Error.ILLEGAL_STATE, "Subscription to topics, partitions and pattern are mutually exclusive."
            )
        if request.topic_pattern is not None:
            try:
                re.compile(request.topic_pattern)
            except re.error as error:
                raise RestError(Error.UNPROCESSABLE, f"topic_pattern is not a valid regex: {error}") from None
            topics = ["^" + request.topic_pattern.removeprefix("^")]
        else:
            topics = list(request.topics)
            bad = [t for t in topics if not TOPIC_NAME.match(t)]
            if bad or not topics:
                raise RestError(Error.UNPROCESSABLE, f"topics must be 1..249 of [A-Za-z0-9._-]: {bad or topics}")

        def subscribe() -> None:
            try:
                instance.consumer.subscribe(topics)
            except KafkaException as error:
                if error.args[0].code() == KafkaError._INVALID_ARG:  # librdkafka's regex dialect refused it
                    raise RestError(
                        Error.UNPROCESSABLE, f"topic_pattern not supported: {error.args[0].str()}"
                    ) from None
                raise
            instance.subscription = topics
            instance.buffered.clear()

        await self._run(instance, subscribe)

    async def unsubscribe(self, instance: ConsumerInstance) -> None:
        def unsubscribe() -> None:
            instance.consumer.unsubscribe()
            instance.subscription = []
            instance.buffered.clear()

        await self._run(instance, unsubscribe)

    async def records(self, instance: ConsumerInstance, timeout_ms: int, max_bytes: int) -> list[dict[str, object]]:
        if timeout_ms < 0:
            timeout_ms = instance.request_timeout_ms
        timeout_s = min(timeout_ms, MAX_REQUEST_TIMEOUT_MS) / 1000

        def fetch() -> list[dict[str, object]]:
            if not instance.buffered and instance.subscription:
                for message in instance.consumer.consume(MAX_RECORDS_PER_POLL, timeout_s):
                    error = message.error()
                    if error is None:
                        instance.buffered.append(message)
                    elif error.code() not in BENIGN_FETCH_ERRORS:
                        raise KafkaException(error)
            out, total = [], 0
            while instance.buffered:
                message = instance.buffered[0]
                size = _size(message)
                if out and max_bytes > 0 and total + size > max_bytes:
                    break
                try:
                    record = _record(instance.format, message)
                except NotJson:
                    if out:
                        break  # answer what came before it; the next request reports it
                    raise RestError(
                        Error.KAFKA_ERROR,
                        f"record is not valid JSON for a json-format consumer: {message.topic()} partition "
                        f"{message.partition()} offset {message.offset()} (kept; a binary-format consumer reads it)",
                    ) from None
                instance.buffered.popleft()
                instance.consumer.store_offsets(message=message)
                total += size
                out.append(record)
            return out

        return await self._run(instance, fetch)

    async def commit(self, instance: ConsumerInstance, request: V2CommitOffsetsRequest) -> list[dict[str, object]]:
        def commit() -> list[dict[str, object]]:
            try:
                if request.offsets:
                    partitions = [TopicPartition(o.topic, o.partition, o.offset) for o in request.offsets]
                    committed = instance.consumer.commit(offsets=partitions, asynchronous=False)
                else:
                    committed = instance.consumer.commit(asynchronous=False)
            except KafkaException as error:
                code = error.args[0].code()
                if code == KafkaError._NO_OFFSET:
                    return []  # nothing consumed since the last commit
                if code in UNKNOWN_PARTITION_ERRORS:
                    raise RestError(Error.PARTITION_NOT_FOUND) from None
                raise
            for tp in committed or []:
                if tp.error is not None:
                    if tp.error.code() in UNKNOWN_PARTITION_ERRORS:
                        raise RestError(Error.PARTITION_NOT_FOUND)
                    raise KafkaException(tp.error)
            return [
                {"topic": tp.topic, "partition": tp.partition, "consumed": tp.offset, "committed": tp.offset}
                for tp in committed or []
            ]

        return await self._run(instance, commit)
