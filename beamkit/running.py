"""The jobs running in this process: in a notebook, the kernel's.

Every ``Job`` joins when it is made and leaves when it ends, so a job whose widget is gone
(its cell was run again) is still found and can be stopped: ``beamkit.jobs()`` lists them,
each with a Cancel button in a notebook, and a new job's widget says when others still run.

Kept here, not in ``job.py``, because the widget and the interrupt rule read it too, and
``import beamkit`` must stay free of IPython: nothing here imports it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import Job

log = logging.getLogger(__name__)

#: job id -> job, in the order they started; a job leaves when it ends
_jobs: dict[str, Job] = {}
#: called with no argument when a job joins or leaves; held weakly, so a dropped widget is no subscriber
_subscribers: list[weakref.ref[Any]] = []


def add(job: Job) -> None:
    _jobs[job.id] = job
    _notify()


def discard(job: Job) -> None:
    if _jobs.get(job.id) is job:
        del _jobs[job.id]
        _notify()


def running() -> list[Job]:
    """The jobs of this process that have not ended, oldest first."""
    return [j for j in _jobs.values() if not j.done]


def get(job_id: str) -> Job | None:
    return _jobs.get(job_id)


def subscribe(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback()`` whenever a job starts or ends; returns a function that stops it.

    A bound method is held weakly (its object may go away without unsubscribing).
    """
    ref: weakref.ref[Any]
    try:
        ref = weakref.WeakMethod(callback)
    except TypeError:
        ref = weakref.ref(callback)
    _subscribers.append(ref)

    def stop() -> None:
        if ref in _subscribers:
            _subscribers.remove(ref)

    return stop


def _notify() -> None:
    for ref in list(_subscribers):
        callback = ref()
        if callback is None:
            _subscribers.remove(ref)
            continue
        try:
            callback()
        except Exception:  # a view's bug must not stop a job from starting or ending
            log.exception("beamkit: a job-list subscriber failed")


def awaited_by_a_cell() -> bool:
    """Whether the running task is an IPython cell (top-level ``await`` in a notebook).

    ipykernel runs such a cell as a task of ``InteractiveShell.run_cell_async`` and cancels
    that task when the user interrupts the kernel; a server's or a library's own task is
    never that coroutine, so its cancellation leaves the job alone.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    if task is None:
        return False
    return getattr(task.get_coro(), "__qualname__", "").endswith("InteractiveShell.run_cell_async")


class JobList:
    """What ``beamkit.jobs()`` returns: the jobs running when it was called.

    In a notebook it shows as a table with a Cancel button per job (and follows the
    jobs as they progress, end or start); elsewhere as text. Iterate it for the ``Job``s.
    """

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = list(jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> Job:
        return self.jobs[i]

    def cancel_all(self) -> int:
        """Cancel every job of the list that still runs; returns how many were cancelled."""
        return sum(1 for j in self.jobs if j.cancel())

    def widget(self) -> Any:
        """The table, with a Cancel button per job (needs ipywidgets)."""
        from .widget.joblist import JobListWidget

        return JobListWidget()

    def _ipython_display_(self) -> None:
        from .widget.display import show_jobs

        show_jobs(self)

    def __repr__(self) -> str:
        if not self.jobs:
            return "<no beamkit job running>"
        lines = [f"{len(self.jobs)} beamkit job{'s' if len(self.jobs) != 1 else ''}:"]
        for j in self.jobs:
            p = j.progress
            lines.append(f"  {j.id}  {j.status}  {p['candidatesProcessed']}/{p['totalCandidates']}  {j.params.prompt[:60]!r}")
        return "\n".join(lines)


def jobs() -> JobList:
    """The jobs running in this process (a notebook's kernel), oldest first.

    Displayed in a notebook it is a table with a Cancel button for each; ``cancel_all()``
    stops them all.
    """
    return JobList(running())


__all__ = ["JobList", "jobs", "running", "get", "add", "discard", "subscribe", "awaited_by_a_cell"]
