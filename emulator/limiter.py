"""One adaptive send budget shared by every request the emulator has in flight, first attempts and retries alike.

Per-request backoff alone does not stop a retry storm: with eight requests in flight against a throttling gateway,
each backs off on its own while the other seven keep the gateway busy, and the retries add to the load. The
limiter answers throttling as a whole, the way TCP congestion control does (AIMD: additive increase,
multiplicative decrease), with a client-side rate limit like the AWS SDKs' "adaptive" retry mode:

- a *window* of requests in flight, from 1 up to the configured maximum. It starts at 1 and doubles every round
  trip until the first throttling answer (TCP's slow start: a few milliseconds against a gateway that takes
  everything, and no opening volley of 429s against one that does not). A throttling answer halves it;
- a *send rate* in requests per second, a token bucket that is off until throttling goes on with one request in
  flight (then only pacing helps). Each cut halves what the budget allowed: the lowest of the rate limit, the
  configured rate and the window over the mean request duration;
- while answers succeed, each grows back by a quarter of its value before the last cut per second: two seconds
  to return to where the gateway said no, then on at that pace, so the gateway is probed every few seconds,
  not on every request. The increase is counted in seconds rather than per success (TCP's "one more per window
  of acks"): against a gateway that answers in milliseconds, per-success growth probes, and so draws a 429,
  many times a second. The rate is lifted once it reaches the configured ceiling; without one it keeps growing
  until it no longer limits anything;
- a *pause* when the answer carried `Retry-After`: nothing is sent until then (a minute at most).

One congestion event cuts once: the answers to requests sent before the last cut say nothing about the new
budget (they were sent under the old one), so they count as throttling answers but do not cut again. That is
TCP's "once per round trip", and it is what keeps eight simultaneous 429s from cutting the window 2^8 times.

Written here rather than taken from a library: the maintained asyncio limiters (aiolimiter, asyncio-throttle,
pyrate-limiter, limits, throttled-py, aiometer) apply fixed rates or fixed concurrency and never adapt; the
adaptive ones on PyPI (aimd-limiter, ace-concurrency, adaptive-concurrency) are recent 0.1 releases. botocore's adaptive mode
(`botocore.retries.adaptive`, `bucket`, `throttling`) is the model for the rate part, but its token bucket blocks
the thread on a `threading.Condition` (it would freeze the event loop and every request in flight), its limiter
is wired to botocore's event hooks and parsed botocore responses, it has no concurrency window, and the modules
are internal to botocore, not a public API.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

LATENCY_SMOOTHING = 0.2  # weight of the newest answer in the running mean of request durations


class Answer(Enum):
    """What an answer says about the budget: a success raises it, a throttle cuts it, anything else is neutral."""

    SUCCESS = "success"
    THROTTLED = "throttled"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class Permit:
    """One admitted request; `epoch` is the number of cuts made before it was sent."""

    epoch: int
    sent_at: float


class AdaptiveLimiter:
    def __init__(
        self,
        max_concurrency: int,
        max_rate: float | None = None,
        *,
        adapt: bool = True,
        decrease: float = 0.5,
        recovery: float = 0.25,
        min_rate: float = 0.5,
        burst_seconds: float = 0.1,
        max_pause: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`max_concurrency` requests in flight and `max_rate` requests/s (None: no ceiling) are the upper bounds;
        with `adapt=False` the window stays at `max_concurrency`, no rate applies and `Retry-After` pauses nobody
        (throttling answers are still counted)."""
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if not 0 < decrease < 1:
            raise ValueError("decrease must be within (0, 1)")
        self.max_concurrency = max_concurrency
        self.max_rate = max_rate
        self.adapt = adapt
        self.decrease = decrease
        self.recovery = recovery
        self.min_rate = min_rate
        self.burst_seconds = burst_seconds
        self.max_pause = max_pause
        self.clock = clock
        self.window = 1.0 if adapt else float(max_concurrency)  # slow start: see _succeeded
        self.rate: float | None = None  # requests/s while the rate limit is on
        self.latency: float | None = None  # seconds, running mean of request durations
        self.in_flight = 0
        self.throttles = 0
        self.cuts = 0
        self.lowest_concurrency = max_concurrency
        self.lowest_rate: float | None = None
        self._window_step = 0.0  # requests per second of successes
        self._rate_step = 0.0  # requests/s per second of successes
        self._grown_at = clock()
        self._tokens = 0.0
        self._refilled_at = clock()
        self._paused_until = 0.0
        self._wakeup = asyncio.Event()

    @property
    def concurrency(self) -> int:
        """Requests allowed in flight now."""
        return max(1, int(self.window))

    def allowed_rate(self) -> float:
        """Requests/s the budget lets through now: the rate limit, or the window over the mean request duration.

        This, not a send rate measured over the last second, is what a cut halves: after a quiet spell (every
        request waiting out its backoff) a measured average reads the burst that drew the 429 as a trickle, and a
        cut from there would take many seconds to recover.
        """
        allowed = self.concurrency / max(self.latency or 0.0, 1e-3)
        for ceiling in (self.rate, self.max_rate):
            if ceiling is not None:
                allowed = min(allowed, ceiling)
        return allowed

    async def acquire(self) -> Permit:
        """Wait until the budget admits one more request."""
        while (delay := self._delay()) != 0:
            wakeup = self._wakeup  # taken before awaiting: a release in between sets this very event
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wakeup.wait()
        self.in_flight += 1
        if self.rate is not None:
            self._tokens -= 1
        return Permit(self.cuts, self.clock())

    def release(self, permit: Permit, answer: Answer = Answer.NEUTRAL, retry_after: float | None = None) -> None:
        """The request is over; `answer` and `retry_after` (seconds) adjust the budget."""
        self.in_flight -= 1
        took = self.clock() - permit.sent_at
        self.latency = took if self.latency is None else self.latency + LATENCY_SMOOTHING * (took - self.latency)
        if answer is Answer.THROTTLED:
            self.throttles += 1
            if self.adapt:
                self._throttled(permit, retry_after)
        elif answer is Answer.SUCCESS and self.adapt:
            self._succeeded()
        self._wake()

    def _delay(self) -> float | None:
        """0 when a request may go now, else seconds to wait (None: until a request ends)."""
        now = self.clock()
        if now < self._paused_until:
            return self._paused_until - now
        if self.in_flight >= self.concurrency:
            return None
        if self.rate is None:
            return 0
        self._refill(now)
        return 0 if self._tokens >= 1 - 1e-9 else (1 - self._tokens) / self.rate  # 1e-9: float rounding

    def _throttled(self, permit: Permit, retry_after: float | None) -> None:
        now = self.clock()
        if retry_after is not None and retry_after > 0:
            self._paused_until = max(self._paused_until, now + min(retry_after, self.max_pause))
        if permit.epoch != self.cuts:
            return  # sent before the last cut: this congestion has been answered already
        self.cuts += 1
        self._grown_at = now
        if self.rate is not None or self.concurrency == 1:  # one request at a time is still too many: pace them
            sending_at = self.allowed_rate()
            self._set_rate(max(self.min_rate, sending_at * self.decrease), now)
            self._tokens = 0.0  # told to slow down: no burst of tokens saved up at the old rate
            self._rate_step = self.recovery * max(sending_at, self.min_rate)
            self.lowest_rate = self.rate if self.lowest_rate is None else min(self.lowest_rate, self.rate)
        self._window_step = self.recovery * self.window
        self.window = max(1.0, self.window * self.decrease)
        self.lowest_concurrency = min(self.lowest_concurrency, self.concurrency)

    def _succeeded(self) -> None:
        if not self.cuts:  # slow start: +1 per success doubles the window every round trip until the first cut
            self.window = min(float(self.max_concurrency), self.window + 1)
            return
        now = self.clock()
        seconds = min(1.0, now - self._grown_at)  # a long quiet spell counts as one second, not as many
        self._grown_at = now
        self.window = min(float(self.max_concurrency), self.window + self._window_step * seconds)
        if self.rate is not None:
            raised = self.rate + self._rate_step * seconds
            self._set_rate(None if self.max_rate is not None and raised >= self.max_rate else raised, now)

    def _set_rate(self, rate: float | None, now: float) -> None:
        self._refill(now)  # tokens earned so far accrue at the old rate
        self.rate = rate
        self._tokens = min(self._tokens, self._capacity())

    def _capacity(self) -> float:
        return max(1.0, (self.rate or 0) * self.burst_seconds)

    def _refill(self, now: float) -> None:
        if self.rate is not None:
            self._tokens = min(self._capacity(), self._tokens + (now - self._refilled_at) * self.rate)
        self._refilled_at = now

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()
