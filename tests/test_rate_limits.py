"""The engine's adaptive limits (engine/limits.py), with the real openai client against tests/openai_server.py.

Mechanism only: halving on a 429, honouring retry-after for the whole kind, growing back,
reading x-ratelimit-* headers, and never holding a slot while waiting. Speed is measured in
benchmarks/rate_limits.py.
"""

from __future__ import annotations

import asyncio
import os
import time
from functools import partial
from typing import Any

import pytest
import pytest_asyncio
from openai_server import TEST_KEY, FakeOpenAI

from beamkit.engine import limits
from beamkit.engine.limits import KindLimiter, parse_duration, retry_after
from beamkit.errors import BeamkitError, ErrorCode, ProviderError
from beamkit.providers import Limit, Roles, resolve

USER = "a red fox sleeping in fresh snow"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "BEAMKIT_")):
            monkeypatch.delenv(name)


@pytest_asyncio.fixture
async def server():
    """A fresh tests/openai_server.py server on 127.0.0.1."""
    fake = await FakeOpenAI().start()
    try:
        yield fake
    finally:
        await fake.stop()


def make(server: FakeOpenAI, **settings: Any) -> Roles:
    base = {"api_key": TEST_KEY, "base_url": server.base_url, "max_retries": 2}
    return resolve("openai", {**base, **settings}, temperature=0.9, seed=11)


async def assert_start_waits(lim: KindLimiter) -> None:
    """A start asked for now is still waiting a moment later, holding no slot; then it is called off."""
    waiter = asyncio.ensure_future(lim.acquire())
    await asyncio.sleep(0.05)
    assert not waiter.done() and lim.waiting == 1 and lim.in_flight == 0
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert lim.waiting == 0 and lim.in_flight == 0


def rate_limited(retry: float | None = None) -> ProviderError:
    err = ProviderError("rate limited", ErrorCode.RATE_LIMIT)
    if retry is not None:
        err.context["retry_after"] = retry
    return err


# --- reading the headers ------------------------------------------------------------------------

@pytest.mark.parametrize("text,seconds", [
    ("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.25", 0.25), ("7", 7.0),
    ("soon", None), ("-1", None), ("", None), (None, None),
])
def test_reset_and_retry_durations_are_read_in_every_form_servers_send(text, seconds):
    got = parse_duration(text)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


def test_an_http_date_or_unix_time_is_read_as_seconds_from_now():
    now = 1_800_000_000.0
    assert parse_duration(str(now + 30), now=now) == pytest.approx(30)
    assert parse_duration("Fri, 15 Jan 2027 08:00:30 GMT", now=1_799_913_600.0 + 30) is not None


def test_retry_after_ms_wins_over_retry_after():
    assert retry_after({"retry-after-ms": "250", "retry-after": "1"}) == pytest.approx(0.25)
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "nan?", "retry-after": "3"}) == 3.0
    assert retry_after({}) is None


# --- the limiter on its own ---------------------------------------------------------------------

@pytest.mark.asyncio
async def test_a_429_halves_the_kinds_concurrency_once_per_burst_and_successes_grow_it_back():
    lim = KindLimiter(Limit(concurrency=8))
    started = [await lim.acquire() for _ in range(4)]
    for s in started:  # four calls under way when the server began refusing: one halving, not four
        lim.throttled(0.0, s)
        lim.release()
    assert lim.cap == 4 and lim.halvings == 1 and lim.rate_limited == 4
    later = await lim.acquire()
    lim.throttled(0.0, later)  # a call started after the cut is refused too: halve again
    lim.release()
    assert lim.cap == 2 and lim.halvings == 2
    for _ in range(2):  # a round of successes (as many as the bound) adds one
        lim.succeeded()
    assert lim.cap == 3
    for _ in range(100):
        lim.succeeded()
    assert lim.cap == 8  # never above the configured concurrency


@pytest.mark.asyncio
async def test_a_refused_start_does_not_count_for_the_spacing_of_the_next():
    lim = KindLimiter(Limit(concurrency=4))
    first = await lim.acquire()
    lim.throttled(0.3, first)  # the server asks for 0.3 s between calls: the kind learns the spacing
    lim.release()
    a = await lim.acquire()
    lim.release()
    lim.succeeded()
    b = await lim.acquire()
    assert b - a >= 0.29  # spaced from a
    lim.throttled(0.01, b)  # refused all the same (the server's clock is not ours): it used no allowance
    lim.release()
    c = await lim.acquire()
    lim.release()
    # c is spaced (a little more now) from a, the last start the server took, not from b
    assert c - a >= 0.3 and c - b < 0.15, (c - a, c - b)


@pytest.mark.asyncio
async def test_an_unbounded_kind_gets_a_bound_from_its_first_429():
    lim = KindLimiter(Limit())
    held = [await lim.acquire() for _ in range(6)]
    assert lim.cap is None
    lim.throttled(0.0, held[0])
    for _ in held:
        lim.release()
    assert lim.cap == 3  # half of the six that were in flight


@pytest.mark.asyncio
async def test_retry_after_pauses_the_whole_kind_and_the_call_is_retried():
    lim = KindLimiter(Limit(concurrency=4))
    loop = asyncio.get_running_loop()
    attempts: list[float] = []
    other_started: list[float] = []
    refused = asyncio.Event()

    async def refused_once() -> str:
        attempts.append(loop.time())
        if len(attempts) == 1:
            refused.set()
            raise rate_limited(0.3)
        return "ok"

    async def other() -> None:
        await refused.wait()
        await asyncio.sleep(0)  # the 429 has been handled: the kind is paused
        async with lim.slot():
            other_started.append(loop.time())

    result, _ = await asyncio.gather(lim.run(refused_once), other())
    assert result == "ok" and len(attempts) == 2
    assert attempts[1] - attempts[0] >= 0.3 - 0.01  # the retry waited as the server asked
    assert other_started[0] - attempts[0] >= 0.3 - 0.01  # and so did every other call of the kind


