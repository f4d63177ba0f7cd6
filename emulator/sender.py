"""Delivery of posts to the batch (Kafka REST) and streaming (Kinesis via API Gateway) paths.

Every record gets an outcome: acknowledged, or failed with a reason after bounded retries. Transient failures
(connection errors, timeouts, HTTP 5xx/429, Confluent's retriable per-record codes, Kinesis throttling) are retried
with exponential backoff and jitter; only the records that failed are re-sent. The retry loop is written here
rather than taken from a retry library because it must retry a *subset* of a batch, per record, which generic
retry decorators (tenacity, backoff) do not model.

Every request, first attempt or retry, waits for the shared `AdaptiveLimiter` (emulator/limiter.py) and tells it
how the answer went: throttling answers (429, 503, Kinesis throttling codes, Confluent's retriable codes) shrink
the budget of all requests, not only the delay of the one that was throttled, so the emulator slows down instead
of storming the gateway. `Retry-After` is parsed here with the standard library: httpx does not parse it, and the
one library at hand that does (urllib3) is only an indirect dependency.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from emulator import ledger as ledger_module
from emulator import payloads
from emulator.ledger import Entry, Ledger
from emulator.limiter import AdaptiveLimiter, Answer

# Confluent REST v2 per-record codes: 1 = non-retriable, 2 = retriable; v3-style server errors are retriable too.
# All of them are read as throttling: the proxy or the brokers behind it cannot keep up.
RETRIABLE_KAFKA_CODES = {2, 50002, 50003, 50301, 50302}
# Answers that mean "too much, slow down" rather than "something broke": they cut the shared send budget.
THROTTLING_KINESIS_ERRORS = {
    "ProvisionedThroughputExceededException",
    "ServiceUnavailable",
    "LimitExceededException",
    "ThrottlingException",
}
RETRIABLE_KINESIS_ERRORS = {*THROTTLING_KINESIS_ERRORS, "InternalFailure"}
THROTTLING_STATUS_CODES = {429, 503}
# Our REST proxy marks a delivery error after which the record may be in Kafka (a timeout or purge while in flight)
# with this text and the non-retriable code 1 (services/rest_proxy/errors.py): the record is not re-sent.
POSSIBLY_WRITTEN_MARK = "possibly written"
# Transport errors before the request was completely sent: the service cannot have acted on it, so a retry is safe.
# Any other transport error (a read timeout, a connection closed before the answer) leaves the outcome unknown.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError, httpx.WriteTimeout)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    retriable: bool = False
    reason: str = ""
    throttled: bool = False
    retry_after: float | None = None  # seconds, from the answer's Retry-After header
    possibly_written: bool = False  # the request reached the service and may have been carried out: never re-sent
    where: dict[str, Any] | None = None  # an acknowledged record's {partition, offset} or {shard, sequence}


ACKED = Outcome(ok=True)


def acked(**where: Any) -> Outcome:
    return Outcome(ok=True, where=where)


def retriable(reason: str) -> Outcome:
    return Outcome(ok=False, retriable=True, reason=reason)


def fatal(reason: str) -> Outcome:
    return Outcome(ok=False, retriable=False, reason=reason)


def possibly_written(reason: str) -> Outcome:
    return Outcome(ok=False, reason=f"possibly written: {reason}", possibly_written=True)


def throttling(reason: str, retry_after: float | None = None) -> Outcome:
    return Outcome(ok=False, retriable=True, reason=reason, throttled=True, retry_after=retry_after)


@dataclass
class Stats:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    retries: int = 0
    possibly_written: int = 0  # of `failed`: the outcome is unknown, the record was not re-sent
    failures: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def _body_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("Message") or body.get("error") or body)[:200]
    return str(body)[:200]


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now (delta-seconds or an HTTP date), or None when absent or unreadable."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _kinesis_error_type(response: httpx.Response) -> str:
    """Kinesis's error type (`__type`) in an answer's JSON body, or "" when there is none."""
    try:
        body = response.json()
    except ValueError:
        return ""
    kind = body.get("__type", "") if isinstance(body, dict) else ""
    return str(kind).rsplit("#", 1)[-1]


def _http_failure(response: httpx.Response) -> Outcome | None:
    """Outcome for every record of a request that the server rejected as a whole, or None if it answered 2xx."""
    if response.is_success:
        return None
    reason = f"HTTP {response.status_code}: {_body_message(response)}"
    if response.status_code in THROTTLING_STATUS_CODES or (
        response.status_code in (400, 500) and _kinesis_error_type(response) in THROTTLING_KINESIS_ERRORS
    ):
        # API Gateway passes Kinesis's error body on with its mapped status (400 or 500): Kinesis refused the
        # request (throttled, or could not serve it), so nothing was written and a retry is safe.
        return throttling(reason, retry_after_seconds(response))
    if response.status_code == 408:  # the server gave up reading the request: nothing was carried out
        return retriable(reason)
    if response.status_code >= 500:  # 500/502/504: the service, or the gateway's backend, may have acted
        return possibly_written(reason)
    return fatal(reason)


class Path:
    """One ingestion path: turns rows into requests and responses into per-record outcomes."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, headers: dict[str, str]) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.headers = headers

    async def send(self, table: str, destination: str, rows: Sequence[dict[str, Any]]) -> list[Outcome]:
        raise NotImplementedError


