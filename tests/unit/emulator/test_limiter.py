"""The adaptive limiter's arithmetic on a hand-moved clock, and its waiting on the real one."""

import asyncio
import time

import pytest

from emulator.limiter import AdaptiveLimiter, Answer


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def limiter_on(clock, **kwargs):
    return AdaptiveLimiter(clock=clock, **kwargs)


def request(limiter, clock, answer=Answer.SUCCESS, took=0.01, retry_after=None):
    """One request on the hand-moved clock: the clock moves on until the budget admits it, then by `took`."""
    while (delay := limiter._delay()) != 0:
        assert delay is not None, "the window is full"
        clock.now += delay
    permit = asyncio.run(limiter.acquire())
    clock.now += took
    limiter.release(permit, answer, retry_after)


def admit(limiter, n):
    """n requests admitted at once (the caller keeps within the window)."""
    return [asyncio.run(limiter.acquire()) for _ in range(n)]


def past_slow_start(clock, window, **kwargs):
    """A limiter whose first cut has left `window` requests in flight allowed."""
    limiter = limiter_on(clock, max_concurrency=2 * window, **kwargs)
    for _ in range(2 * window):
        request(limiter, clock)
    request(limiter, clock, Answer.THROTTLED)
    assert limiter.window == window
    return limiter


def test_starts_with_one_request_and_no_rate_limit():
    limiter = AdaptiveLimiter(max_concurrency=8, max_rate=30.0)
    assert (limiter.concurrency, limiter.rate, limiter.throttles, limiter.lowest_concurrency) == (1, None, 0, 8)


def test_slow_start_adds_one_per_success_up_to_the_maximum():
    clock = Clock()
    limiter = limiter_on(clock, max_concurrency=8)
    for expected in (2, 3, 4, 5, 6, 7, 8, 8):
        request(limiter, clock)
        assert limiter.concurrency == expected


def test_no_adapt_starts_at_the_maximum_keeps_it_and_still_counts_throttles():
    clock = Clock()
    limiter = limiter_on(clock, max_concurrency=4, adapt=False)
    assert limiter.concurrency == 4
    for permit in admit(limiter, 4):
        limiter.release(permit, Answer.THROTTLED, retry_after=5)
    assert (limiter.concurrency, limiter.rate, limiter.throttles, limiter.lowest_concurrency) == (4, None, 4, 4)
    assert limiter._delay() == 0  # no pause either


def test_a_throttle_halves_the_window_and_leaves_the_rate_alone_while_more_than_one_request_was_allowed():
    clock = Clock()
    limiter = past_slow_start(clock, 4)
    assert (limiter.concurrency, limiter.rate, limiter.lowest_concurrency, limiter.lowest_rate) == (4, None, 4, None)
    assert (limiter.throttles, limiter.cuts) == (1, 1)


def test_one_congestion_event_cuts_once():
    """Eight requests in flight all throttled: the seven answers after the first were sent under the old budget."""
    clock = Clock()
    limiter = limiter_on(clock, max_concurrency=8)
    for _ in range(8):
        request(limiter, clock)
    permits = admit(limiter, 8)
    for permit in permits:
        limiter.release(permit, Answer.THROTTLED)
    assert (limiter.throttles, limiter.cuts, limiter.concurrency) == (8, 1, 4)
    request(limiter, clock, Answer.THROTTLED)  # sent after the cut and throttled again: a new event
    assert (limiter.cuts, limiter.concurrency) == (2, 2)


def test_throttled_at_one_request_the_rate_starts_at_half_what_one_request_at_a_time_achieves():
    clock = Clock()
    limiter = limiter_on(clock, max_concurrency=1)
    request(limiter, clock, took=0.05)  # 50 ms a request: 20 requests/s
    request(limiter, clock, Answer.THROTTLED, took=0.05)
    assert limiter.rate == pytest.approx(10.0)
    assert (limiter.concurrency, limiter.lowest_rate) == (1, limiter.rate)


def test_the_rate_starts_from_the_configured_ceiling_when_that_is_lower():
    clock = Clock()
    limiter = limiter_on(clock, max_concurrency=1, max_rate=6.0)
    request(limiter, clock, Answer.THROTTLED, took=0.05)
    assert limiter.rate == pytest.approx(3.0)


def test_further_cuts_halve_the_rate_down_to_the_minimum_and_the_window_down_to_one():
    clock = Clock()
    limiter = limiter_on(clock, max_concurrency=8, min_rate=0.5)
    for _ in range(8):
        request(limiter, clock, took=0.05)
    rates = []
    for _ in range(12):
        request(limiter, clock, Answer.THROTTLED, took=0.05)
        rates.append(limiter.rate)
    # windows 4, 2, 1; then one request at a time, at 20 requests/s, is still too many: paced at 10, then 5
    assert rates[:5] == [None, None, None, pytest.approx(10.0), pytest.approx(5.0)]
    assert rates[-1] == limiter.lowest_rate == 0.5
    assert (limiter.concurrency, limiter.lowest_concurrency) == (1, 1)


