"""One shared idempotent producer whose delivery reports resolve asyncio futures.

librdkafka delivers reports through `poll()`, which runs the delivery callbacks in the calling thread. The proxy
calls `poll(0)` from a task on the event loop itself: every `ACTIVE_POLL_INTERVAL_S` while any request waits for
acknowledgements, and only every `IDLE_POLL_INTERVAL_S` (for error callbacks) otherwise; a new request wakes the
task at once. Callbacks thus run on the loop thread and complete futures directly: no second Python thread, no
GIL hand-offs and no `call_soon_threadsafe` per request. (A poll thread plus the full FastAPI stack measured
~620 us of proxy CPU per single-record request; this design plus fast_path.py, 150-220 us.) librdkafka's own C
threads still do the batching and network I/O.

A request answers only when each of its records is acknowledged by the broker (acks=all) or definitely failed.
A fatal producer error (idempotence can raise one) replaces the producer; records still queued in the old one
fail with a retriable per-record error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import NamedTuple

from confluent_kafka import KafkaError, KafkaException, Producer

log = logging.getLogger("rest_proxy.producer")

ACTIVE_POLL_INTERVAL_S = 0.001  # libuv timers have millisecond resolution; shorter would busy-loop
IDLE_POLL_INTERVAL_S = 0.1
QUEUE_FULL_WAIT_S = 0.005
UNASSIGNED_PARTITION = -1  # librdkafka's RD_KAFKA_PARTITION_UA: let the partitioner choose


class OutgoingRecord(NamedTuple):
    # NamedTuples, not dataclasses: built once per record on the hot path, where `_make` is a C-level tuple.__new__
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: list[tuple[str, bytes | None]] | None = None
    timestamp_ms: int = 0


class Delivery(NamedTuple):
    partition: int | None
    offset: int | None
    timestamp_ms: int | None
    error: KafkaError | None


_delivery = Delivery._make


class ValuesSent(NamedTuple):
    """What `send_values` returns: every record's offset in one partition, or per-record deliveries on a failure."""

    partition: int
    offsets: list[int] | None  # in record order, when every record was acknowledged
    deliveries: list[Delivery] | None  # instead, when any record failed


