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
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import events as ev
from .. import storage
from ..candidate import ref_dict
from ..errors import BeamkitError, ErrorCode, InvalidRequest, NotFound
from ..events import JobStatus
from ..job import INTERRUPTED_BY_SHUTDOWN, Job
from ..params import all_text, validate
from ..providers import registry, resolve
from ..result import Result
from ..settings import DEFAULT_MAX_JOBS, DEFAULT_OUTPUT, DEFAULT_PROVIDERS, DEFAULT_REPLAY_MEMORY, BeamkitSettings
from ..state import IN_PROGRESS, REVIEWING, SessionState
from ..storage import CorruptSession, load_state
from ..storage.owner import owner_of, request_cancel
from ..storage.tail import EventTail
from .frames import Frames, frame_of

log = logging.getLogger(__name__)

#: ``sink(frame, terminal)``: called synchronously with each new event of a job, as its WebSocket frame.
Sink = Callable[[bytes, bool], None]

INTERRUPTED_MESSAGE = INTERRUPTED_BY_SHUTDOWN
#: how often a job that another process runs is looked at on disk, in seconds
TAIL_POLL_S = 0.2
#: the REST status of a session folder that cannot be read (an extension of SPEC's status set)
CORRUPT = "corrupt"


#: An event as sent on a WebSocket: the same text that ``events.jsonl`` holds.
wire = ev.encode


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
    """A live job's events as frames (built once, shared by every subscriber), and the sinks that follow it."""

    job: Job
    created: str
    frames: Frames = field(default_factory=Frames)
    sinks: list[Sink] = field(default_factory=list)
    ended: bool = False

    def publish(self, event: ev.Event) -> None:
        frame = frame_of(wire(event))  # the job encoded the text already; the frame is built here, once
        self.frames.append(frame)
        terminal = ev.is_terminal(event)
        self.ended = self.ended or terminal
        for sink in tuple(self.sinks):
            try:
                sink(frame, terminal)
            except Exception:  # one subscriber's failure must not reach the job or the others
                log.exception("beamkit subscriber failed")
        if terminal:
            self.sinks.clear()


@dataclass
class Tail:
    """A job that another process sharing the output folder runs, followed from its events.jsonl:
    one reader and one set of frames for every subscriber of this process."""

    job_id: str
    folder: Path
    reader: EventTail
    frames: Frames = field(default_factory=Frames)
    sinks: list[Sink] = field(default_factory=list)
    ended: bool = False

    def publish(self, line: str, terminal: bool) -> None:
        frame = frame_of(line)
        self.frames.append(frame)
        self.ended = self.ended or terminal
        for sink in tuple(self.sinks):
            try:
                sink(frame, terminal)
            except Exception:
                log.exception("beamkit subscriber failed")
        if terminal:
            self.sinks.clear()


@dataclass
class Subscription:
    """What ``follow``/``replay`` return: the events so far (``frames`` 0..count-1, shared), and how to stop."""

    frames: Frames
    count: int
    live: bool
    cancel: Callable[[], None] = lambda: None


