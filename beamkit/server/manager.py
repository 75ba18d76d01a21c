"""The job manager shared by the standalone server and the Jupyter extension.

It starts jobs through the engine (at most ``max_jobs`` at once), fans each job's
events out to WebSocket subscribers, and answers for past jobs from the output
folder. A finished job's ``Job`` object is dropped: its session stays on disk, and
its events are replayed from ``events.jsonl``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import events as ev
from .. import storage
from ..errors import BeamkitError, ErrorCode, NotFound
from ..job import Job
from ..params import all_text, validate
from ..providers import registry
from ..result import load as load_result

log = logging.getLogger(__name__)

#: ``sink(line, terminal)``: called synchronously with each new event of a job, as wire text.
Sink = Callable[[str, bool], None]

INTERRUPTED_MESSAGE = "the server stopped before this job finished"


#: An event as sent on a WebSocket: the same text that ``events.jsonl`` holds.
wire = storage.event_line


def from_wire(data: str | bytes) -> Any:
    """A client's JSON (a REST body, a WebSocket message) as Python values.

    Raises ValueError (or RecursionError) for anything that is not JSON text, including JSON
    whose strings are not text: ``"\\ud800"`` is valid JSON but decodes to a lone surrogate,
    which could be neither stored, nor logged, nor sent back in an answer.
    """
    value = json.loads(data)
    if not all_text(value):
        raise ValueError("a string holds a lone UTF-16 surrogate, which is not text")
    return value


@dataclass
class Feed:
    """A live job's events as wire text, and the sinks that follow it."""

    job: Job
    created: str
    lines: list[str] = field(default_factory=list)
    sinks: list[Sink] = field(default_factory=list)
    ended: bool = False

    def publish(self, event: dict[str, Any]) -> None:
        line = wire(event)
        self.lines.append(line)
        terminal = event["type"] in ev.TERMINAL
        self.ended = self.ended or terminal
        for sink in tuple(self.sinks):
            try:
                sink(line, terminal)
            except Exception:  # one subscriber's failure must not reach the job or the others
                log.exception("beamkit subscriber failed")
        if terminal:
            self.sinks.clear()


@dataclass
class Subscription:
    """What ``subscribe`` returns: the events so far (``lines[:count]``), and how to stop."""

    lines: list[str]
    count: int
    live: bool
    cancel: Callable[[], None] = lambda: None