class _NotQueued:
    """Stands in for a librdkafka Message when a record failed before it was queued (only `value()` is read)."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes | None) -> None:
        self._value = value

    def value(self) -> bytes | None:
        return self._value


class _PendingRequest:
    """Collects the delivery reports of one request; the last one completes its future."""

    __slots__ = ("deliveries", "future", "remaining")

    def __init__(self, future: asyncio.Future, count: int) -> None:
        self.future = future
        self.deliveries: list[Delivery | None] = [None] * count
        self.remaining = count

    def report(self, index: int, error: KafkaError | None, message) -> None:
        if error is None:
            timestamp = message.timestamp()[1]
            self.deliveries[index] = _delivery(
                (message.partition(), message.offset(), timestamp if timestamp > 0 else None, None)
            )
        else:
            self.deliveries[index] = _delivery((None, None, None, error))
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(self.deliveries)


class _OnePartitionRequest:
    """The delivery reports of a request whose records were all produced to one partition by one produce_batch call.

    One bound method is every record's delivery callback, instead of a callback object per record. Reports are not
    matched to records by arrival order, which librdkafka does not promise when a queued record times out before
    an in-flight one settles:
    - all acknowledged (the common case): the offsets, sorted, are the records' offsets in order, because an
      idempotent producer writes a partition's records in the order they were produced;
    - any failure: each report is matched to its record by payload (identical payloads are interchangeable, and
      the acknowledged ones are given the earlier of them).
    """

    __slots__ = ("acknowledged", "failed", "future", "remaining")

    def __init__(self, future: asyncio.Future, count: int) -> None:
        self.future = future
        self.acknowledged: list = []
        self.failed: list[tuple[KafkaError, bytes | None]] = []
        self.remaining = count

    def report(self, error: KafkaError | None, message) -> None:
        if error is None:
            self.acknowledged.append(message)
        else:
            self.failed.append((error, message.value()))
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(None)

    def result(self, partition: int, values: list[bytes]) -> ValuesSent:
        if not self.failed:
            return ValuesSent(partition, sorted([message.offset() for message in self.acknowledged]), None)
        slots: dict[bytes | None, list[int]] = {}
        for index, value in enumerate(values):
            slots.setdefault(value, []).append(index)
        deliveries: list[Delivery | None] = [None] * len(values)
        by_offset = sorted(self.acknowledged, key=lambda message: message.offset())
        for message in by_offset:
            timestamp = message.timestamp()[1]
            index = slots[message.value()].pop(0)
            deliveries[index] = _delivery((partition, message.offset(), timestamp if timestamp > 0 else None, None))
        for error, value in self.failed:
            deliveries[slots[value].pop(0)] = _delivery((None, None, None, error))
        return ValuesSent(partition, None, deliveries)


class _Callback:
    """A delivery callback bound to one record of a pending request (cheaper than functools.partial here)."""

    __slots__ = ("index", "pending")

    def __init__(self, pending: _PendingRequest, index: int) -> None:
        self.pending = pending
        self.index = index

    def __call__(self, error: KafkaError | None, message) -> None:
        self.pending.report(self.index, error, message)


class SharedProducer:
    def __init__(self, config: dict[str, object]) -> None:
        self._config = {**config, "error_cb": self._on_error}
        self._producer = Producer(self._config)
        self._in_flight = 0  # records produced and not yet reported
        self._wakeup: asyncio.Event | None = None
        self._poller: asyncio.Task | None = None
        self._fatal = False
        self._closing = False
        self._last_error_log = 0.0
        self._next_partition = 0

    @property
    def client(self) -> Producer:
        return self._producer

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._poller = asyncio.get_running_loop().create_task(self._poll_forever(), name="producer-poll")

    async def close(self, timeout: float = 10.0) -> int:
        """Deliver what is outstanding (answering the waiting requests), then stop polling."""
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._closing = True
        if self._poller is not None:
            self._wakeup.set()
            await self._poller
        return len(self._producer)

    async def send(self, topic: str, records: Sequence[OutgoingRecord]) -> list[Delivery]:
        """Produce `records` to `topic` and return one Delivery per record, in order, once all are settled."""
        pending = _PendingRequest(asyncio.get_running_loop().create_future(), len(records))
        self._in_flight += len(records)
        if self._wakeup is not None and not self._wakeup.is_set():
            self._wakeup.set()
        try:
            batches: dict[int, list[dict[str, object]]] = {}
            for index, record in enumerate(records):
                callback = _Callback(pending, index)
                if record.headers or record.timestamp_ms:
                    await self._produce_one(topic, record, callback)
                    continue
                message: dict[str, object] = {"value": record.value, "callback": callback}
                if record.key is not None:
                    message["key"] = record.key
                partition = UNASSIGNED_PARTITION if record.partition is None else record.partition
                batches.setdefault(partition, []).append(message)
            for partition, messages in batches.items():
                await self._produce_batch(topic, partition, messages)
            return await pending.future
        finally:
            self._in_flight -= len(records)

    async def send_values(self, topic: str, partition_count: int, values: list[bytes]) -> ValuesSent:
        """Produce keyless `values` to one partition of `topic`, chosen in turn per request; settle them all.

        The hot path of v2 produce (records with a value and nothing else). One partition per request is what the
        Java producer behind Confluent's proxy does with keyless records too (its sticky partitioner fills one
        partition's batch at a time); librdkafka's partitioner would scatter a request's records over partitions.
        """
        partition = self._next_partition % partition_count
        self._next_partition = partition + 1
        pending = _OnePartitionRequest(asyncio.get_running_loop().create_future(), len(values))
        self._in_flight += len(values)
        if self._wakeup is not None and not self._wakeup.is_set():
            self._wakeup.set()
        try:
            await self._produce_batch(topic, partition, [{"value": value} for value in values], pending.report)
            await pending.future
            return pending.result(partition, values)
        finally:
            self._in_flight -= len(values)

    async def _produce_batch(
        self, topic: str, partition: int, messages: list[dict[str, object]], on_delivery=None
    ) -> None:
        """librdkafka's batch produce: about half the CPU per record of single produce() calls (measured).

        It takes one partition per call (a per-message partition is not honoured), hence the grouping in send().
        Each message's own "callback", else `on_delivery`, gets its delivery report, or the error that kept it
        from being queued.
        """
        while messages:
            try:
                if self._producer.produce_batch(topic, messages, partition, on_delivery) == len(messages):
                    return
            except BufferError:
                self._producer.poll(0)
                await asyncio.sleep(QUEUE_FULL_WAIT_S)
                continue
            except KafkaException as error:
                for message in messages:
                    message.get("callback", on_delivery)(error.args[0], _NotQueued(message.get("value")))
                return
            retry = []
            for message in messages:
                error = message.pop("_error", None)
                if error is None:
                    continue
                if error.code() == KafkaError._QUEUE_FULL:
                    retry.append(message)
                else:
                    message.get("callback", on_delivery)(error, _NotQueued(message.get("value")))
            if retry:
                # Local queue full: let librdkafka drain it instead of failing the records.
                self._producer.poll(0)
                await asyncio.sleep(QUEUE_FULL_WAIT_S)
            messages = retry

    async def _produce_one(self, topic: str, record: OutgoingRecord, callback: _Callback) -> None:
        """Records with headers or an explicit timestamp (v3), which batch produce does not support."""
        partition = UNASSIGNED_PARTITION if record.partition is None else record.partition
        while True:
            try:
                self._producer.produce(
                    topic,
                    record.value,
                    record.key,
                    partition,
                    on_delivery=callback,
                    timestamp=record.timestamp_ms,
                    headers=record.headers,
                )
                return
            except BufferError:
                self._producer.poll(0)
                await asyncio.sleep(QUEUE_FULL_WAIT_S)
            except KafkaException as error:
                callback(error.args[0], None)
                return

    async def _poll_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            try:
                self._producer.poll(0)
            except Exception:
                log.exception("delivery callback failed")
            if self._fatal:
                self._replace_producer()
            if self._in_flight:
                await asyncio.sleep(ACTIVE_POLL_INTERVAL_S)
            else:
                # Idle: sleep until a request arrives (send() sets the event) or the idle interval passes.
                # A timer instead of asyncio.wait_for, which can swallow a cancellation on Python 3.11.
                self._wakeup.clear()
                timer = loop.call_later(IDLE_POLL_INTERVAL_S, self._wakeup.set)
                await self._wakeup.wait()
                timer.cancel()

    def _replace_producer(self) -> None:
        self._fatal = False
        old = self._producer
        self._producer = Producer(self._config)
        log.error("fatal producer error: replaced the producer; records still queued fail as retriable")
        old.purge()
        old.flush(1)  # runs the purged records' callbacks, which answer their requests

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = True
        now = time.monotonic()
        if now - self._last_error_log > 5 or error.fatal():
            self._last_error_log = now
            log.warning("producer: %s", error.str())
