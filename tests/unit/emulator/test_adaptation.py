"""The emulator against a gateway that throttles: every record still arrives, and the 429s stay few.

The whole emulator loop (`emulator.__main__.emulate`) runs against the scripted HTTP server on 127.0.0.1, with a
stand-in for the MySQL source. Each scenario runs twice, adapting and with `--no-adapt`, and the test asserts the
difference, so it fails if adaptation stops working (the fixed-concurrency run is the retry storm it prevents).
"""

import asyncio
import json
import threading
import time
from collections import Counter

import httpx
import pytest

from emulator.__main__ import emulate, new_limiter, parse_args, throttling_summary
from emulator.limiter import AdaptiveLimiter
from emulator.sampling import draws
from emulator.sender import KafkaRestPath, KinesisGatewayPath, RetryPolicy, Stats, deliver, retry_after_seconds
from pipeline.settings import KEY_COLUMNS as KEY_COLUMN
from pipeline.settings import TABLES, load_settings

ROW_COUNT = 1000
TOO_MANY = (429, {"message": "Too Many Requests"})


class FakeSource:
    """The MySQL source's interface, rows made up from the index."""

    def row_count(self):
        return ROW_COUNT

    def fetch(self, indices):
        return {table: {i: {KEY_COLUMN[table]: i, "table": table} for i in indices} for table in TABLES}


class Gateway:
    """A REST proxy behind a gateway that answers 429 above `max_in_flight` requests at once or above `rate`
    requests/s (a token bucket holding `burst`), and acks every record of the requests it lets through."""

    def __init__(self, max_in_flight=None, rate=None, burst=1.0, service_seconds=0.01):
        self.max_in_flight = max_in_flight
        self.rate = rate
        self.burst = burst
        self.service_seconds = service_seconds
        self.lock = threading.Lock()
        self.in_flight = 0
        self.tokens = burst
        self.refilled_at = time.monotonic()
        self.throttled = 0
        self.acked: Counter = Counter()

    def _admit(self):
        with self.lock:
            if self.rate is not None:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.refilled_at) * self.rate)
                self.refilled_at = now
            over_rate = self.rate is not None and self.tokens < 1
            if over_rate or (self.max_in_flight is not None and self.in_flight >= self.max_in_flight):
                self.throttled += 1
                return False
            if self.rate is not None:
                self.tokens -= 1
            self.in_flight += 1
            return True

    def __call__(self, request):
        if not self._admit():
            return TOO_MANY
        try:
            time.sleep(self.service_seconds)
            records = json.loads(request["body"])["records"]
            with self.lock:
                self.acked.update((r["value"]["table"], r["value"][KEY_COLUMN[r["value"]["table"]]]) for r in records)
            offsets = [{"partition": 0, "offset": 0, "error_code": None, "error": None} for _ in records]
            return 200, {"offsets": offsets, "key_schema_id": None, "value_schema_id": None}
        finally:
            with self.lock:
                self.in_flight -= 1


def emulate_against(server, gateway, *flags):
    """Run the emulator's loop against `gateway`; (stats, limiter, seconds). Enough attempts that the fixed run
    delivers everything too: what differs is the load on the gateway."""
    server.default = gateway
    args = parse_args(["--target", "proxy", "--quiet", "--max-attempts", "30", *flags])
    stats, limiter = Stats(), new_limiter(args)
    started = time.monotonic()
    asyncio.run(emulate(load_settings(api_key="k"), args, FakeSource(), server.url, stats, limiter))
    return stats, limiter, time.monotonic() - started


def expected_records(args):
    indices = [d.index for d in draws(args.seed, ROW_COUNT, args.count)]
    return Counter((table, i) for table in TABLES for i in indices)


