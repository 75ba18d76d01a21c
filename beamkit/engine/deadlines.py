"""Per-call time bounds for the price of a dict entry: one timer per event loop, set for the
earliest deadline of the calls in flight, instead of a timer (and a Timeout) per call.

A call that outlives its bound is cancelled, as ``asyncio.timeout`` would do; its caller
tells that cancellation apart from any other by what ``leave`` answers.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref

_SLACK = time.get_clock_info("monotonic").resolution  # the loop runs a timer this early


class Bound:
    __slots__ = ("task", "when", "expired")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task = task
        self.when = when
        self.expired = False


class Deadlines:
    """The bounds of one loop's calls. It keeps no reference to the loop (only its timer does)."""

    def __init__(self) -> None:
        self._calls: dict[Bound, None] = {}  # the calls in flight, as an ordered set
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf

    def enter(self, seconds: float) -> Bound:
        """Bound the current task's call to ``seconds`` from now."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None, "calls run in tasks"
        bound = Bound(task, loop.time() + seconds)
        self._calls[bound] = None
        if bound.when < self._at:
            self._arm(bound.when)
        return bound

    def leave(self, bound: Bound) -> bool:
        """The call is over. True if it ran out of time, and so was cancelled here (that
        cancellation is taken back: the task's ``cancelling()`` counts only others')."""
        del self._calls[bound]
        if bound.expired:
            bound.task.uncancel()
            return True
        return False

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(when, self._fire)
        self._at = when

    def _fire(self) -> None:
        self._timer, self._at = None, math.inf
        now = asyncio.get_running_loop().time() + _SLACK
        soonest = math.inf
        for bound in self._calls:
            if bound.expired:
                continue
            if bound.when <= now:
                bound.expired = True
                bound.task.cancel()
            elif bound.when < soonest:
                soonest = bound.when
        if soonest < math.inf:
            self._arm(soonest)


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = weakref.WeakKeyDictionary()


def deadlines() -> Deadlines:
    """The running loop's deadlines, shared by every job on it."""
    loop = asyncio.get_running_loop()
    found = _by_loop.get(loop)
    if found is None:
        found = _by_loop[loop] = Deadlines()
    return found
