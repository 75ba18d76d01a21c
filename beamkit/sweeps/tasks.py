"""What runs on a worker: one job of a sweep, on a fresh event loop, through the public API.

:func:`run_job` never raises: a job that fails (or cannot even start) comes back as an
outcome with its error, so one bad job is one row, never a crashed sweep.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import Any

from .. import api, storage
from ..errors import BeamkitError, ErrorCode
from ..result import Result
from . import gates, rows

log = logging.getLogger(__name__)
#: seconds between a watcher's checks that its job has ended (it wakes at once on a cancel)
WATCH_POLL = 1.0
#: where an unfinished session is moved before its job runs again, so nothing is lost
ATTEMPTS = "attempts"
#: glibc tunables that, once set, switch off its adaptive mmap threshold (docs/sweeps.md)
MALLOC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_warned_malloc = False


def session_folder(output: str | os.PathLike[str], job_id: str) -> Path:
    return storage.session_folder(output, job_id)


def finished(folder: Path) -> dict[str, Any] | None:
    """The outcome of a session that completed, or None (no session, or one that did not complete)."""
    if not folder.is_dir():
        return None
    try:
        result = api.load(folder)
    except BeamkitError:
        return None
    if str(result.status) != "completed":
        return None
    return {**rows.outcome(result), "resumed": True}


def _set_aside(folder: Path) -> None:
    """Move an unfinished session out of the way of its rerun (keeping it, for whoever wants to know why)."""
    if not folder.exists():
        return
    attempts = folder.parent.parent / ATTEMPTS
    attempts.mkdir(parents=True, exist_ok=True)
    n = 1
    while (attempts / f"{folder.name}-{n}").exists():
        n += 1
    os.replace(folder, attempts / f"{folder.name}-{n}")


def _warn_malloc_once() -> None:
    global _warned_malloc
    if _warned_malloc:
        return
    _warned_malloc = True
    found = [v for v in MALLOC_VARIABLES if v in os.environ]
    if found:
        log.warning("this worker runs with %s set, which makes the offline painter about twice as slow; "
                    "see docs/sweeps.md (MALLOC_TRIM_THRESHOLD_)", ", ".join(found))


def run_job(job: dict[str, Any], output: str, cancel_event: str | None = None,
            limits: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one job (a ``JobSpec.to_dict()``) into ``output``; its outcome, with ``ran`` saying whether it ran."""
    try:
        _warn_malloc_once()
        event = _cancel_event(cancel_event)
        if event is not None and event.is_set():
            return {**rows.failed(ErrorCode.CANCELLED, "the sweep was cancelled before this job ran"), "ran": False}
        folder = session_folder(output, job["job_id"])
        done = finished(folder)
        if done is not None:  # another sweep over the same output got there first
            return {**done, "ran": False}
        _set_aside(folder)
        return {**asyncio.run(_run(job, output, event, limits)), "ran": True}
    except Exception as exc:  # whatever goes wrong, the sweep gets a row, not a dead task
        log.exception("sweep job %s failed outside its session", job.get("job_id"))
        return {**rows.failed(ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"), "ran": True}


def _cancel_event(name: str | None) -> Any:
    if name is None:
        return None
    from distributed import Event

    event = Event(name)
    event.client  # noqa: B018 - binds the worker's client here, in the task's thread, for the watcher thread
    return event


async def _run(job: dict[str, Any], output: str, event: Any, limits: dict[str, Any] | None) -> dict[str, Any]:
    if limits:
        _install_gates(limits)
    try:
        running = api.start(job["prompt"], **job["params"], seed=job["seed"], output=output, job_id=job["job_id"])
    except BeamkitError as exc:  # a bad provider name or setting: nothing ran, nothing on disk
        return rows.failed(exc.code, exc.message)
    stop = threading.Event()
    if event is not None:
        loop = asyncio.get_running_loop()
        threading.Thread(target=_watch, args=(event, stop, loop, running), daemon=True,
                         name=f"beamkit-watch-{job['job_id']}").start()
    try:
        result: Result = await running
    except BeamkitError:
        result = running.result
    finally:
        stop.set()
    return rows.outcome(result)


def _watch(event: Any, stop: threading.Event, loop: asyncio.AbstractEventLoop, job: Any) -> None:
    """Turn the sweep's cancel event into ``job.cancel()`` on the job's loop."""
    while not stop.is_set():
        try:
            if not event.wait(timeout=WATCH_POLL):
                continue
        except Exception:  # the scheduler is gone: there is no one left to cancel us
            return
        if not stop.is_set():
            try:
                loop.call_soon_threadsafe(job.cancel)
            except RuntimeError:  # the loop closed: the job ended meanwhile
                pass
        return


def _install_gates(limits: dict[str, Any]) -> None:
    from ..engine import limits as engine_limits

    engine_limits.set_shared(gates.gate_factory(gates.from_wire(limits)))


__all__ = ["finished", "run_job", "session_folder"]