class JobManager:
    def __init__(
        self,
        output: str | os.PathLike[str] = DEFAULT_OUTPUT,
        *,
        max_jobs: int = DEFAULT_MAX_JOBS,
        providers: str | Mapping[str, str] = DEFAULT_PROVIDERS,
        provider_settings: dict[str, dict[str, Any]] | None = None,
        replay_memory: int = DEFAULT_REPLAY_MEMORY,
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
        #: jobs whose session folder stopped taking writes: their end is known here only, not on disk
        self._unsaved: dict[str, Feed] = {}
        #: jobs that another process runs, while someone here follows them
        self._tails: dict[str, Tail] = {}
        self._tail_tasks: set[asyncio.Task[None]] = set()
        self.replays = ReplayStore(replay_memory)
        self.closed = False

    @classmethod
    def from_settings(cls, settings: BeamkitSettings, output: str | os.PathLike[str] | None = None) -> JobManager:
        """The manager of a server with these settings (``output`` resolved by the caller, if it must be)."""
        return cls(settings.output if output is None else output, max_jobs=settings.max_jobs,
                   providers=settings.providers, provider_settings=settings.provider_settings,
                   replay_memory=settings.replay_memory)

    # -- jobs -------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._live)

    def start(self, body: Any, headers: Mapping[str, str] | None = None) -> Job:
        """Validate a request body and start its job; raises InvalidRequest or RATE_LIMIT.

        ``headers`` are the request headers that providers declare for a setting (a per-request
        key): each goes to the roles whose provider declares it, winning over the server's settings.
        """
        if self.closed:
            raise BeamkitError("the server is shutting down", ErrorCode.RATE_LIMIT)
        if isinstance(body, dict) and "providers" not in body:
            body = {**body, "providers": self.default_providers}
        params = validate(body).with_seed()
        # Roles are resolved (and every setting checked) before any folder is made: a bad one is a 400.
        roles = resolve(params.providers, temperature=params.temperature, seed=params.seed or 0,
                        prompt=params.prompt, server=self.provider_settings, headers=headers)
        if len(self._live) >= self.max_jobs:
            asyncio.get_running_loop().create_task(roles.aclose())  # made for nothing: release their clients
            raise BeamkitError(
                f"{len(self._live)} jobs are running, the most this server allows; try again when one ends",
                ErrorCode.RATE_LIMIT,
                maxJobs=self.max_jobs,
            )
        try:
            job = Job(params, self.output, roles=roles)
        except BaseException:  # refused (a tournament without a judge, a folder that cannot be made)
            asyncio.get_running_loop().create_task(roles.aclose())
            raise
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
            if feed.job.storage_error is not None:
                self._unsaved[feed.job.id] = feed
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
        """Cancel a live job of this process (None when it is not running here); raises NotFound for an unknown one."""
        job = self.live_job(job_id)
        if job is None and not self.exists(job_id):
            raise NotFound(f"no job '{job_id}'", jobId=job_id)
        if job is not None:
            job.cancel()
        return job

    async def cancel_and_wait(self, job_id: str, wait: float) -> dict[str, Any]:
        """``POST /api/job/:jobId/cancel``: cancel the job wherever it runs (here, or in another process
        sharing the output folder), and answer its status once it has ended, or after ``wait`` seconds."""
        job = self.cancel(job_id)
        if job is not None:
            try:
                await asyncio.wait_for(asyncio.shield(job.wait()), wait)
            except (TimeoutError, BeamkitError):
                pass
            return await self.status(job_id)
        folder = self._folder(job_id)
        if folder is not None and await asyncio.to_thread(owner_of, folder) is not None:
            ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def sink(frame: bytes, terminal: bool) -> None:
                if terminal and not ended.done():
                    ended.set_result(None)

            tail = self._tail(job_id, folder)
            if not tail.ended:
                tail.sinks.append(sink)
                try:
                    await asyncio.to_thread(request_cancel, folder)
                    await asyncio.wait_for(ended, wait)
                except TimeoutError:  # the owner did not stop in time: the status says it still runs
                    pass
                except OSError as exc:
                    raise BeamkitError(f"beamkit cannot ask for the cancel of {job_id} in {folder}: "
                                       f"{exc.strerror or exc}", ErrorCode.INTERNAL_ERROR) from None
                finally:
                    _remove(tail.sinks, sink)
        return await self.status(job_id)

    # -- jobs of other processes sharing the output folder ------------------------------------

    def _tail(self, job_id: str, folder: Path) -> Tail:
        tail = self._tails.get(job_id)
        if tail is None:
            tail = self._tails[job_id] = Tail(job_id, folder, EventTail(folder))
            task = asyncio.get_running_loop().create_task(self._follow_disk(tail), name=f"beamkit tail {job_id}")
            self._tail_tasks.add(task)
            task.add_done_callback(self._tail_tasks.discard)
        return tail

    async def _follow_disk(self, tail: Tail) -> None:
        """Publish the job's new lines every TAIL_POLL_S until its end, its owner's death (then it
        ends as interrupted, as its replay would), or until nobody here follows it any more."""
        last: dict[str, Any] | None = None
        try:
            while True:
                alive, pairs = await asyncio.to_thread(_poll, tail)
                for line, event in pairs:
                    last = event
                    tail.publish(line, event.get("type") in ev.TERMINAL)
                    if tail.ended:
                        return
                if not alive:
                    tail.publish(wire(_interrupted_end(tail.job_id, last)), True)
                    return
                if not tail.sinks:
                    return
                await asyncio.sleep(TAIL_POLL_S)
        except CorruptSession as exc:
            tail.publish(wire(ev.error(tail.job_id, exc.message, exc.code)), True)
        finally:
            if self._tails.get(tail.job_id) is tail:
                del self._tails[tail.job_id]
            tail.sinks.clear()

    # -- a person in the loop (docs/human-in-the-loop.md) -----------------------------------------

    async def _result(self, job_id: str) -> Result:
        """A live job's result so far, or a session's read back (with its ratings)."""
        job = self.live_job(job_id)
        if job is not None:
            return job.result
        folder = self._folder(job_id)
        if folder is None:
            raise NotFound(f"no job '{job_id}'", jobId=job_id)
        try:
            return await asyncio.to_thread(storage.load, folder)
        except NotFound:
            raise NotFound(f"no job '{job_id}'", jobId=job_id) from None

    async def rate(self, job_id: str, body: Any) -> dict[str, Any]:
        """``POST /api/job/:jobId/ratings``: ``{"a", "b", "winner"}``, live, finished or past jobs alike."""
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        result = await self._result(job_id)
        rating = result.rate(body.get("a"), body.get("b"), body.get("winner"))
        return {"jobId": job_id, "rating": rating, "ratings": len(result.ratings)}

    async def ratings(self, job_id: str) -> dict[str, Any]:
        """``GET /api/job/:jobId/ratings``: every rating, the next pair worth asking, and the agreement."""
        result = await self._result(job_id)
        pair = result.next_pair()
        try:
            agreement: dict[str, Any] | None = result.agreement()
        except ImportError:  # scipy is an extra; the ratings themselves need none
            agreement = None
        return {"jobId": job_id, "ratings": result.ratings, "agreement": agreement,
                "nextPair": None if pair is None else [ref_dict(pair[0]), ref_dict(pair[1])]}

    async def review(self, job_id: str, body: Any) -> dict[str, Any]:
        """``POST /api/job/:jobId/review``: ``{"keep": [refs]}`` or ``{"stop": true}`` for a job waiting on one."""
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        job = self.live_job(job_id)
        if job is None:
            if not self.exists(job_id):
                raise NotFound(f"no job '{job_id}'", jobId=job_id)
            raise InvalidRequest(f"job {job_id} is not waiting for a review", "keep")
        seen = len(job.history)
        if body.get("stop") is True:
            job.keep(None)
        elif "keep" in body:
            job.keep(body["keep"])
        else:
            raise InvalidRequest("the body must be {\"keep\": [candidates]} or {\"stop\": true}", "keep")
        # The answer shows the job past its review: the engine's next event (the iteration's end) is in.
        async for _ in job.events(seen):
            break
        return _status_body(job.state)

    # -- status -----------------------------------------------------------------------------

    async def status(self, job_id: str) -> dict[str, Any]:
        """The body of ``GET /api/job/:jobId``."""
        feed = self._live.get(job_id) or self._unsaved.get(job_id)
        if feed is not None:
            return _status_body(feed.job.state)
        folder = self._folder(job_id)
        if folder is None:
            raise NotFound(f"no job '{job_id}'", jobId=job_id)
        try:
            return _status_body(await asyncio.to_thread(_disk_state, folder, True))
        except CorruptSession as exc:
            return _corrupt_row(job_id, exc) | {"config": {}, "error": exc.to_dict()}

    async def list(self) -> list[dict[str, Any]]:
        """Every job this server knows, newest first."""
        rows = {jid: _summary_row(feed.job.state, feed.created) for jid, feed in (self._unsaved | self._live).items()}
        folders = [p for p in storage.list_sessions(self.output) if p.name not in rows]
        missing = [p for p in folders if p.name not in self._summaries]
        read = await asyncio.to_thread(lambda: [_disk_summary(p) for p in missing]) if missing else []
        for folder, row in zip(missing, read):
            # A finished session never changes; one that looks interrupted may belong to another
            # process still writing it, so it is read again next time.
            if row is not None and not row.get("interrupted") and row["status"] not in (IN_PROGRESS, REVIEWING):
                self._summaries[folder.name] = row
            if row is not None:
                rows[folder.name] = row
        for folder in folders:
            if folder.name in self._summaries:
                rows[folder.name] = self._summaries[folder.name]
        return sorted(rows.values(), key=lambda r: (str(r["createdAt"] or ""), r["jobId"]), reverse=True)

    # -- subscriptions ----------------------------------------------------------------------

    def follow(self, job_id: str, sink: Sink) -> Subscription | None:
        """A live job's events so far, with ``sink`` registered for the rest; None if not live.

        The snapshot and the registration happen in one synchronous step, so a follower
        misses nothing and gets nothing twice.
        """
        feed = self._live.get(job_id) or self._unsaved.get(job_id)  # an unsaved job's end is not on disk
        if feed is None:
            return None
        count = len(feed.frames)
        if feed.ended:
            return Subscription(feed.frames, count, live=False)
        feed.sinks.append(sink)
        return Subscription(feed.frames, count, live=True, cancel=lambda: _remove(feed.sinks, sink))

    async def replay(self, job_id: str, sink: Sink | None = None) -> Subscription:
        """A finished job's events, read back from its session (NotFound for an unknown job;
        RATE_LIMIT when replays already hold the memory the server allows them).

        With ``sink``, a job that another live process runs is followed: its events so far,
        with ``sink`` registered for the rest, as they reach events.jsonl.
        """
        folder = self._folder(job_id)
        if folder is None:
            raise NotFound(f"no job '{job_id}'", jobId=job_id)
        if sink is not None and await asyncio.to_thread(owner_of, folder) is not None:
            tail = self._tail(job_id, folder)
            count = len(tail.frames)
            if tail.ended:
                return Subscription(tail.frames, count, live=False)
            tail.sinks.append(sink)
            return Subscription(tail.frames, count, live=True, cancel=lambda: _remove(tail.sinks, sink))
        frames = await self.replays.get(job_id, folder)
        return Subscription(frames, len(frames), live=False)

    # -- files ------------------------------------------------------------------------------

    def image(self, image_id: str) -> Path | None:
        return storage.resolve_image(self.output, image_id)

    async def idle(self) -> None:
        """Wait until every job started so far has ended and been let go."""
        while self._watchers:
            await asyncio.wait(list(self._watchers))

    # -- shutdown ---------------------------------------------------------------------------

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every live job and wait for each to record its end: as ``interrupted``, since the
        server is going away, not cancelled, since nobody cancelled them."""
        self.closed = True
        for feed in list(self._live.values()):
            feed.job.interrupt()
        for task in list(self._tail_tasks):  # another process's jobs go on without us
            task.cancel()
        if self._watchers:
            await asyncio.wait(list(self._watchers), timeout=timeout)
        await registry.close_all()  # the providers' process-level close hooks, with the server


def _remove(items: list[Any], item: Any) -> None:
    try:
        items.remove(item)
    except ValueError:
        pass


class ReplayStore:
    """Sessions read back for replays: one shared ``Frames`` per session, all of them within a byte budget.

    A session is read once however many sockets replay it (concurrent requests wait for the
    same read), and kept while any socket still has frames of it to write, or while it is among
    the recently used that fit the budget. A copy is good while events.jsonl keeps its size and
    mtime: an interrupted session that another process goes on writing is read again.
    """

    def __init__(self, budget: int = DEFAULT_REPLAY_MEMORY) -> None:
        self.budget = budget
        #: bytes of every session's frames alive here, cached or still being written to a socket
        self.held = 0
        self._alive: weakref.WeakValueDictionary[str, Frames] = weakref.WeakValueDictionary()
        self._keys: dict[int, tuple[int, int]] = {}  # id(frames) -> the (size, mtime) it was read at
        self._recent: OrderedDict[str, Frames] = OrderedDict()
        self._loading: dict[str, asyncio.Future[Frames]] = {}

    async def get(self, job_id: str, folder: Path) -> Frames:
        pending = self._loading.get(job_id)
        if pending is not None:
            return await asyncio.shield(pending)
        key = await asyncio.to_thread(_stamp, folder)
        frames = self._alive.get(job_id)
        if frames is not None and self._keys.get(id(frames)) == key:
            self._keep(job_id, frames)
            return frames
        pending = self._loading.get(job_id)  # another request started the read while this one looked
        if pending is not None:
            return await asyncio.shield(pending)
        self._make_room(key[0])
        if self.held + key[0] > self.budget:
            raise BeamkitError(
                f"replays hold {self.held >> 20} MiB, and this one needs {-(-key[0] >> 20)} MiB more than the "
                f"{self.budget >> 20} MiB this server allows them (replay_memory); try again when clients have read them",
                ErrorCode.RATE_LIMIT, jobId=job_id)
        fut: asyncio.Future[Frames] = asyncio.get_running_loop().create_future()
        self._loading[job_id] = fut
        try:
            frames = await asyncio.to_thread(_read_frames, folder, job_id)
        except BaseException as exc:
            if isinstance(exc, Exception):
                fut.set_exception(exc)
                fut.exception()  # retrieved: only the requests waiting on it report it
            else:
                fut.cancel()
            raise
        finally:
            self._loading.pop(job_id, None)
        self._alive[job_id] = frames
        self._keys[id(frames)] = key
        self.held += frames.nbytes
        weakref.finalize(frames, self._release, id(frames), frames.nbytes)
        self._keep(job_id, frames)
        self._make_room(0)
        fut.set_result(frames)
        return frames

    def _keep(self, job_id: str, frames: Frames) -> None:
        self._recent[job_id] = frames
        self._recent.move_to_end(job_id)

    def _make_room(self, need: int) -> None:
        # Dropping a recent one frees its memory only once no socket is still writing it.
        while self._recent and self.held + need > self.budget:
            self._recent.popitem(last=False)

    def _release(self, ident: int, nbytes: int) -> None:
        self.held -= nbytes
        self._keys.pop(ident, None)

    @property
    def cached(self) -> int:
        return len(self._recent)


def _stamp(folder: Path) -> tuple[int, int]:
    """events.jsonl's size and mtime: a copy read at another stamp is stale."""
    try:
        st = os.lstat(folder / storage.EVENTS_FILE)  # a link is refused by the reader: its size is not read
    except FileNotFoundError:
        return (0, 0)
    return (st.st_size, st.st_mtime_ns)


def _read_frames(folder: Path, job_id: str) -> Frames:
    lines, _ = _read_lines(folder, job_id)
    return Frames([frame_of(line) for line in lines])


def _read_lines(folder: Path, job_id: str) -> tuple[list[str], bool]:
    """events.jsonl as wire lines; a torn last line is skipped, and a session whose process
    died is closed with an ``error`` event so that followers know it will not go on."""
    pairs = storage.read_event_lines(folder)
    lines = [line for line, _ in pairs]
    last = pairs[-1][1] if pairs else None
    if last is not None and last.get("type") in ev.TERMINAL:
        return lines, True
    lines.append(wire(_interrupted_end(job_id, last)))
    return lines, False


def _interrupted_end(job_id: str, last: Mapping[str, Any] | None) -> ev.Event:
    """The ``error`` that closes the events of a job whose process died, for followers to know it will not go on."""
    end = ev.error(job_id, f"Job was interrupted: {INTERRUPTED_MESSAGE}", ErrorCode.INTERNAL_ERROR, interrupted=True)
    if last is not None and isinstance(last.get("timestamp"), str):
        end = replace(end, timestamp=last["timestamp"])  # when it was last heard of: every replay reads the same
    return end


def _poll(tail: Tail) -> tuple[bool, list[tuple[str, dict[str, Any]]]]:
    """Whether the job's owner lives, then its new lines: read in that order, so that the lines of
    an owner that has just died are all read before its job is called interrupted."""
    alive = owner_of(tail.folder) is not None
    return alive, tail.reader.read()


def _status_body(state: SessionState) -> dict[str, Any]:
    """The body of ``GET /api/job/:jobId``, live or read back: what the reducer knows, as REST says it."""
    body: dict[str, Any] = {"jobId": state.job_id, "config": state.config, "progress": state.progress,
                            "status": state.rest_status}
    if state.status == JobStatus.COMPLETED:
        body["result"] = state.result if state.result is not None else Result.from_state(state).to_dict()
    elif state.status == JobStatus.INTERRUPTED:
        body.update(interrupted=True,
                    error={"message": f"Job was interrupted: {INTERRUPTED_MESSAGE}", "code": ErrorCode.INTERNAL_ERROR})
    elif state.done:
        body["error"] = state.error or {"message": state.status.value, "code": ErrorCode.INTERNAL_ERROR}
    else:
        best = state.best
        body["bestScore"] = best.total_score if best else None
    return body


def _summary_row(state: SessionState, created: str | None) -> dict[str, Any]:
    """One job of ``GET /api/jobs``."""
    best = state.best
    return {
        "jobId": state.job_id,
        "prompt": state.config.get("prompt"),
        "status": state.rest_status,
        "bestScore": best.total_score if best else None,
        "createdAt": created,
        **({"interrupted": True} if state.status == JobStatus.INTERRUPTED else {}),
    }


def _disk_state(folder: Path, owned: bool = False) -> SessionState:
    """A session's state; with ``owned``, one that a live process still runs (storage/owner.py)
    reads as in progress rather than interrupted. The owner is looked at before the events: if it
    ends in between, its last event is on disk before its lock goes."""
    try:
        return load_state(folder, finished=not owned or owner_of(folder) is None)
    except NotFound:
        raise NotFound(f"no job '{folder.name}'", jobId=folder.name) from None


def _corrupt_row(job_id: str, exc: BeamkitError) -> dict[str, Any]:
    """A session that cannot be read: listed, with the reason, rather than hidden."""
    return {"jobId": job_id, "prompt": None, "status": CORRUPT, "bestScore": None, "createdAt": None,
            "reason": exc.message}


def _disk_summary(folder: Path) -> dict[str, Any] | None:
    try:
        state = _disk_state(folder, True)
    except NotFound:
        return None  # a folder with nothing in it yet
    except CorruptSession as exc:
        log.warning("beamkit could not read session %s: %s", folder, exc.message)
        return _corrupt_row(folder.name, exc)
    except Exception as exc:  # a bug in reading must cost one session, not the whole list
        log.warning("beamkit could not read session %s", folder, exc_info=True)
        return _corrupt_row(folder.name, CorruptSession(f"{type(exc).__name__}: {exc}"))
    return _summary_row(state, state.started_at)


__all__ = ["JobManager", "Subscription", "Feed", "Sink", "wire"]