def test_the_cut_rate_is_what_the_window_allowed_when_that_is_lower_than_the_rate():
    clock = Clock()
    limiter = limiter_on(clock, max_concurrency=1)
    request(limiter, clock, Answer.THROTTLED, took=0.01)  # 100 requests/s: paced at 50
    limiter.rate = 1000.0  # as after a long run of successes with the window binding
    request(limiter, clock, Answer.THROTTLED, took=0.01)
    assert limiter.rate == pytest.approx(50.0, rel=0.05)


def test_the_window_regains_a_quarter_of_its_old_size_per_second_of_successes_up_to_the_maximum():
    clock = Clock()
    limiter = past_slow_start(clock, 4)  # cut from 8
    for _ in range(10):  # one second of successes, 10 requests 0.1 s apart
        request(limiter, clock, took=0.1)
    assert limiter.window == pytest.approx(6.0)  # + a quarter of 8 per second
    request(limiter, clock, took=5.0)  # a long quiet spell counts as one second
    assert limiter.window == 8.0  # and never above the maximum
    request(limiter, clock, took=1.0)
    assert limiter.window == 8.0 and limiter.lowest_concurrency == 4


def test_the_rate_regains_a_quarter_of_its_old_value_per_second_and_is_lifted_at_the_ceiling():
    clock = Clock()
    limiter = limiter_on(clock, max_concurrency=1, max_rate=30.0)
    request(limiter, clock, Answer.THROTTLED, took=0.05)  # 20 requests/s achieved: paced at 10
    assert limiter.rate == pytest.approx(10.0)
    started = clock.now
    while clock.now - started < 1.0:
        request(limiter, clock, took=0.01)
    assert limiter.rate == pytest.approx(15.0, rel=0.05)  # + a quarter of 20 per second
    while limiter.rate is not None:
        before = limiter.rate
        request(limiter, clock, took=0.01)
    assert before > 29.0  # lifted only on reaching the 30 requests/s ceiling
    assert limiter.lowest_rate == pytest.approx(10.0)


def test_without_a_ceiling_the_rate_keeps_growing():
    clock = Clock()
    limiter = limiter_on(clock, max_concurrency=1)
    request(limiter, clock, Answer.THROTTLED, took=0.05)
    for _ in range(100):
        request(limiter, clock, took=0.01)
    assert limiter.rate > 20.0


def test_neutral_answers_change_nothing_but_the_latency():
    clock = Clock()
    limiter = limiter_on(clock, max_concurrency=1)
    request(limiter, clock, Answer.THROTTLED)
    window, rate = limiter.window, limiter.rate
    request(limiter, clock, Answer.NEUTRAL, took=1.0)
    assert (limiter.window, limiter.rate, limiter.throttles) == (window, rate, 1)
    assert limiter.latency == pytest.approx(0.01 + 0.2 * (1.0 - 0.01))


@pytest.mark.parametrize("bad", [{"max_concurrency": 0}, {"max_concurrency": 1, "decrease": 1.0}])
def test_bounds_are_checked(bad):
    with pytest.raises(ValueError):
        AdaptiveLimiter(**bad)


def test_the_window_holds_back_requests_until_one_ends():
    async def go():
        limiter = AdaptiveLimiter(max_concurrency=2, adapt=False)
        first, _ = await limiter.acquire(), await limiter.acquire()
        third = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.05)
        assert not third.done()
        limiter.release(first, Answer.SUCCESS)
        await asyncio.wait_for(third, 1)
        return limiter.in_flight

    assert asyncio.run(go()) == 2


def test_the_rate_spaces_requests_out():
    async def go():
        limiter = AdaptiveLimiter(max_concurrency=1, max_rate=40.0)
        limiter.release(await limiter.acquire(), Answer.THROTTLED)  # paced at 20 requests/s
        started = time.monotonic()
        for _ in range(10):
            limiter.release(await limiter.acquire(), Answer.NEUTRAL)
        return limiter.rate, time.monotonic() - started

    rate, seconds = asyncio.run(go())
    assert rate == 20.0
    assert 0.4 <= seconds < 1.0  # 10 requests at 20/s, starting with an empty bucket


def test_retry_after_pauses_every_request():
    async def go():
        limiter = AdaptiveLimiter(max_concurrency=4)
        limiter.release(await limiter.acquire(), Answer.THROTTLED, retry_after=0.3)
        started = time.monotonic()
        await limiter.acquire()
        return limiter.rate, time.monotonic() - started

    rate, seconds = asyncio.run(go())
    assert rate is not None and 1 / rate < 0.1  # the pacing alone would not wait this long
    assert 0.25 <= seconds < 0.6
