"""A running job: a task on the caller's loop, its event history, and its consumers."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from pathlib import Path
from typing import Any

from . import events as ev
from . import running
from .candidate import Candidate
from .engine.beam import BeamSearch
from .errors import BeamkitError, ErrorCode, InvalidRequest
from .events import JobStatus
from .params import JobParams
from .providers import Roles, resolve
from .ratings import Ref, make_rating, parse_ref
from .result import Result
from .settings import DEFAULT_OUTPUT
from .state import SessionState
from .storage import SessionStore, append_rating, read_ratings
from .storage.owner import CANCEL_POLL_S

log = logging.getLogger(__name__)
#: why a job stopped by its process's shutdown ended (the same words a session whose process died reads back with)
INTERRUPTED_BY_SHUTDOWN = "the server stopped before this job finished"
Listener = Callable[[ev.Event], None]


def new_job_id() -> str:
    return f"job-{secrets.token_hex(6)}"


class Job:
    """Returned by ``beamkit.start``. Await it for the Result; iterate ``events()`` to watch it."""

    def __init__(
        self,
        params: JobParams,
        output: str | os.PathLike[str] = DEFAULT_OUTPUT,
        *,
        job_id: str | None = None,
        provider_settings: dict[str, Any] | None = None,
        roles: Roles | None = None,
    ) -> None:
        loop = _running_loop()
        self.id = job_id or new_job_id()
        self.params = params.with_seed()
        #: what the job's events say so far: its status, error and progress come from here
        self.state = SessionState(self.id, self.params.to_dict())
        self.history: list[ev.Event] = []
        #: set when the session folder could not be written: the job ends with it, and the log is not written again
        self.storage_error: BeamkitError | None = None
        self._interrupted: str | None = None  # set by interrupt(): the process is going away
        self._cancel_watch: asyncio.TimerHandle | None = None
        self._listeners: list[Listener] = []
        self._changed = asyncio.Event()
        # Roles are resolved first, so that a bad name or setting fails here, at once, leaving nothing on disk.
        # A server resolves them itself (its own settings, a request's headers) and hands them in.
        #: kept for ``estimate()``; never shown (it may hold a key)
        self._provider_settings = dict(provider_settings or {}) if roles is None else None
        self._providers = roles or resolve(
            self.params.providers, provider_settings, temperature=self.params.temperature,
            seed=self.params.seed or 0, prompt=self.params.prompt,
        )
        self.store = SessionStore(output, self.id)
        self._search = BeamSearch(self.id, self.params, self._providers, self.store, self._emit)
        #: set while a steered job waits for a person's review: resolved by ``keep``
        self._review: asyncio.Future[list[Ref] | None] | None = None
        self._pool: dict[Ref, Candidate] = {}
        if self.params.steer:
            self._search.reviewer = self._await_review
        self.store.create()
        self._task = loop.create_task(self._run(), name=f"beamkit {self.id}")
        running.add(self)  # until it ends: a job whose widget is gone can still be found and stopped

    # -- public -------------------------------------------------------------------------------

    @property
    def folder(self) -> Path:
        return self.store.folder

    @property
    def result(self) -> Result:
        """What is known so far (complete once the job is done)."""
        r = self._search.record
        return Result(r.job_id, r.config, r.status, r.candidates, r.beams, r.duration_ms, r.usage, r.error, self.folder,
                      stopped_by=r.stopped_by, ratings=read_ratings(self.folder))

    @property
    def status(self) -> JobStatus:
        return self.state.status

    @property
    def error(self) -> dict[str, Any] | None:
        return self.state.error

    @property
    def done(self) -> bool:
        return self.state.done

    @property
    def progress(self) -> dict[str, int]:
        return self.state.progress

    # -- a person in the loop (docs/human-in-the-loop.md) -------------------------------------

    def rate(self, a: Any, b: Any, winner: Any) -> dict[str, Any]:
        """Record that the person prefers ``a`` (winner "a") or ``b`` (winner "b"), each a scored
        candidate as (iteration, candidateId) or "i-c"; appended to the session's ratings.jsonl."""
        rating = make_rating(a, b, winner, known=[k for k, c in self.state.candidates.items() if c.ok])
        append_rating(self.folder, rating)
        return rating

    @property
    def ratings(self) -> list[dict[str, Any]]:
        return read_ratings(self.folder)

    @property
    def reviewing(self) -> bool:
        """Whether the job waits for a person to keep or change the proposed beam (``steer=True``)."""
        return self._review is not None and not self._review.done()

    @property
    def pool(self) -> list[Ref]:
        """What the beam under review may be picked from (the last beam and the iteration's scored children)."""
        return list(self._pool) if self.reviewing else []

    def keep(self, refs: Iterable[Any] | None) -> None:
        """Answer the review: keep ``refs`` (1 to M candidates of the pool, best first) as the beam,
        or None to stop the job now, completed with the current beam. Raises InvalidRequest
        when the job is not waiting for a review, or naming a pick that is not allowed."""
        if not self.reviewing or self._review is None:
            raise InvalidRequest(f"job {self.id} is not waiting for a review", "keep")
        if refs is None:
            self._review.set_result(None)
            return
        picks = [parse_ref(r, "keep") for r in refs] if isinstance(refs, (list, tuple)) else None
        if not picks:
            raise InvalidRequest("'keep' must be a non-empty list of candidates (or null to stop)", "keep")
        if len(picks) > self.params.M:
            raise InvalidRequest(f"'keep' holds {len(picks)} candidates, more than the beam width M={self.params.M}", "keep")
        for ref in picks:
            if ref not in self._pool:
                raise InvalidRequest(f"'keep': {ref[0]}-{ref[1]} is not in the pool of this review", "keep")
        if len(set(picks)) != len(picks):
            raise InvalidRequest("'keep' names a candidate twice", "keep")
        self._review.set_result(picks)

    def _await_review(self, iteration: int, proposed: list[Candidate], pool: list[Candidate]) -> asyncio.Future[list[Ref] | None]:
        # A future, made at once: the review's event finds the job waiting. Cancelling the job
        # cancels the engine's await of it, and so the future.
        self._pool = {c.key: c for c in pool}
        self._review = asyncio.get_running_loop().create_future()
        return self._review

    def cancel(self) -> bool:
        """Stop the job, calls in flight included. Finished work stays on disk."""
        if self.done:
            return False
        if self.status == JobStatus.PENDING:  # the task never ran, so its own handler will not report it
            self._task.cancel()
            status, message, code, context = self._stop_reason()
            self._record_end(status, message, code)
            self._emit(ev.error(self.id, message, code, **context))
            self.store.close()  # the task that would have closed it never runs; the store's thread does it
            running.discard(self)
            return True
        return self._task.cancel()

    def interrupt(self, why: str = INTERRUPTED_BY_SHUTDOWN) -> bool:
        """Stop the job because its process is going away (a server shutting down on SIGTERM), not
        because anybody cancelled it: it ends as ``interrupted``, as a session whose process died
        reads back, with an ``error`` event (INTERNAL_ERROR, ``interrupted: true``)."""
        if self.done:
            return False
        self._interrupted = why
        return self.cancel()

    def _stop_reason(self) -> tuple[JobStatus, str, ErrorCode, dict[str, Any]]:
        """How a stopped task is recorded: cancelled by someone, or interrupted by its process."""
        if self._interrupted is not None:
            return JobStatus.INTERRUPTED, f"Job was interrupted: {self._interrupted}", ErrorCode.INTERNAL_ERROR, {"interrupted": True}
        return JobStatus.CANCELLED, "Job was cancelled", ErrorCode.CANCELLED, {}

    async def events(self, start: int = 0) -> AsyncIterator[ev.Event]:
        """Every event from ``start`` (default: the first), then live ones, until the job ends."""
        i = start
        while True:
            while i < len(self.history):
                event = self.history[i]
                i += 1
                yield event
                if ev.is_terminal(event):
                    return
            if self.done:
                return
            changed = self._changed
            await changed.wait()

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for each new event, synchronously; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def __await__(self) -> Generator[Any, None, Result]:
        return self.wait().__await__()

    @property
    def usage(self) -> dict[str, Any]:
        """What the job's providers used and cost so far (calls, tokens, images, cost), live."""
        try:
            return dict(self._providers.usage())
        except Exception:  # a provider's bookkeeping must not break a view of the job
            log.debug("usage of %s failed", self.id, exc_info=True)
            return dict(self.state.usage)

    def estimate(self) -> dict[str, Any] | None:
        """``beamkit.estimate`` for this job's parameters and settings (None for a server's job,
        whose settings are the server's)."""
        if self._provider_settings is None:
            return None
        from .estimate import estimate

        return estimate(self.params.to_dict(), provider_settings=self._provider_settings or None)

    async def wait(self) -> Result:
        """The Result, once the job has ended; raises BeamkitError if it failed or was cancelled.

        Cancelling the waiter leaves the job running (a server's task, ``asyncio.wait_for``),
        except where the waiter is a notebook cell that the user interrupts (the kernel's Stop
        button cancels the cell's task) or a KeyboardInterrupt reaches it: then the job is
        cancelled too, so that no job runs on out of sight.
        """
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if not self._task.cancelled():
                if running.awaited_by_a_cell():
                    self.cancel()
                raise  # the caller of wait() was cancelled, not the job
        except KeyboardInterrupt:
            self.cancel()
            raise
        if self.status == JobStatus.COMPLETED:
            return self.result
        assert self.error is not None
        raise BeamkitError.from_code(self.error["code"], self.error["message"])  # JobCancelled for CANCELLED

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .widget import mimebundle  # lazy: `import beamkit` stays free of ipywidgets

        return mimebundle(self, include, exclude)

    def _ipython_display_(self) -> None:
        from .widget.display import show  # the live widget, then a static view kept up to date for saving

        show(self)

    def __repr__(self) -> str:
        pr = self.progress
        return f"<Job {self.id} {self.status} {pr['candidatesProcessed']}/{pr['totalCandidates']} candidates>"

    # -- internals -------------------------------------------------------------------------------

    def _emit(self, event: ev.Event) -> None:
        if self.storage_error is None:
            try:
                self.store.append_line(ev.encode(event))  # encoded once: the server sends the same text
            except OSError as exc:
                self._storage_failed(exc, ev.is_terminal(event))
        self.state.apply(event)  # before listeners run, so they see the job as the event left it
        self.history.append(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a consumer's bug must not stop the job or the other consumers
                log.exception("beamkit event listener failed")
        self._changed.set()
        self._changed = asyncio.Event()

    def _storage_failed(self, exc: OSError, last: bool) -> None:
        """The log could not be written (disk full, file too large, read-only, no descriptors): the
        event still reaches every consumer, and the job ends with an INTERNAL_ERROR that says why.
        Nothing more is written to the folder, so the failure is logged once, not once per event."""
        reason = exc.strerror or str(exc) or type(exc).__name__
        self.storage_error = BeamkitError(
            f"beamkit could not write the session folder {self.folder}: {reason}", ErrorCode.INTERNAL_ERROR)
        log.error("job %s stopped: %s", self.id, self.storage_error.message)
        if not last and not self._task.done():  # a last event ends the job anyway
            self._task.cancel()  # the engine stops as on a cancel; _run reports the storage error instead

    def _record_end(self, status: JobStatus, message: str, code: str) -> None:
        """How the job ended, in its session's metadata (written in the background); the job's own
        status follows from the ``error`` event that comes next."""
        record = self._search.record
        record.status, record.error = status, {"message": message, "code": code}
        if self.storage_error is not None:  # the folder cannot be written: the error is in the events only
            return
        try:
            record.usage = self._providers.usage()
            self.state.set_usage(record.usage)  # an error event carries no usage
            self.store.checkpoint(record)
        except Exception:
            log.exception("beamkit could not write metadata of %s", self.id)

    async def _fail(self, status: JobStatus, message: str, code: str, **context: Any) -> None:
        self._record_end(status, message, code)
        try:
            if self.storage_error is None:
                await self.store.flush()  # the metadata is on disk before the last event says the job is over
        except Exception:
            log.exception("beamkit could not write metadata of %s", self.id)
        finally:
            self._emit(ev.error(self.id, message, code, **context))

    def _watch_cancel(self) -> None:
        """A process sharing the output folder asks for a cancel with a file (storage/owner.py): looked for
        a few times a second, a stat each time, so that such a cancel takes effect within a second."""
        if self.done:
            return
        try:
            asked = self.store.cancel_requested()
        except OSError:
            asked = False
        if asked:
            log.info("job %s cancelled at the request of another process", self.id)
            self.cancel()
            return
        self._cancel_watch = asyncio.get_running_loop().call_later(CANCEL_POLL_S, self._watch_cancel)

    async def _run(self) -> None:
        self.state.begin()
        self._watch_cancel()
        try:
            await self._search.run()
            if self.storage_error is not None:  # the search finished before the cancel reached it
                await self._fail(JobStatus.ERROR, self.storage_error.message, ErrorCode.INTERNAL_ERROR)
            else:
                self._emit(ev.complete(self.id, self.result.to_dict()))
        except asyncio.CancelledError:
            if self.storage_error is not None:
                await self._fail(JobStatus.ERROR, self.storage_error.message, ErrorCode.INTERNAL_ERROR)
            else:
                status, message, code, context = self._stop_reason()
                await self._fail(status, message, code, **context)
        except BeamkitError as exc:
            await self._fail(JobStatus.from_error(exc.code), exc.message, exc.code)
        except Exception as exc:
            log.exception("beamkit job %s crashed", self.id)
            await self._fail(JobStatus.ERROR, f"internal error: {type(exc).__name__}: {exc}", ErrorCode.INTERNAL_ERROR)
        finally:
            running.discard(self)
            if self._cancel_watch is not None:
                self._cancel_watch.cancel()
            if self._providers.aclose is not None:
                try:
                    closing = self._providers.aclose()
                    if inspect.isawaitable(closing):
                        await asyncio.shield(closing)
                except BaseException:
                    log.debug("closing providers of %s failed", self.id, exc_info=True)
            try:
                await self.store.close()
            except Exception:
                if self.storage_error is None:  # otherwise already reported
                    log.exception("beamkit could not close the session of %s", self.id)


def _running_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "beamkit.start() needs a running asyncio loop (a notebook cell or an async function); "
            "in a plain script use beamkit.run(...)"
        ) from None


__all__ = ["Job", "Candidate", "new_job_id"]
