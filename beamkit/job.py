"""A running job: a task on the caller's loop, its event history, and its consumers."""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Generator

from . import events as ev
from .candidate import Candidate
from .engine.beam import BeamSearch
from .errors import BeamkitError, ErrorCode, JobCancelled
from .params import JobParams
from .providers import ProviderOptions, registry
from .result import Result
from .storage import SessionStore

log = logging.getLogger(__name__)
Listener = Callable[[dict[str, Any]], None]

PENDING, RUNNING, COMPLETED, ERROR, CANCELLED = "pending", "running", "completed", "error", "cancelled"


def new_job_id() -> str:
    return f"job-{secrets.token_hex(6)}"


class Job:
    """Returned by ``beamkit.start``. Await it for the Result; iterate ``events()`` to watch it."""

    def __init__(
        self,
        params: JobParams,
        output: str | Path = "output",
        *,
        job_id: str | None = None,
        provider_settings: dict[str, Any] | None = None,
    ) -> None:
        loop = _running_loop()
        self.id = job_id or new_job_id()
        self.params = params.with_seed()
        self.status = PENDING
        self.history: list[dict[str, Any]] = []
        self.error: dict[str, str] | None = None
        self._listeners: list[Listener] = []
        self._changed = asyncio.Event()
        # Provider sets are built first, so that a bad name or config fails here, at once, leaving nothing on disk.
        self._providers = registry.create(
            self.params.providers,
            ProviderOptions(temperature=self.params.temperature, seed=self.params.seed or 0, settings=provider_settings or {}),
        )
        self.store = SessionStore(output, self.id)
        self.store.create()
        self._search = BeamSearch(self.id, self.params, self._providers, self.store, self._emit)
        self._task = loop.create_task(self._run(), name=f"beamkit {self.id}")

    # -- public -------------------------------------------------------------------------------

    @property
    def folder(self) -> Path:
        return self.store.folder

    @property
    def result(self) -> Result:
        """What is known so far (complete once the job is done)."""
        return self._search.result

    @property
    def done(self) -> bool:
        return self.status in (COMPLETED, ERROR, CANCELLED)

    @property
    def progress(self) -> dict[str, int]:
        p = self.params
        current = max((e["iteration"] for e in self.history if e["type"] == ev.ITERATION), default=0)
        processed = sum(1 for e in self.history if e["type"] == ev.CANDIDATE)
        return {
            "currentIteration": current,
            "totalIterations": p.iterations,
            "candidatesProcessed": processed,
            "totalCandidates": p.N * p.iterations,
        }

    def cancel(self) -> bool:
        """Stop the job, calls in flight included. Finished work stays on disk."""
        if self.done:
            return False
        if self.status == PENDING:  # the task never ran, so its own handler will not report it
            self._task.cancel()
            self._fail(CANCELLED, "Job was cancelled", ErrorCode.CANCELLED)
            return True
        return self._task.cancel()

    async def events(self, start: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Every event from ``start`` (default: the first), then live ones, until the job ends."""
        i = start
        while True:
            while i < len(self.history):
                event = self.history[i]
                i += 1
                yield event
                if event["type"] in ev.TERMINAL:
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

    async def wait(self) -> Result:
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if not self._task.cancelled():
                raise  # the caller of wait() was cancelled, not the job
        if self.status == COMPLETED:
            return self.result
        assert self.error is not None
        if self.status == CANCELLED:
            raise JobCancelled(self.error["message"])
        raise BeamkitError(self.error["message"], self.error["code"])

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .widget import mimebundle  # lazy: `import beamkit` stays free of ipywidgets

        return mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        pr = self.progress
        return f"<Job {self.id} {self.status} {pr['candidatesProcessed']}/{pr['totalCandidates']} candidates>"

    # -- internals -------------------------------------------------------------------------------

    def _emit(self, event: dict[str, Any]) -> None:
        if event["type"] == ev.COMPLETE:
            self.status = COMPLETED  # before listeners run, so they see a finished job
        self.store.append_event(event)
        self.history.append(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a consumer's bug must not stop the job or the other consumers
                log.exception("beamkit event listener failed")
        self._changed.set()
        self._changed = asyncio.Event()

    def _fail(self, status: str, message: str, code: str) -> None:
        self.status = status
        self.error = {"message": message, "code": code}
        self.result.status = status
        self.result.error = self.error
        try:
            self.result.usage = self._providers.usage()
            self.store.write_metadata(self.result.metadata())
        except Exception:
            log.exception("beamkit could not write metadata of %s", self.id)
        self._emit(ev.error(self.id, message, code))

    async def _run(self) -> None:
        self.status = RUNNING
        try:
            await self._search.run()
        except asyncio.CancelledError:
            self._fail(CANCELLED, "Job was cancelled", ErrorCode.CANCELLED)
        except BeamkitError as exc:
            self._fail(ERROR, exc.message, exc.code)
        except Exception as exc:
            log.exception("beamkit job %s crashed", self.id)
            self._fail(ERROR, f"internal error: {type(exc).__name__}: {exc}", ErrorCode.INTERNAL_ERROR)
        finally:
            if self._providers.aclose is not None:
                try:
                    closing = self._providers.aclose()
                    if inspect.isawaitable(closing):
                        await asyncio.shield(closing)
                except BaseException:
                    log.debug("closing providers of %s failed", self.id, exc_info=True)


def _running_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "beamkit.start() needs a running asyncio loop (a notebook cell or an async function); "
            "in a plain script use beamkit.run(...)"
        ) from None


__all__ = ["Job", "Candidate", "new_job_id"]