SCENARIOS = {
    # a proxy that takes 3 requests at once; the emulator may send 8 posts x 3 tables = 24
    "in-flight": (
        dict(max_in_flight=3, service_seconds=0.01),
        ["--count", "300", "--burst", "--batch-size", "5", "--concurrency", "8"],
    ),
    # a usage plan of 80 requests/s (burst 5), requests answered at once
    "rate": (
        dict(rate=80.0, burst=5.0, service_seconds=0.002),
        ["--count", "100", "--burst", "--batch-size", "2", "--concurrency", "4"],
    ),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_adapting_delivers_everything_with_far_fewer_429s(scripted_server, scenario, capsys):
    gateway_kwargs, flags = SCENARIOS[scenario]
    args = parse_args(flags)
    expected = expected_records(args)

    fixed_gateway = Gateway(**gateway_kwargs)
    fixed, fixed_limiter, fixed_seconds = emulate_against(scripted_server, fixed_gateway, *flags, "--no-adapt")
    adaptive_gateway = Gateway(**gateway_kwargs)
    adaptive, limiter, adaptive_seconds = emulate_against(scripted_server, adaptive_gateway, *flags)

    with capsys.disabled():
        print(
            f"\n{scenario}: 429s fixed {fixed_gateway.throttled} ({fixed.retries} retries, {fixed.failed} failed, "
            f"{fixed_seconds:.1f} s), adaptive {adaptive_gateway.throttled} ({adaptive.retries} retries, "
            f"{adaptive.failed} failed, {adaptive_seconds:.1f} s); {throttling_summary(limiter)}"
        )
    # adapting: every record acked exactly once, none lost, none duplicated
    assert (adaptive.sent, adaptive.acked, adaptive.failed) == (3 * args.count, 3 * args.count, 0)
    assert adaptive_gateway.acked == expected
    # the gateway's count and the emulator's agree, and the emulator slowed down for them
    assert limiter.throttles == adaptive_gateway.throttled > 0
    assert limiter.lowest_concurrency < limiter.max_concurrency
    # the storm it prevents: the fixed-concurrency run drew several times more 429s
    assert fixed_limiter.throttles == fixed_gateway.throttled
    assert adaptive_gateway.throttled <= 30
    assert adaptive_gateway.throttled * 4 <= fixed_gateway.throttled


def test_the_summary_names_the_throttling_and_the_lowest_budget():
    limiter = AdaptiveLimiter(max_concurrency=12)
    assert throttling_summary(limiter) == "throttling: none"
    limiter.throttles, limiter.lowest_concurrency, limiter.lowest_rate = 37, 1, 4.25
    assert throttling_summary(limiter) == (
        "throttling: 37 answers; requests in flight went down to 1 of 12, send rate to 4.2 requests/s"
    )
    fixed = AdaptiveLimiter(max_concurrency=12, adapt=False)
    fixed.throttles = 5
    assert throttling_summary(fixed) == "throttling: 5 answers (adaptation off: --no-adapt)"


def test_the_budget_is_in_requests_one_per_table_per_post():
    limiter = new_limiter(parse_args(["--concurrency", "2", "--rate", "5"]))
    assert (limiter.max_concurrency, limiter.max_rate, limiter.adapt) == (6, 15.0, True)
    assert not new_limiter(parse_args(["--no-adapt"])).adapt


def deliver_once(server, path_type, rows, limiter, destination="0a1b2c3d4e5f.geo"):
    async def go():
        stats = Stats()
        async with httpx.AsyncClient(timeout=5) as client:
            path = path_type(client, server.url, {})
            policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
            await deliver(path, "geo", destination, rows, stats, policy, limiter)
        return stats

    return asyncio.run(go())


def test_retry_after_is_waited_for(scripted_server):
    ack = (200, {"offsets": [{"partition": 0, "offset": 0, "error_code": None, "error": None}]})
    scripted_server.script.extend([(429, ({"message": "slow down"}, {"Retry-After": "0.4"})), ack])
    limiter = AdaptiveLimiter(max_concurrency=4)
    started = time.monotonic()
    stats = deliver_once(scripted_server, KafkaRestPath, [{"ind": 1}], limiter)
    assert stats.acked == 1 and limiter.throttles == 1
    assert time.monotonic() - started >= 0.4


@pytest.mark.parametrize(
    ("answer", "throttles"),
    [
        ((503, {"message": "busy"}), 1),
        ((408, {"message": "request timeout"}), 0),
        ((400, {"__type": "ProvisionedThroughputExceededException", "message": "Rate exceeded"}), 1),
    ],
)
def test_which_http_answers_count_as_throttling(scripted_server, answer, throttles):
    scripted_server.script.extend([answer, (200, {"SequenceNumber": "1", "ShardId": "s"})])
    limiter = AdaptiveLimiter(max_concurrency=4)
    stats = deliver_once(scripted_server, KinesisGatewayPath, [{"ind": 1}], limiter, "streaming-0a1b2c3d4e5f-geo")
    assert stats.acked == 1 and limiter.throttles == throttles


@pytest.mark.parametrize(
    ("error", "throttles"),
    [("ProvisionedThroughputExceededException", 1), ("ThrottlingException", 1), ("InternalFailure", 0)],
)
def test_kinesis_per_record_throttling_cuts_the_budget(scripted_server, error, throttles):
    put_records = {
        "FailedRecordCount": 1,
        "Records": [{"SequenceNumber": "1", "ShardId": "s"}, {"ErrorCode": error, "ErrorMessage": "x"}],
    }
    scripted_server.script.extend([(200, put_records), (200, {"SequenceNumber": "2", "ShardId": "s"})])
    limiter = AdaptiveLimiter(max_concurrency=4)
    rows = [{"ind": 1}, {"ind": 2}]
    stats = deliver_once(scripted_server, KinesisGatewayPath, rows, limiter, "streaming-0a1b2c3d4e5f-geo")
    assert stats.acked == 2 and (limiter.throttles, limiter.cuts) == (throttles, throttles)


def test_kafka_retriable_record_codes_count_as_throttling(scripted_server):
    offsets = [{"partition": 0, "offset": 0, "error_code": None, "error": None}]
    scripted_server.script.extend(
        [
            (200, {"offsets": [*offsets, {"partition": None, "offset": None, "error_code": 2, "error": "busy"}]}),
            (200, {"offsets": offsets}),
        ]
    )
    limiter = AdaptiveLimiter(max_concurrency=4)
    stats = deliver_once(scripted_server, KafkaRestPath, [{"ind": 1}, {"ind": 2}], limiter)
    assert stats.acked == 2 and limiter.throttles == 1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0.5", 0.5), ("-2", 0.0), ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0), ("soon", None), (None, None)],
)
def test_retry_after_header_values(header, seconds):
    response = httpx.Response(429, headers={"Retry-After": header} if header else {})
    now = 1445412480.0  # 2015-10-21 07:28:00 UTC
    assert retry_after_seconds(response, now=now) == seconds
