"""Call limits that hold across every worker of a cluster: one Dask ``Semaphore`` per provider and kind.

The engine's own limiter (``beamkit/engine/limits.py``) bounds one process; a sweep's
workers are many processes, so an API's limit would be multiplied by their number. In a
worker, a sweep installs :func:`gate_factory`'s factory through the engine's
``limits.set_shared`` hook; every call of a limited kind then also holds a lease of a
semaphore that lives on the scheduler:

- ``concurrency``: a semaphore of that many leases, held for the call;
- ``per_minute``: a semaphore of that many leases, each taken when a call starts and given
  back a minute later (a sliding window over the whole cluster). A worker that dies keeps
  its leases until the scheduler times them out (``distributed.scheduler.locks.lease-timeout``,
  30 s by default), so for that long the window may admit a few more.

Semaphores are named by what they limit (not by sweep), so two sweeps on one cluster share them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest

MINUTE = 60.0
#: seconds one blocking acquire waits before it checks again whether its call was cancelled
POLL = 1.0
KINDS = ("llm", "image", "vision")

# Dask's semaphore API blocks; it runs in threads of its own so that a call waiting for a lease
# never takes a thread that a running call needs (the offline painter paints in the loop's executor).
_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="beamkit-gate")
_semaphores: dict[str, Any] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ClusterLimit:
    concurrency: int | None = None
    per_minute: int | None = None


LimitsLike = Mapping[str, Any]


def parse(limits: LimitsLike | None) -> dict[str, dict[str, ClusterLimit]]:
    """``{"image": 2}``, ``{"image": {"concurrency": 2, "per_minute": 50}}`` (every provider), or
    ``{"openai": {"image": 2}}`` (one provider) -> provider ("*" for all) -> kind -> limit."""
    out: dict[str, dict[str, ClusterLimit]] = {}
    for key, value in (limits or {}).items():
        if key in KINDS:
            out.setdefault("*", {})[key] = _limit(key, value)
        elif isinstance(value, Mapping) and value and set(value) <= set(KINDS):
            out[key] = {kind: _limit(f"{key}.{kind}", v) for kind, v in value.items()}
        else:
            raise InvalidRequest(f"limits: '{key}' is neither a kind ({', '.join(KINDS)}) nor a provider "
                                 "mapping kinds to limits", "limits")
    return out


def _positive(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"limits: {name} must be a positive integer, got {value!r}", "limits")
    return value


def _limit(name: str, value: Any) -> ClusterLimit:
    if isinstance(value, Mapping):
        unknown = set(value) - {"concurrency", "per_minute"}
        if unknown:
            raise InvalidRequest(f"limits: {name} takes concurrency and per_minute, not {sorted(unknown)[0]}", "limits")
        return ClusterLimit(_positive(f"{name}.concurrency", value.get("concurrency")),
                            _positive(f"{name}.per_minute", value.get("per_minute")))
    return ClusterLimit(_positive(name, value))


def to_wire(parsed: dict[str, dict[str, ClusterLimit]]) -> dict[str, dict[str, list[int | None]]]:
    return {p: {k: [v.concurrency, v.per_minute] for k, v in kinds.items()} for p, kinds in parsed.items()}


def from_wire(wire: Mapping[str, Mapping[str, list[int | None]]]) -> dict[str, dict[str, ClusterLimit]]:
    return {p: {k: ClusterLimit(*v) for k, v in kinds.items()} for p, kinds in wire.items()}


def lookup(parsed: dict[str, dict[str, ClusterLimit]], key: str, kind: str) -> ClusterLimit | None:
    """The limit for the engine's limiter ``key`` (a provider's name, maybe with a role: "openai",
    "openai:image") and ``kind``; a provider's own entry wins over the "*" one."""
    for name in (key, key.split(":")[0].split(".")[0], "*"):
        found = parsed.get(name, {}).get(kind)
        if found is not None:
            return found
    return None


def _semaphore(name: str, leases: int) -> Any:
    from distributed import Semaphore

    with _lock:
        if name not in _semaphores:
            _semaphores[name] = Semaphore(max_leases=leases, name=name)
        return _semaphores[name]


async def _take(sem: Any) -> None:
    """One lease of ``sem``; if the caller is cancelled meanwhile, a lease that arrives later goes back."""
    loop = asyncio.get_running_loop()
    while True:
        pending = loop.run_in_executor(_pool, lambda: sem.acquire(timeout=POLL))
        try:
            if await asyncio.shield(pending):
                return
        except asyncio.CancelledError:
            pending.add_done_callback(lambda f: _give_back_late(sem, f))
            raise


def _give_back_late(sem: Any, acquired: asyncio.Future[bool]) -> None:
    if not acquired.cancelled() and acquired.exception() is None and acquired.result():
        _pool.submit(sem.release)


class ClusterGate:
    """What each call of one (provider, kind) passes, besides the process's own limiter."""

    def __init__(self, key: str, kind: str, limit: ClusterLimit, window: float = MINUTE) -> None:
        base = f"beamkit-limit-{key}-{kind}"
        self.window = window
        self._slots = _semaphore(f"{base}-c{limit.concurrency}", limit.concurrency) if limit.concurrency else None
        self._rate = _semaphore(f"{base}-m{limit.per_minute}", limit.per_minute) if limit.per_minute else None

    async def acquire(self) -> None:
        if self._slots is not None:
            await _take(self._slots)
        if self._rate is not None:
            try:
                await _take(self._rate)
            except BaseException:
                self.release()
                raise
            timer = threading.Timer(self.window, self._rate.release)
            timer.daemon = True
            timer.start()

    def release(self) -> None:
        """Give the lease back without waiting for the scheduler's answer (the engine releases synchronously)."""
        if self._slots is not None:
            _pool.submit(self._slots.release)


def gate_factory(parsed: dict[str, dict[str, ClusterLimit]]) -> Any:
    """The factory for the engine's ``limits.set_shared`` hook: (limiter key, kind, the provider's Limit) -> gate or None."""

    def make(key: str, kind: str, _local: Any = None) -> ClusterGate | None:
        limit = lookup(parsed, key, kind)
        return ClusterGate(key, kind, limit) if limit is not None else None

    return make


__all__ = ["ClusterGate", "ClusterLimit", "from_wire", "gate_factory", "lookup", "parse", "to_wire"]