class KafkaRestPath(Path):
    """`POST <base>/topics/<topic>` with Kafka's JSON embedded format; checks each record's `error_code`."""

    async def send(self, table: str, destination: str, rows: Sequence[dict[str, Any]]) -> list[Outcome]:
        response = await self.client.post(
            f"{self.base_url}/topics/{destination}",
            content=payloads.kafka_records_body(rows),
            headers={**self.headers, "Content-Type": payloads.KAFKA_JSON_CONTENT_TYPE},
        )
        if (failure := _http_failure(response)) is not None:
            return [failure] * len(rows)
        try:
            offsets = response.json()["offsets"]
        except (ValueError, KeyError, TypeError):
            return [possibly_written(f"unexpected response body: {response.text[:200]}")] * len(rows)
        if len(offsets) != len(rows):
            return [possibly_written(f"{len(offsets)} offsets for {len(rows)} records")] * len(rows)
        outcomes = []
        for offset in offsets:
            code = offset.get("error_code")
            if code is None:
                outcomes.append(acked(partition=offset.get("partition"), offset=offset.get("offset")))
            elif POSSIBLY_WRITTEN_MARK in str(offset.get("error") or ""):
                outcomes.append(possibly_written(f"error_code {code}: {offset.get('error')}"))
            elif code in RETRIABLE_KAFKA_CODES:
                outcomes.append(throttling(f"error_code {code}: {offset.get('error')}"))
            else:
                outcomes.append(fatal(f"error_code {code}: {offset.get('error')}"))
        return outcomes


class KinesisGatewayPath(Path):
    """`PUT <invoke>/streams/<stream>/record` for one row, `/records` (PutRecords) for several."""

    async def send(self, table: str, destination: str, rows: Sequence[dict[str, Any]]) -> list[Outcome]:
        keys = [payloads.partition_key(table, row) for row in rows]
        headers = {**self.headers, "Content-Type": payloads.STREAM_CONTENT_TYPE}
        if len(rows) == 1:
            body = payloads.stream_record_body(destination, rows[0], keys[0])
            response = await self.client.put(
                f"{self.base_url}/streams/{destination}/record", content=body, headers=headers
            )
        else:
            body = payloads.stream_records_body(rows, keys)
            response = await self.client.put(
                f"{self.base_url}/streams/{destination}/records", content=body, headers=headers
            )
        if (failure := _http_failure(response)) is not None:
            return [failure] * len(rows)
        try:
            document = response.json()
        except ValueError:
            return [possibly_written(f"unexpected response body: {response.text[:200]}")] * len(rows)
        if not isinstance(document, dict):
            return [possibly_written(f"unexpected response body: {response.text[:200]}")] * len(rows)
        if len(rows) == 1:
            if "SequenceNumber" not in document:
                return [possibly_written(f"no SequenceNumber in {str(document)[:200]}")]
            return [acked(shard=document.get("ShardId"), sequence=document["SequenceNumber"])]
        results = document.get("Records") or []
        if len(results) != len(rows):
            reason = f"{len(results)} results for {len(rows)} records: {str(document)[:200]}"
            return [possibly_written(reason)] * len(rows)
        outcomes = []
        for result in results:
            error = result.get("ErrorCode")
            if not error:
                outcomes.append(acked(shard=result.get("ShardId"), sequence=result.get("SequenceNumber")))
            elif error in THROTTLING_KINESIS_ERRORS:
                outcomes.append(throttling(f"{error}: {result.get('ErrorMessage')}"))
            elif error in RETRIABLE_KINESIS_ERRORS:
                outcomes.append(retriable(f"{error}: {result.get('ErrorMessage')}"))
            else:
                outcomes.append(fatal(f"{error}: {result.get('ErrorMessage')}"))
        return outcomes


