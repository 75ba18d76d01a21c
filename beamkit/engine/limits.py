"""Per-kind call limits (LLM, image, vision), shared by every job of a process.

Limits live per event loop: asyncio primitives belong to one loop, and a process
normally has one (the kernel's, or the server's).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator

from ..providers.base import Limit

MINUTE = 60.0


class KindLimiter:
    """At most ``concurrency`` calls in flight and ``per_minute`` starts in any 60 s window."""

    def __init__(self, limit: Limit, window: float = MINUTE) -> None:
        self.limit = limit
        self.window = window
        self._sem = asyncio.Semaphore(limit.concurrency) if limit.concurrency else None
        self._starts: deque[float] = deque()
        self._rate_lock = asyncio.Lock()

    async def _wait_for_rate(self) -> None:
        per_minute = self.limit.per_minute
        if not per_minute:
            return
        async with self._rate_lock:  # FIFO: callers start in the order they asked
            while True:
                now = time.monotonic()
                while self._starts and now - self._starts[0] >= self.window:
                    self._starts.popleft()
                if len(self._starts) < per_minute:
                    self._starts.append(now)
                    return
                await asyncio.sleep(self.window - (now - self._starts[0]))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._sem is None:
            await self._wait_for_rate()
            yield
            return
        async with self._sem:
            await self._wait_for_rate()
            yield


_by_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], KindLimiter]]" = (
    weakref.WeakKeyDictionary()
)


def limiter(provider_set: str, kind: str, limit: Limit) -> KindLimiter:
    """The process-wide limiter of one provider set's kind; the first job to ask fixes its limit."""
    table = _by_loop.setdefault(asyncio.get_running_loop(), {})
    key = (provider_set, kind)
    if key not in table:
        table[key] = KindLimiter(limit)
    return table[key]
