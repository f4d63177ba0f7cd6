"""Delivery of posts to the batch (Kafka REST) and streaming (Kinesis via API Gateway) paths.

Every record gets an outcome: acknowledged, or failed with a reason after bounded retries. Transient failures
(connection errors, timeouts, HTTP 5xx/429, Confluent's retriable per-record codes, Kinesis throttling) are retried
with exponential backoff and jitter; only the records that failed are re-sent. The retry loop is written here
rather than taken from a retry library because it must retry a *subset* of a batch, per record, which generic
retry decorators (tenacity, backoff) do not model.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from emulator import payloads

# Confluent REST v2 per-record codes: 1 = non-retriable, 2 = retriable; v3-style server errors are retriable too.
RETRIABLE_KAFKA_CODES = {2, 50002, 50003, 50301, 50302}
RETRIABLE_KINESIS_ERRORS = {
    "ProvisionedThroughputExceededException",
    "InternalFailure",
    "ServiceUnavailable",
    "LimitExceededException",
    "ThrottlingException",
}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    retriable: bool = False
    reason: str = ""


ACKED = Outcome(ok=True)


def retriable(reason: str) -> Outcome:
    return Outcome(ok=False, retriable=True, reason=reason)


def fatal(reason: str) -> Outcome:
    return Outcome(ok=False, retriable=False, reason=reason)


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


def _http_failure(response: httpx.Response) -> Outcome | None:
    """Outcome for every record of a request that the server rejected as a whole, or None if it answered 2xx."""
    if response.is_success:
        return None
    reason = f"HTTP {response.status_code}: {_body_message(response)}"
    if response.status_code >= 500 or response.status_code in (408, 429):
        return retriable(reason)
    if response.status_code == 400 and "ProvisionedThroughputExceeded" in response.text:
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
                outcomes.append(retriable(f"error_code {code}: {offset.get('error')}"))
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
) -> None:
    """Send `rows`, re-sending only the records that failed transiently, until all are acked or out of attempts."""
    pending = list(rows)
    stats.sent += len(rows)
    for attempt in range(1, policy.max_attempts + 1):
        try:
            outcomes = await path.send(table, destination, pending)
        except httpx.TransportError as error:
            outcomes = [retriable(f"{type(error).__name__}: {error}")] * len(pending)
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
        await asyncio.sleep(policy.delay(attempt))


def failure_lines(stats: Stats) -> list[str]:
    return [json.dumps(failure, default=str) for failure in stats.failures]