@pytest.mark.asyncio
async def test_waiting_for_a_pause_or_a_minute_window_holds_no_slot():
    lim = KindLimiter(Limit(concurrency=1, per_minute=1), window=30.0)
    async with lim.slot():
        pass
    await assert_start_waits(lim)  # the window is spent: it must wait 30 s

    paused = KindLimiter(Limit(concurrency=1))
    paused.throttled(30.0)
    await assert_start_waits(paused)


@pytest.mark.asyncio
async def test_a_rate_limited_call_gives_its_slot_back_while_it_waits():
    lim = KindLimiter(Limit(concurrency=1))
    seen: list[int] = []

    async def refused_once() -> None:
        if not seen:
            seen.append(lim.in_flight)
            raise rate_limited(0.2)
        seen.append(lim.in_flight)

    task = asyncio.ensure_future(lim.run(refused_once))
    await asyncio.sleep(0.1)  # inside the pause
    assert lim.in_flight == 0 and lim.paused_until > time.monotonic()
    await task
    assert seen == [1, 1] and lim.in_flight == 0


@pytest.mark.asyncio
async def test_a_fatal_rate_limit_is_not_retried_and_retries_end(monkeypatch):
    lim = KindLimiter(Limit(concurrency=2))
    tries = 0

    async def no_quota() -> None:
        nonlocal tries
        tries += 1
        raise ProviderError("no quota", ErrorCode.RATE_LIMIT, fatal=True)

    with pytest.raises(BeamkitError):
        await lim.run(no_quota)
    assert tries == 1

    monkeypatch.setattr(limits, "RATE_LIMIT_RETRIES", 2)
    tries = 0

    async def always() -> None:
        nonlocal tries
        tries += 1
        raise rate_limited(0.0)

    with pytest.raises(BeamkitError) as info:
        await lim.run(always)
    assert info.value.code == ErrorCode.RATE_LIMIT and tries == 3 and lim.in_flight == 0


@pytest.mark.asyncio
async def test_no_remaining_requests_makes_starts_wait_for_the_reset():
    lim = KindLimiter(Limit(concurrency=4))
    lim.observe({"x-ratelimit-remaining-requests": "1", "x-ratelimit-reset-requests": "30s"})
    assert lim.budget == 1
    async with lim.slot():  # the one that is left
        pass
    assert lim.budget == 0
    await assert_start_waits(lim)
    lim.observe({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "20s"})
    assert lim.paused_until - time.monotonic() > 19


# --- with the real openai client ----------------------------------------------------------------

@pytest.mark.asyncio
async def test_under_the_limiter_a_429_is_the_limiters_to_retry_not_the_clients(server):
    ps = make(server, max_retries=3)
    server.fail("429", on="image", times=1, retry_after_ms=200)
    lim = KindLimiter(Limit(concurrency=3))
    image = await lim.run(partial(ps.image.generate, "a fox", seed=1))
    assert image.png.startswith(b"\x89PNG")
    reqs = server.of("image")
    assert [r.status for r in reqs] == [429, 200]
    # two fresh requests, each the client's first try: the client did not retry the 429 itself
    assert [r.headers.get("x-stainless-retry-count") for r in reqs] == ["0", "0"]
    assert reqs[1].started - reqs[0].started >= 0.19  # the server's retry-after-ms, read from the reply
    assert lim.halvings == 1 and lim.cap == 2  # 3 halved to 1, and the retry's success (a round of one) added one
    await ps.aclose()


@pytest.mark.asyncio
async def test_the_servers_remaining_budget_is_read_and_spares_a_429(server):
    ps = make(server)
    bucket = server.rate_limit("image", 4, window=1.0, burst=2)
    lim = KindLimiter(Limit(concurrency=1))
    for seed in range(3):  # the third must wait for the reset the second reply announced
        await lim.run(partial(ps.image.generate, "a fox", seed=seed))
    assert bucket.accepted == 3 and bucket.rejected == 0

    server.ratelimit_headers = False  # a server that sends no headers: the limiter learns from 429s
    bucket = server.rate_limit("image", 4, window=1.0, burst=2)
    blind = KindLimiter(Limit(concurrency=1))
    for seed in range(3):
        await blind.run(partial(ps.image.generate, "a fox", seed=seed))
    assert bucket.accepted == 3 and bucket.rejected >= 1 and blind.rate_limited == bucket.rejected
    await ps.aclose()


@pytest.mark.asyncio
async def test_a_job_against_a_rate_limited_server_has_no_failed_candidate(server, tmp_path):
    import beamkit

    server.rate_limit("image", 10, window=1.0, burst=1)
    server.ratelimit_headers = False  # the harder case: only 429s and their retry-after to go by
    settings = {"api_key": TEST_KEY, "base_url": server.base_url, "max_retries": 0}
    job = beamkit.start(USER, N=6, M=2, iterations=2, seed=1, providers="openai", output=tmp_path,
                        provider_settings=settings)
    result = await job
    assert result.status == "completed"
    assert all(c.status == "ok" for c in result.candidates) and len(result.candidates) == 12
    assert server.buckets["image"].rejected > 0  # the server did refuse some: they were retried
    assert server.buckets["image"].accepted == 12
