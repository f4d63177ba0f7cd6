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

from emulator import payloads
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


@dataclass(frozen=True)
class Outcome:
    ok: bool
    retriable: bool = False
    reason: str = ""
    throttled: bool = False
    retry_after: float | None = None  # seconds, from the answer's Retry-After header


ACKED = Outcome(ok=True)


def retriable(reason: str) -> Outcome:
    return Outcome(ok=False, retriable=True, reason=reason)


def fatal(reason: str) -> Outcome:
    return Outcome(ok=False, retriable=False, reason=reason)


def throttling(reason: str, retry_after: float | None = None) -> Outcome:
    return Outcome(ok=False, retriable=True, reason=reason, throttled=True, retry_after=retry_after)


@dataclass
class Stats:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    retries: int = 0
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


def _http_failure(response: httpx.Response) -> Outcome | None:
    """Outcome for every record of a request that the server rejected as a whole, or None if it answered 2xx."""
    if response.is_success:
        return None
    reason = f"HTTP {response.status_code}: {_body_message(response)}"
    if response.status_code in THROTTLING_STATUS_CODES or (
        response.status_code == 400 and "ProvisionedThroughputExceeded" in response.text
    ):
        return throttling(reason, retry_after_seconds(response))
    if response.status_code >= 500 or response.status_code == 408:
        return retriable(reason)
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
            return [retriable(f"unexpected response body: {response.text[:200]}")] * len(rows)
        if len(offsets) != len(rows):
            return [retriable(f"{len(offsets)} offsets for {len(rows)} records")] * len(rows)
        outcomes = []
        for offset in offsets:
            code = offset.get("error_code")
            if code is None:
                outcomes.append(ACKED)
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
            return [retriable(f"unexpected response body: {response.text[:200]}")] * len(rows)
        if len(rows) == 1:
            return [ACKED if "SequenceNumber" in document else retriable(f"no SequenceNumber in {document}")]
        results = document.get("Records") or []
        if len(results) != len(rows):
            return [retriable(f"{len(results)} results for {len(rows)} records: {str(document)[:200]}")] * len(rows)
        outcomes = []
        for result in results:
            error = result.get("ErrorCode")
            if not error:
                outcomes.append(ACKED)
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
) -> None:
    """Send `rows`, re-sending only the records that failed transiently, until all are acked or out of attempts.

    Each attempt waits for `limiter`; a retry first waits out its own backoff (or the answer's `Retry-After`).
    """
    pending = list(rows)
    stats.sent += len(rows)
    for attempt in range(1, policy.max_attempts + 1):
        outcomes = await _attempt(path, table, destination, pending, limiter)
        retry = []
        for row, outcome in zip(pending, outcomes, strict=True):
            if outcome.ok:
                stats.acked += 1
            elif outcome.retriable and attempt < policy.max_attempts:
                retry.append(row)
            else:
                stats.failed += 1
                stats.failures.append(
                    {
                        "table": table,
                        "destination": destination,
                        "attempts": attempt,
                        "reason": outcome.reason,
                        "row": row,
                    }
                )
        if not retry:
            return
        stats.retries += len(retry)
        pending = retry
        await asyncio.sleep(max(policy.delay(attempt), min(_retry_after(outcomes) or 0.0, limiter.max_pause)))


async def _attempt(
    path: Path, table: str, destination: str, rows: Sequence[dict[str, Any]], limiter: AdaptiveLimiter
) -> list[Outcome]:
    """One request within the shared budget, whose answer then adjusts the budget."""
    permit = await limiter.acquire()
    answer, retry_after = Answer.NEUTRAL, None
    try:
        try:
            outcomes = await path.send(table, destination, rows)
        except httpx.TransportError as error:
            return [retriable(f"{type(error).__name__}: {error}")] * len(rows)
        except Exception as error:  # an answer the path cannot read: failed (maybe written), never dropped
            return [fatal(f"outcome unknown, unreadable answer: {type(error).__name__}: {error}")] * len(rows)
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
