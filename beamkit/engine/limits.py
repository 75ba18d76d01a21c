"""Per-kind call limits (LLM, image, vision), shared by every job of a process, and adaptive.

A kind's limiter bounds the calls in flight (``Limit.concurrency``, and optionally the starts in
any minute, ``Limit.per_minute``) and learns from the server (docs/providers.md, "Rate limits"):

* a rate-limited call (a non-fatal :class:`~beamkit.errors.RateLimited`) halves the kind's
  concurrency and pauses the whole kind for the seconds in the error's ``retry_after`` context
  (else a doubling back-off); the call is then retried, up to ``RATE_LIMIT_RETRIES`` times;
* the retry-after also spaces the kind's starts, at least that far apart (a server that allows
  5 a minute asks for about 12 s); a 429 that comes although the kind was spaced lengthens the
  spacing by a tenth, and each success shortens it by 1 %, but not below 3 % above the spacing that
  was hit (a floor that itself gives way by 0.2 % a success), so that a rate enforced per second
  or per minute is kept to, close, rather than hit again and again, and a lifted limit is found again;
* each round of successful calls (as many as the current bound) grows the bound by one, back
  up to the configured concurrency (AIMD);
* a provider reports the ``x-ratelimit-remaining-*`` / ``x-ratelimit-reset-*`` headers of each
  reply through :func:`observe`; when the server says nothing is left, the kind waits for the reset.

Waiting (for a pause, a minute window or the server's reset) never holds a slot: a call takes
its slot only when it may start at once.

Limits live per event loop: asyncio primitives belong to one loop, and a process
normally has one (the kernel's, or the server's).
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar, Token
from typing import Any, Protocol, TypeVar

from ..errors import RateLimited
from ..providers.base import Limit

T = TypeVar("T")
MINUTE = 60.0
#: how often one call is retried after being rate limited (each time after the kind's pause)
RATE_LIMIT_RETRIES = 8
#: the pause after a 429 that names no retry-after: doubled for each 429 in a row, up to the cap
BACKOFF_FIRST, BACKOFF_CAP = 0.5, 30.0
#: what each success keeps of the spacing between starts that 429s taught
SPACING_DECAY = 0.99
#: how much a 429 that comes although starts were spaced lengthens the spacing
SPACING_GROWTH = 1.1
#: a spacing that was hit by a 429 is too short: successes shorten the spacing no further than
#: this much above it (the floor itself gives way by FLOOR_DECAY a success, so a lifted limit is found)
FLOOR_MARGIN, FLOOR_DECAY = 1.03, 0.998


class SharedGate(Protocol):
    """A gate beyond this process that every call of one (provider, kind) also passes; a sweep's
    workers hold a cluster-wide semaphore in one (beamkit/sweeps/gates.py)."""

    async def acquire(self) -> None: ...

    def release(self) -> None: ...


#: (limiter key, kind, the provider's Limit) -> the gate for those calls, or None
GateFactory = Callable[[str, str, Limit], SharedGate | None]
_shared: ContextVar[GateFactory | None] = ContextVar("beamkit_shared_gates", default=None)
#: the limiter of the call in progress in this context, for :func:`observe`
_current: ContextVar[KindLimiter | None] = ContextVar("beamkit_current_limiter", default=None)


def set_shared(factory: GateFactory | None) -> Token[GateFactory | None]:
    """Make limiters created from here on (in this context: a task and the jobs it starts) also pass
    the gates ``factory`` gives. A limiter asks once, when it is made for its loop."""
    return _shared.set(factory)


# --- reading what a server says about its limits ---------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")


def parse_duration(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a reset or retry header: ``1s``, ``6m0s``, ``20ms``, ``1h2m``, a plain number of
    seconds, a Unix time, or an HTTP date; None for anything else."""
    if value is None:
        return None
    text = value.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text.replace(" ", ""):
            scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
            return sum(float(n) * scale[u] for n, u in parts)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    if not math.isfinite(seconds) or seconds < 0:
        return None
    if seconds > 1e9:  # a Unix time, as some servers send
        return max(0.0, seconds - (time.time() if now is None else now))
    return seconds


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The pause a 429 asks for: ``retry-after-ms`` (OpenAI's, finer), else ``retry-after``."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    return parse_duration(headers.get("retry-after"))


def _number(value: str | None) -> float | None:
    try:
        n = float(value) if value is not None else None
    except ValueError:
        return None
    return n if n is not None and math.isfinite(n) else None


def observe(headers: Mapping[str, str]) -> None:
    """Tell the limiter of the call in progress (if any) what a reply's rate-limit headers say."""
    lim = _current.get()
    if lim is not None:
        lim.observe(headers)


def current() -> KindLimiter | None:
    """The limiter of the call in progress in this context: a provider that sees one leaves its
    429s to it (instead of retrying them itself)."""
    return _current.get()


# --- the limiter --------------------------------------------------------------------------------

class KindLimiter:
    """One kind's calls: a bound on those in flight that adapts to 429s, optional starts per minute,
    pauses the server asks for, and the server's remaining budget."""

    def __init__(self, limit: Limit, window: float = MINUTE, shared: SharedGate | None = None) -> None:
        self.limit = limit
        self.window = window
        self._shared = shared
        #: the configured bound (None: none); ``cap`` is the bound now, lowered by 429s
        self.ceiling: int | None = limit.concurrency or None
        self.cap: int | None = self.ceiling
        self.in_flight = 0
        #: no call of this kind starts before this (monotonic seconds)
        self.paused_until = 0.0
        #: seconds at least between two starts (0: none), learnt from retry-after
        self.spacing = 0.0
        #: the shortest spacing successes bring it back to: just above the last one a 429 hit
        self._floor = 0.0
        self._last_start = -math.inf
        self._prior_start = -math.inf  # the start before it: spacing counts from it when the last was refused
        #: counts, for tests and benchmarks
        self.rate_limited = 0
        self.halvings = 0
        self._starts: deque[float] = deque()
        self._waiters: deque[asyncio.Future[float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._cut_at = -math.inf  # when the bound was last halved
        self._strikes = 0  # 429s in a row without a success
        self._round = 0  # successes since the bound last grew
        self._budget: int | None = None  # starts the server says are left until ``_budget_until``
        self._budget_until = 0.0

    def __repr__(self) -> str:
        return f"<KindLimiter cap={self.cap} in_flight={self.in_flight} waiting={len(self._waiters)}>"

    @property
    def waiting(self) -> int:
        """Calls waiting to start (they hold no slot)."""
        return sum(1 for f in self._waiters if not f.done())

    @property
    def budget(self) -> int | None:
        """Starts the server said are left before its reset (None: it said nothing, or the reset passed)."""
        if self._budget is not None and time.monotonic() >= self._budget_until:
            self._budget = None
        return self._budget

    @property
    def bounded(self) -> bool:
        """Whether some call may have to wait (kept for callers that skip a free limiter)."""
        return (self.cap is not None or bool(self.limit.per_minute) or self._shared is not None
                or self.paused_until > time.monotonic() or self._budget is not None)

    # -- when may a call start ------------------------------------------------------------------

    def _blocked_for(self, now: float) -> float:
        """Seconds until time alone stops holding starts back (0: it does not now)."""
        wait = max(self.paused_until, self._last_start + self.spacing) - now
        if self._budget is not None:
            if now >= self._budget_until:
                self._budget = None
            elif self._budget <= 0:
                wait = max(wait, self._budget_until - now)
        per_minute = self.limit.per_minute
        if per_minute:
            while self._starts and now - self._starts[0] >= self.window:
                self._starts.popleft()
            if len(self._starts) >= per_minute:
                wait = max(wait, self.window - (now - self._starts[0]))
        return max(0.0, wait)

    def _has_room(self) -> bool:
        return self.cap is None or self.in_flight < self.cap

    def _start(self, now: float) -> float:
        self.in_flight += 1
        self._prior_start, self._last_start = self._last_start, now
        if self.limit.per_minute:
            self._starts.append(now)
        if self._budget is not None:
            self._budget -= 1
        return now

    def _wake(self) -> None:
        """Start waiting calls, first come first served, while they may; else arm a timer."""
        if not self._waiters:  # the usual case, after every call
            return
        now = time.monotonic()
        while self._waiters:
            head = self._waiters[0]
            if head.done():  # its caller was cancelled
                self._waiters.popleft()
                continue
            wait = self._blocked_for(now)
            if wait > 0:
                self._arm(now + wait)
                return
            if not self._has_room():
                return  # a release wakes us
            self._waiters.popleft()
            head.set_result(self._start(now))

    def _arm(self, at: float) -> None:
        if self._timer is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_later(max(0.0, at - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        self._wake()

    # -- slots ----------------------------------------------------------------------------------

    def _take_now(self) -> float | None:
        """A slot at once (the start time), or None when the call must wait for one."""
        now = time.monotonic()
        if not self._waiters and self._has_room() and self._blocked_for(now) <= 0:
            return self._start(now)
        return None

    async def acquire(self) -> float:
        """Wait (holding nothing) until a call may start, then take a slot; returns the start time."""
        started = self._take_now()
        if started is None:
            fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            self._wake()
            try:
                started = await fut
            except BaseException:
                if fut.done() and not fut.cancelled():  # granted as it was cancelled: give it back
                    self._release_local()
                else:
                    fut.cancel()
                raise
        if self._shared is not None:
            try:
                await self._shared.acquire()
            except BaseException:
                self._release_local()
                raise
        return started

    def _release_local(self) -> None:
        self.in_flight -= 1
        self._wake()

    def release(self) -> None:
        if self._shared is not None:
            self._shared.release()
        self._release_local()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        token = _current.set(self)
        try:
            yield
        finally:
            _current.reset(token)
            self.release()

    async def run(self, attempt: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await attempt(*args)`` in a slot; when it is rate limited, adapt and try again after the pause
        (the slot is given back meanwhile), up to ``RATE_LIMIT_RETRIES`` times."""
        tries = 0
        while True:
            # A free slot is taken without a coroutine of its own: every role call comes through here.
            started = self._take_now() if self._shared is None else None
            if started is None:
                started = await self.acquire()
            token = _current.set(self)
            try:
                result = await attempt(*args)
            except RateLimited as exc:
                if exc.fatal or tries >= RATE_LIMIT_RETRIES:
                    raise
                self.throttled(_seconds(exc.context.get("retry_after")), started)
                tries += 1
                continue
            finally:
                _current.reset(token)
                self.release()
            self.succeeded()
            return result

    # -- learning -------------------------------------------------------------------------------

    def throttled(self, retry_after: float | None = None, started: float | None = None) -> None:
        """A call that started at ``started`` was rate limited: halve the bound (once for the calls
        that were already under way when it was last halved) and pause the kind."""
        now = time.monotonic()
        self.rate_limited += 1
        self._strikes += 1
        if started is not None and started == self._last_start:
            # Refused, it used none of the server's allowance: the next start is spaced from the one
            # before (and waits out the retry-after), not from this one, which would cost a spacing more.
            self._last_start = self._prior_start
        fresh = started is None or started >= self._cut_at  # not one of the calls under way at the last cut
        if fresh:
            base = self.cap if self.cap is not None else max(1, self.in_flight)
            self.cap, self._round = max(1, base // 2), 0
            self._cut_at = now
            self.halvings += 1
        pause = retry_after if retry_after is not None else min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (self._strikes - 1))
        self.paused_until = max(self.paused_until, now + pause)
        if retry_after is not None:
            if fresh and self.spacing > 0:  # spaced, and still too close: this spacing is known to be short
                self._floor = min(BACKOFF_CAP, self.spacing * FLOOR_MARGIN)
            longer = self.spacing * SPACING_GROWTH if fresh else self.spacing
            self.spacing = min(BACKOFF_CAP, max(longer, retry_after))
        self._wake()

    def succeeded(self) -> None:
        self._strikes = 0
        self._floor *= FLOOR_DECAY
        self.spacing = max(self._floor, self.spacing * SPACING_DECAY) if self.spacing > 0.001 else 0.0
        if self.cap is None:
            return
        self._round += 1
        if self._round >= self.cap and (self.ceiling is None or self.cap < self.ceiling):
            self.cap, self._round = self.cap + 1, 0  # one more per round of successes
            self._wake()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read ``x-ratelimit-remaining-*`` / ``x-ratelimit-reset-*``: with no requests left, starts
        wait for the reset; with no tokens left, the kind pauses until theirs."""
        get = headers.get
        now = time.monotonic()
        remaining = _number(get("x-ratelimit-remaining-requests"))
        reset = parse_duration(get("x-ratelimit-reset-requests"))
        if remaining is not None and reset is not None:
            self._budget, self._budget_until = max(0, int(remaining)), now + reset
        tokens = _number(get("x-ratelimit-remaining-tokens"))
        tokens_reset = parse_duration(get("x-ratelimit-reset-tokens"))
        if tokens is not None and tokens <= 0 and tokens_reset is not None:
            self.paused_until = max(self.paused_until, now + tokens_reset)
        self._wake()


def _seconds(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], KindLimiter]] = (
    weakref.WeakKeyDictionary()
)


def limiter(provider_set: str, kind: str, limit: Limit) -> KindLimiter:
    """The process-wide limiter of one provider set's kind; the first job to ask fixes its limit."""
    table = _by_loop.setdefault(asyncio.get_running_loop(), {})
    key = (provider_set, kind)
    if key not in table:
        factory = _shared.get()
        table[key] = KindLimiter(limit, shared=factory(provider_set, kind, limit) if factory else None)
    return table[key]