async def deliver(
    path: Path,
    table: str,
    destination: str,
    rows: Sequence[dict[str, Any]],
    stats: Stats,
    policy: RetryPolicy,
    limiter: AdaptiveLimiter,
    ledger: Ledger | None = None,
) -> None:
    """Send `rows`, re-sending only the records known not to be written, until all are acked or out of attempts.

    Each attempt waits for `limiter`; a retry first waits out its own backoff (or the answer's `Retry-After`). A
    record whose outcome is unknown (`possibly_written`) is never re-sent: it is reported apart, so it lands at most
    once. Every record's final outcome goes to `ledger`.
    """
    pending = list(rows)
    stats.sent += len(rows)
    started = time.monotonic()
    for attempt in range(1, policy.max_attempts + 1):
        outcomes = await _attempt(path, table, destination, pending, limiter)
        retry = []
        for row, outcome in zip(pending, outcomes, strict=True):
            if outcome.ok:
                stats.acked += 1
                _write(ledger, table, destination, row, ledger_module.ACKED, attempt, outcome, started)
            elif outcome.retriable and attempt < policy.max_attempts:
                retry.append(row)
            else:
                if outcome.possibly_written:
                    stats.possibly_written += 1
                stats.failed += 1
                stats.failures.append(
                    {
                        "table": table,
                        "destination": destination,
                        "attempts": attempt,
                        "reason": outcome.reason,
                        "possibly_written": outcome.possibly_written,
                        "row": row,
                    }
                )
                kind = ledger_module.POSSIBLY_WRITTEN if outcome.possibly_written else ledger_module.FAILED
                _write(ledger, table, destination, row, kind, attempt, outcome, started)
        if not retry:
            return
        stats.retries += len(retry)
        pending = retry
        await asyncio.sleep(max(policy.delay(attempt), min(_retry_after(outcomes) or 0.0, limiter.max_pause)))


def _write(
    ledger: Ledger | None,
    table: str,
    destination: str,
    row: dict[str, Any],
    kind: str,
    attempts: int,
    outcome: Outcome,
    started: float,
) -> None:
    if ledger is not None:
        key = payloads.row_key(table, row)
        ms = (time.monotonic() - started) * 1000
        entry = Entry(table, key, destination, kind, attempts, outcome.where, outcome.reason, ms)
        ledger.record(entry)


async def _attempt(
    path: Path, table: str, destination: str, rows: Sequence[dict[str, Any]], limiter: AdaptiveLimiter
) -> list[Outcome]:
    """One request within the shared budget, whose answer then adjusts the budget."""
    permit = await limiter.acquire()
    answer, retry_after = Answer.NEUTRAL, None
    try:
        try:
            outcomes = await path.send(table, destination, rows)
        except NOT_SENT_ERRORS as error:
            return [retriable(f"{type(error).__name__}: {error}")] * len(rows)
        except httpx.TransportError as error:  # sent, but no complete answer: the outcome is unknown
            return [possibly_written(f"{type(error).__name__}: {error}")] * len(rows)
        except Exception as error:  # an answer the path cannot read: failed (maybe written), never dropped
            return [possibly_written(f"unreadable answer: {type(error).__name__}: {error}")] * len(rows)
        if any(o.throttled for o in outcomes):
            answer, retry_after = Answer.THROTTLED, _retry_after(outcomes)
        elif any(o.ok for o in outcomes):
            answer = Answer.SUCCESS
        return outcomes
    finally:
        limiter.release(permit, answer, retry_after)


def _retry_after(outcomes: Sequence[Outcome]) -> float | None:
    return max((o.retry_after for o in outcomes if o.retry_after is not None), default=None)


def failure_lines(stats: Stats) -> list[str]:
    return [json.dumps(failure, default=str) for failure in stats.failures]