class JobManager:
    def __init__(
        self,
        output: str | os.PathLike[str] = "output",
        *,
        max_jobs: int = 4,
        providers: str = "offline",
        provider_settings: dict[str, dict[str, Any]] | None = None,
        replay_cache: int = 16,
    ) -> None:
        if max_jobs < 1:
            raise ValueError("max_jobs must be at least 1")
        self.output = Path(output)
        self.max_jobs = max_jobs
        self.default_providers = providers
        #: settings for each provider set, by its name (models, base URL, limits); a request's own win
        self.provider_settings = dict(provider_settings or {})
        self._live: dict[str, Feed] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._summaries: dict[str, dict[str, Any]] = {}  # finished jobs, read once
        self._replays: OrderedDict[str, list[str]] = OrderedDict()
        self._replay_cache = replay_cache
        self.closed = False

    # -- jobs -------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._live)

    def start(self, body: Any, provider_settings: dict[str, Any] | None = None) -> Job:
        """Validate a request body and start its job; raises InvalidRequest or RATE_LIMIT."""
        if self.closed:
            raise BeamkitError("the server is shutting down", ErrorCode.RATE_LIMIT)
        if isinstance(body, dict) and "providers" not in body:
            body = {**body, "providers": self.default_providers}
        params = validate(body)
        registry.get_factory(params.providers)  # an unknown set is a 400 before any folder is made
        if len(self._live) >= self.max_jobs:
            raise BeamkitError(
                f"{len(self._live)} jobs are running, the most this server allows; try again when one ends",
                ErrorCode.RATE_LIMIT,
                maxJobs=self.max_jobs,
            )
        settings = {**self.provider_settings.get(params.providers, {}), **(provider_settings or {})}
        job = Job(params, self.output, provider_settings=settings or None)
        feed = Feed(job, ev.timestamp())
        job.add_listener(feed.publish)
        self._live[job.id] = feed
        watcher = asyncio.get_running_loop().create_task(self._watch(feed), name=f"beamkit watch {job.id}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return job

    async def _watch(self, feed: Feed) -> None:
        try:
            await feed.job.wait()
        except BaseException:  # the job's outcome is in its events; a cancelled watcher ends too
            pass
        finally:
            self._live.pop(feed.job.id, None)
            feed.sinks.clear()

    def live_job(self, job_id: str) -> Job | None:
        feed = self._live.get(job_id)
        return feed.job if feed else None

    def _folder(self, job_id: str) -> Path | None:
        try:
            folder = storage.session_folder(self.output, job_id)
        except ValueError:
            return None
        return folder if folder.is_dir() else None

    def exists(self, job_id: Any) -> bool:
        return isinstance(job_id, str) and (job_id in self._live or self._folder(job_id) is not None)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a live job (None when it is not running); raises NotFound for an unknown one."""
        job = self.live_job(job_id)
        if job is None and not self.exists(job_id):
            raise NotFound(f"no job '{job_id}'", jobId=job_id)
        if job is not None:
            job.cancel()
        return job

    # -- status -----------------------------------------------------------------------------

    async def status(self, job_id: str) -> dict[str, Any]:
        """The body of ``GET /api/job/:jobId``."""
        feed = self._live.get(job_id)
        if feed is not None:
            return _live_status(feed)
        folder = self._folder(job_id)
        if folder is None:
            raise NotFound(f"no job '{job_id}'", jobId=job_id)
        return await asyncio.to_thread(_disk_status, folder)

    async def list(self) -> list[dict[str, Any]]:
        """Every job this server knows, newest first."""
        rows = {jid: _summary(feed) for jid, feed in self._live.items()}
        folders = [p for p in storage.list_sessions(self.output) if p.name not in rows]
        missing = [p for p in folders if p.name not in self._summaries]
        read = await asyncio.to_thread(lambda: [_disk_summary(p) for p in missing]) if missing else []
        for folder, row in zip(missing, read):
            # A finished session never changes; one that looks interrupted may belong to another
            # process still writing it, so it is read again next time.
            if row is not None and not row.get("interrupted"):
                self._summaries[folder.name] = row
            if row is not None:
                rows[folder.name] = row
        for folder in folders:
            if folder.name in self._summaries:
                rows[folder.name] = self._summaries[folder.name]
        return sorted(rows.values(), key=lambda r: (r["createdAt"] or "", r["jobId"]), reverse=True)

    # -- subscriptions ----------------------------------------------------------------------

    def follow(self, job_id: str, sink: Sink) -> Subscription | None:
        """A live job's events so far, with ``sink`` registered for the rest; None if not live.

        The snapshot and the registration happen in one synchronous step, so a follower
        misses nothing and gets nothing twice.
        """
        feed = self._live.get(job_id)
        if feed is None:
            return None
        count = len(feed.lines)
        if feed.ended:
            return Subscription(feed.lines, count, live=False)
        feed.sinks.append(sink)
        return Subscription(feed.lines, count, live=True, cancel=lambda: _remove(feed.sinks, sink))

    async def replay(self, job_id: str) -> Subscription:
        """A finished job's events, read back from its session (NotFound for an unknown job)."""
        lines = await self._replay(job_id)
        return Subscription(lines, len(lines), live=False)

    async def _replay(self, job_id: str) -> list[str]:
        if job_id in self._replays:
            self._replays.move_to_end(job_id)
            return self._replays[job_id]
        folder = self._folder(job_id)
        if folder is None:
            raise NotFound(f"no job '{job_id}'", jobId=job_id)
        lines, finished = await asyncio.to_thread(_read_lines, folder, job_id)
        if not finished:  # interrupted, or written by another process: read again next time
            return lines
        self._replays[job_id] = lines
        while len(self._replays) > self._replay_cache:
            self._replays.popitem(last=False)
        return lines

    # -- files ------------------------------------------------------------------------------

    def image(self, image_id: str) -> Path | None:
        return storage.resolve_image(self.output, image_id)

    async def idle(self) -> None:
        """Wait until every job started so far has ended and been let go."""
        while self._watchers:
            await asyncio.wait(list(self._watchers))

    # -- shutdown ---------------------------------------------------------------------------

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel every live job and wait for each to record its end."""
        self.closed = True
        for feed in list(self._live.values()):
            feed.job.cancel()
        if self._watchers:
            await asyncio.wait(list(self._watchers), timeout=timeout)


def _remove(items: list[Any], item: Any) -> None:
    try:
        items.remove(item)
    except ValueError:
        pass


def _read_lines(folder: Path, job_id: str) -> tuple[list[str], bool]:
    """events.jsonl as wire lines; a torn last line is skipped, and a session whose process
    died is closed with an ``error`` event so that followers know it will not go on."""
    pairs = storage.read_event_lines(folder)
    lines = [line for line, _ in pairs]
    last = pairs[-1][1] if pairs else None
    if last is not None and last.get("type") in ev.TERMINAL:
        return lines, True
    end = ev.error(job_id, f"Job was interrupted: {INTERRUPTED_MESSAGE}", ErrorCode.INTERNAL_ERROR, interrupted=True)
    if last is not None and last.get("timestamp"):
        end["timestamp"] = last["timestamp"]  # when it was last heard of: every replay reads the same
    lines.append(wire(end))
    return lines, False


def _best_score(result: dict[str, Any] | None) -> float | None:
    best = (result or {}).get("bestCandidate")
    return best.get("totalScore") if best else None


def _live_status(feed: Feed) -> dict[str, Any]:
    job = feed.job
    body: dict[str, Any] = {"jobId": job.id, "config": job.params.to_dict(), "progress": job.progress}
    last = job.history[-1] if job.history else None
    if last is not None and last["type"] == ev.COMPLETE:
        body.update(status="completed", result=last["result"])
    elif last is not None and last["type"] == ev.ERROR:
        code = last["error"]["code"]
        body.update(status="cancelled" if code == ErrorCode.CANCELLED else "error", error=last["error"])
    else:
        body["status"] = "in_progress"
        best = job.result.best
        body["bestScore"] = best.total_score if best else None
    return body


def _disk_status(folder: Path) -> dict[str, Any]:
    try:
        result = load_result(folder)
    except NotFound:
        raise NotFound(f"no job '{folder.name}'", jobId=folder.name) from None
    cfg = result.config
    n, iters = int(cfg.get("N") or 0), int(cfg.get("iterations") or 0)
    body: dict[str, Any] = {
        "jobId": result.job_id,
        "config": cfg,
        "progress": {
            "currentIteration": max(result.beams, default=0),
            "totalIterations": iters,
            "candidatesProcessed": len(result.candidates),
            "totalCandidates": n * iters,
        },
    }
    if result.status == "completed":
        body.update(status="completed", result=result.to_dict())
    elif result.status == "interrupted":
        body.update(
            status="error",
            interrupted=True,
            error={"message": f"Job was interrupted: {INTERRUPTED_MESSAGE}", "code": ErrorCode.INTERNAL_ERROR},
        )
    else:
        body.update(status=result.status, error=result.error or {"message": result.status, "code": ErrorCode.INTERNAL_ERROR})
    return body


def _summary(feed: Feed) -> dict[str, Any]:
    body = _live_status(feed)
    result = body.get("result")
    return {
        "jobId": body["jobId"],
        "prompt": feed.job.params.prompt,
        "status": body["status"],
        "bestScore": _best_score(result) if result else body.get("bestScore"),
        "createdAt": feed.created,
    }


def _first_timestamp(folder: Path) -> str | None:
    try:
        with open(folder / storage.EVENTS_FILE, encoding="utf-8") as fh:
            return json.loads(fh.readline()).get("timestamp")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def _disk_summary(folder: Path) -> dict[str, Any] | None:
    try:
        result = load_result(folder)
    except NotFound:
        return None  # a folder with nothing in it yet
    except Exception:
        log.warning("beamkit could not read session %s", folder, exc_info=True)
        return None
    best = result.best
    status = result.status
    return {
        "jobId": result.job_id,
        "prompt": result.config.get("prompt"),
        "status": "error" if status == "interrupted" else status,
        "bestScore": best.total_score if best else None,
        "createdAt": _first_timestamp(folder),
        **({"interrupted": True} if status == "interrupted" else {}),
    }


__all__ = ["JobManager", "Subscription", "Feed", "Sink", "wire"]
