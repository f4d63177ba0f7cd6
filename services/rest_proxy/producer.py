"""One shared idempotent producer whose delivery reports resolve asyncio futures.

The producer is librdkafka driven from Rust (`rest_proxy_produce.Producer`,
services/rest_proxy/native/src/producer.rs): a request's records are queued and their delivery reports collected
there, without a Python object per record, and Python hears once per request, when all of its records are settled
(why not confluent-kafka's producer: docs/design/rest_proxy.md).

librdkafka serves reports through `poll()` in the calling thread. The proxy calls it from a task on the event loop
itself: every `ACTIVE_POLL_INTERVAL_S` while any request waits for acknowledgements, and only every
`IDLE_POLL_INTERVAL_S` (for error callbacks) otherwise; a new request wakes the task at once. So futures are
completed on the loop thread: no second Python thread, no GIL hand-offs and no `call_soon_threadsafe` per request.
librdkafka's own C threads still do the batching and network I/O.

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

from confluent_kafka import KafkaError
from rest_proxy_produce import PlainValues
from rest_proxy_produce import Producer as NativeProducer

from services.rest_proxy.errors import possibly_written_error

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


def _record_error(code: int, possibly_persisted: bool = False) -> KafkaError:
    """A failed record's librdkafka code as confluent-kafka's KafkaError (the codes are librdkafka's in both).

    _FATAL: the record met a producer that had failed for good, which is being replaced; a retry goes to the new
    one, so it is retriable (v2 error_code 2), as the records purged from the old producer's queue are.
    `possibly_persisted` (librdkafka's message status): the record was sent and may be in the log; the error says so
    and is never retriable, because a retry could write it twice (errors.possibly_written_error).
    """
    if possibly_persisted:
        return possibly_written_error(code)
    return KafkaError(code, retriable=code == KafkaError._FATAL)


def _deliveries(entries: list[tuple]) -> list[Delivery]:
    """The native producer's per-record results -> Delivery. A failed record's entry is (None, None, None, code,
    possibly persisted)."""
    return [
        _delivery(entry) if entry[3] is None else _delivery((None, None, None, _record_error(*entry[3:5])))
        for entry in entries
    ]


LOG_LEVELS = {  # librdkafka logs with syslog levels: emergency, alert, critical, error, warning, notice, info, debug
    0: logging.CRITICAL,
    1: logging.CRITICAL,
    2: logging.CRITICAL,
    3: logging.ERROR,
    4: logging.WARNING,
    5: logging.INFO,
    6: logging.INFO,
    7: logging.DEBUG,
}


class _ClientEvents:
    """librdkafka's error and log callbacks. A separate object from SharedProducer, so that the native producer,
    which holds these callbacks, does not hold the SharedProducer that holds it (a cycle Python cannot collect)."""

    def __init__(self) -> None:
        self.fatal = False
        self._last_logged = 0.0

    def on_error(self, code: int, reason: str, fatal: bool) -> None:
        """`fatal` comes once per producer (rest_proxy_produce reports it); other errors come twice each, and often."""
        if fatal:
            self.fatal = True
        now = time.monotonic()
        if fatal or now - self._last_logged > 5:
            self._last_logged = now
            log.warning("producer: %s (%s)", reason, KafkaError(code).name())

    @staticmethod
    def on_log(level: int, facility: str, message: str) -> None:
        log.log(LOG_LEVELS.get(level, logging.DEBUG), "librdkafka %s: %s", facility, message)


class SharedProducer:
    def __init__(self, config: dict[str, object]) -> None:
        self._config = {name: value for name, value in config.items() if name not in ("oauth_cb", "error_cb")}
        self._oauth_cb = config.get("oauth_cb")
        self._events = _ClientEvents()
        self._producer = self._create()
        self._retired: list[NativeProducer] = []  # replaced after a fatal error, polled while anything refers to them
        self._waiting: dict[int, tuple[asyncio.Future, NativeProducer]] = {}  # request id -> (settled, its producer)
        self._in_flight = 0  # records produced and not yet reported
        self._wakeup: asyncio.Event | None = None
        self._poller: asyncio.Task | None = None
        self._closing = False
        self._next_partition = 0

    def _create(self) -> NativeProducer:
        return NativeProducer(self._config, self._events.on_error, self._oauth_cb, self._events.on_log)

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
        producer = self._producer
        count = len(records)
        request = producer.open_request(count)
        settled = self._expect(producer, request, count)
        try:
            for index, record in enumerate(records):
                partition = UNASSIGNED_PARTITION if record.partition is None else record.partition
                while not producer.produce(
                    request, index, topic, partition, record.key, record.value, record.headers, record.timestamp_ms
                ):
                    await self._queue_full(producer)
            await settled
            return _deliveries(producer.take(request, True))
        finally:
            self._forget(producer, request, count)

    async def send_values(self, topic: str, partition_count: int, values: PlainValues) -> bytes | list[Delivery]:
        """Produce keyless `values` to one partition of `topic`, chosen in turn per request; settle them all.

        Returns the v2 produce response itself (formatted by rest_proxy_produce) when every record was
        acknowledged, else one Delivery per record. The hot path of v2 produce (records with a value and nothing
        else). One partition per request is what the Java producer behind Confluent's proxy does with keyless
        records too (its sticky partitioner fills one partition's batch at a time); librdkafka's partitioner would
        scatter a request's records over partitions.
        """
        partition = self._next_partition % partition_count
        self._next_partition = partition + 1
        producer = self._producer
        count = len(values)
        request, queued = producer.produce_values(topic, partition, values)
        settled = self._expect(producer, request, count)
        try:
            while not queued:
                await self._queue_full(producer)
                queued = producer.resume(request)
            await settled
            result = producer.take(request)
        finally:
            self._forget(producer, request, count)
        return result if type(result) is bytes else _deliveries(result)

    def _expect(self, producer: NativeProducer, request: int, count: int) -> asyncio.Future:
        """Wait for `request` from now on: the future the poller completes when its `count` records are settled."""
        future = asyncio.get_running_loop().create_future()
        self._waiting[request] = (future, producer)
        self._in_flight += count
        if self._wakeup is not None and not self._wakeup.is_set():
            self._wakeup.set()
        return future

    def _forget(self, producer: NativeProducer, request: int, count: int) -> None:
        """On the way out of a send, however it ends: stop waiting and drop the request from the producer."""
        self._in_flight -= count
        self._waiting.pop(request, None)
        producer.discard(request)  # a no-op once taken; else (cancelled, failed) its entry goes

    async def _queue_full(self, producer: NativeProducer) -> None:
        """librdkafka's local queue is full: let it drain instead of failing the records."""
        self._serve(producer)
        await asyncio.sleep(QUEUE_FULL_WAIT_S)

    def _serve(self, producer: NativeProducer) -> None:
        """Poll one producer and wake the requests it settled."""
        for request in producer.poll():
            waiting = self._waiting.pop(request, None)
            if waiting is not None and not waiting[0].done():
                waiting[0].set_result(None)

    async def _poll_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            try:
                self._serve(self._producer)
                if self._retired:
                    self._serve_retired()
                if self._events.fatal:
                    self._replace_producer()
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # also pyo3's PanicException: polling must go on, or no request is answered
                log.exception("polling the producer failed")
            if self._in_flight:
                await asyncio.sleep(ACTIVE_POLL_INTERVAL_S)
            else:
                # Idle: sleep until a request arrives (send() sets the event) or the idle interval passes.
                # A timer instead of asyncio.wait_for, which can swallow a cancellation on Python 3.11.
                self._wakeup.clear()
                timer = loop.call_later(IDLE_POLL_INTERVAL_S, self._wakeup.set)
                await self._wakeup.wait()
                timer.cancel()

    def _serve_retired(self) -> None:
        """Poll the replaced producers; keep each while records are in it or a waiting request still uses it."""
        for retired in self._retired:
            self._serve(retired)
        in_use = {id(producer) for _, producer in self._waiting.values()}
        self._retired = [retired for retired in self._retired if len(retired) or id(retired) in in_use]

    def _replace_producer(self) -> None:
        old = self._producer
        self._producer = self._create()
        self._events.fatal = False
        log.error(
            "fatal producer error %s: replaced the producer; its queued records fail as retriable", old.fatal_error()
        )
        old.purge()  # the queued records fail now (reports served by the next polls); those in flight keep their outcome
        self._retired.append(old)
