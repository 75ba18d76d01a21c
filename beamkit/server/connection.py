"""One WebSocket client: its subscriptions, a bounded outbox, and the one task that writes it.

Jobs hand events to a connection synchronously (``Feed.publish``); the connection only
appends their frames to its outbox, so a slow or stuck client can never hold up a job or
the other clients. The outbox holds frames (each built once, shared by every client) and
replay cursors over a job's shared frames, never a copy of a job's events. A client is
closed (1008) when what waits for it passes ``max_queue`` items or ``max_bytes`` bytes,
counting its replays and what its socket has not yet taken. At most one replay of a job
waits per client: subscribing again restarts it in place.

Writing is a callback, not a task: the first push schedules one flush, which hands everything
waiting (up to ``CHUNK`` bytes) to the transport in one write. Pushes are gathered for
``COALESCE_S`` by one timer per event loop shared by every client (not one per client), so a
job's burst of events, which comes over several turns of the loop, costs each client one write
and no task switch: the kernel's send is most of what a delivery costs. While the transport holds
``HIGH_WATER`` bytes it has not sent, nothing more is written until it has. The transport
is two callables, so the same class serves both Tornado apps and tests.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from .. import events as ev
from ..errors import BeamkitError, ErrorCode, NotFound
from ..settings import DEFAULT_MAX_PENDING_BYTES, DEFAULT_MAX_QUEUE
from .frames import Cursor, frame_of
from .manager import JobManager, from_wire, wire

log = logging.getLogger(__name__)

#: ``write(frames)``: hand whole frames to the socket at once; may return a future done when they are sent
Write = Callable[[list[bytes]], "asyncio.Future[Any] | None"]
Close = Callable[[int, str], None]

#: close code for a client that fell too far behind (RFC 6455: policy violation)
TOO_SLOW = 1008
#: close code for a client the server could not write to (RFC 6455: internal error)
INTERNAL = 1011
#: bytes gathered into one write
CHUNK = 256 * 1024
#: bytes handed to the transport before the writer waits for them to be sent
HIGH_WATER = 512 * 1024
#: seconds that pushes are gathered before they are written (what it adds to a delivery's delay at most)
COALESCE_S = 0.005


class _Flusher:
    """The clients of one event loop with output waiting, flushed together by one timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: dict[Connection, None] = {}  # an ordered set: flushed in the order they asked
        self._armed = False

    def add(self, conn: Connection) -> None:
        self._waiting[conn] = None
        if not self._armed:
            self._armed = True
            self._loop.call_later(COALESCE_S, self._run)

    def _run(self) -> None:
        self._armed = False
        waiting, self._waiting = self._waiting, {}
        for conn in waiting:
            try:
                conn._flush()
            except Exception:  # one client's bug must not keep the others' output back
                log.exception("beamkit: flushing a WebSocket client failed")


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = weakref.WeakKeyDictionary()


def _flusher(loop: asyncio.AbstractEventLoop) -> _Flusher:
    found = _flushers.get(loop)
    if found is None:
        found = _flushers[loop] = _Flusher(loop)
    return found


class Connection:
    def __init__(self, manager: JobManager, write: Write, close: Close, *, max_queue: int = DEFAULT_MAX_QUEUE,
                 max_bytes: int = DEFAULT_MAX_PENDING_BYTES) -> None:
        self.manager = manager
        self.max_queue = max_queue
        self.max_bytes = max_bytes
        self._write = write
        self._close = close
        self._outbox: deque[bytes | Cursor] = deque()
        self._queued = 0  # bytes in the outbox, replays' remaining frames included
        self._unsent = 0  # bytes handed to the transport and not known to be sent
        self._replays: dict[str, Cursor] = {}
        self._subs: dict[str, Callable[[], None]] = {}
        self._loop = asyncio.get_running_loop()
        self._flusher = _flusher(self._loop)
        self._scheduled = False  # waiting for the gathering timer
        self._soon = False  # a flush is due at the next turn
        self._last: Any = None  # the transport's future of the last write not yet sent
        self.closed = False
        self.dropped = False
        self.sent = 0

    @property
    def subscriptions(self) -> frozenset[str]:
        return frozenset(self._subs)

    @property
    def pending(self) -> int:
        """Items waiting in the outbox (a replay counts as one)."""
        return len(self._outbox)

    @property
    def pending_bytes(self) -> int:
        """Bytes waiting for this client: the outbox, replays included, and what the transport holds."""
        return self._queued + self._unsent

    # -- client messages --------------------------------------------------------------------

    async def handle(self, data: str | bytes) -> None:
        """Answer one client message. Bad input gets an ``error`` event; nothing here closes the socket."""
        if self.closed:
            return
        msg = _parse(data)
        if isinstance(msg, str):
            return self._push(frame_of(wire(ev.error(None, msg, ErrorCode.INVALID_REQUEST))))
        kind = msg.get("type")
        if kind == "ping":
            return self._push(frame_of(wire(ev.pong(msg.get("jobId") if isinstance(msg.get("jobId"), str) else None))))
        if kind not in ("subscribe", "unsubscribe"):
            text = "missing 'type'" if kind is None else f"unknown message type {kind!r}"
            return self._invalid(f"{text}: expected 'subscribe', 'unsubscribe' or 'ping'", "type")
        job_id = msg.get("jobId")
        if not isinstance(job_id, str) or not job_id:
            return self._invalid(f"'{kind}' needs a 'jobId' string", "jobId")
        if kind == "subscribe":
            await self._subscribe(job_id)
        else:
            self._unsubscribe(job_id)

    async def _subscribe(self, job_id: str) -> None:
        self._drop_subscription(job_id)  # subscribing again starts that job over from its first event
        sink = self._sink(job_id)
        try:
            sub = self.manager.follow(job_id, sink) or await self.manager.replay(job_id, sink)
        except (NotFound, BeamkitError) as exc:
            return self._push(frame_of(wire(ev.error(job_id, exc.message, exc.code))))
        if self.closed:
            sub.cancel()
            return
        self._drop_subscription(job_id)  # a subscribe to the same job that finished while this one awaited
        if sub.live:
            self._subs[job_id] = sub.cancel
        # Registration and these pushes happen in one step of the loop: no event falls between.
        self._push(frame_of(wire(ev.subscribed(job_id))))
        if sub.count:
            cursor = Cursor(sub.frames, 0, sub.count, job_id)
            self._replays[job_id] = cursor
            self._push(cursor)

    def _unsubscribe(self, job_id: str) -> None:
        if job_id not in self._subs and not self.manager.exists(job_id):
            return self._push(frame_of(wire(ev.error(job_id, f"no job '{job_id}'", ErrorCode.NOT_FOUND))))
        self._drop_subscription(job_id)
        self._push(frame_of(wire(ev.unsubscribed(job_id))))

    def _invalid(self, message: str, field: str) -> None:
        self._push(frame_of(wire(ev.error(None, message, ErrorCode.INVALID_REQUEST, field=field))))

    def _drop_subscription(self, job_id: str) -> None:
        cancel = self._subs.pop(job_id, None)
        if cancel is not None:
            cancel()
        cursor = self._replays.pop(job_id, None)
        if cursor is not None and cursor.pos < cursor.end:  # a replay still waiting: it is not stacked
            self._queued -= cursor.remaining
            cursor.end = cursor.pos
            try:
                self._outbox.remove(cursor)
            except ValueError:  # the writer holds it
                pass

    def _sink(self, job_id: str) -> Callable[[bytes, bool], None]:
        def sink(frame: bytes, terminal: bool) -> None:
            if terminal:
                self._subs.pop(job_id, None)
            self._push(frame)

        return sink

    # -- the outbox ---------------------------------------------------------------------------

    def _push(self, item: bytes | Cursor) -> None:
        if self.closed:
            return
        size = len(item) if isinstance(item, bytes) else item.remaining
        if len(self._outbox) >= self.max_queue or self._queued + self._unsent + size > self.max_bytes:
            self._drop(size)
            return
        self._outbox.append(item)
        self._queued += size
        if len(self._outbox) * 2 >= self.max_queue or (self._queued + self._unsent) * 2 >= self.max_bytes:
            # Half a bound waits: written at the next turn, not at the gathering timer, so that a burst
            # for a client that reads never comes near the bounds meant for one that does not.
            self._schedule()
        elif not self._scheduled:
            self._scheduled = True
            self._flusher.add(self)

    def _schedule(self) -> None:
        """Flush at the next turn of the loop (a long replay's next chunk, what a sent write freed)."""
        if not self._soon:
            self._soon = True
            self._loop.call_soon(self._flush)

    def _drop(self, size: int) -> None:
        behind, waiting = len(self._outbox), self._queued + self._unsent + size
        log.warning("beamkit: dropping a WebSocket client %d messages (%d bytes) behind", behind, waiting)
        self.dropped = True
        self._shut(TOO_SLOW, f"client too slow: {behind} messages ({waiting} bytes) waiting")

    def _shut(self, code: int, reason: str) -> None:
        """Stop, and tell the peer why: never leave it on an open socket that no longer answers."""
        self.close()
        try:
            self._close(code, reason)
        except Exception:
            log.debug("closing a client (%d %s) failed", code, reason, exc_info=True)

    def _take(self, out: list[bytes]) -> int:
        """Move up to CHUNK bytes of frames from the outbox to ``out``; the bytes moved."""
        taken = 0
        while self._outbox and taken < CHUNK:
            item = self._outbox[0]
            if isinstance(item, bytes):
                self._outbox.popleft()
                out.append(item)
                taken += len(item)
                continue
            taken += item.take(CHUNK - taken, out)
            if item.pos >= item.end:
                self._outbox.popleft()
                if self._replays.get(item.job_id) is item:  # written: the job's frames are not held for it
                    del self._replays[item.job_id]
        self._queued -= taken
        return taken

    def _flush(self) -> None:
        """Write what waits, one CHUNK per turn of the loop, unless the transport is full."""
        self._scheduled = self._soon = False
        if self.closed or not self._outbox or self._unsent >= HIGH_WATER:
            return  # a full transport: _sent() flushes again once it has sent
        try:
            frames: list[bytes] = []
            size = self._take(frames)
            fut = self._write(frames)  # one write for everything waiting
        except Exception:  # the socket closed under us, or a message could not be sent
            log.debug("beamkit ws write failed", exc_info=True)
            return self._shut(INTERNAL, "server error")
        self.sent += len(frames)
        if fut is not None and not fut.done():
            self._unsent += size
            self._last = fut
            fut.add_done_callback(self._sent)
        elif fut is not None:
            self._sent(fut)
        if self._outbox and self._unsent < HIGH_WATER:  # a long replay: the others get their turn between chunks
            self._schedule()

    def _sent(self, fut: Any) -> None:
        if fut.cancelled() or fut.exception() is not None:
            if not self.closed:
                log.debug("beamkit ws write failed", exc_info=None if fut.cancelled() else fut.exception())
                self._shut(INTERNAL, "server error")
            return
        if fut is self._last or self._last is None:  # the transport has sent everything handed to it
            self._last, self._unsent = None, 0
            if self._outbox:
                self._schedule()

    # -- end ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop following every job and stop writing; idempotent."""
        if self.closed:
            return
        self.closed = True
        for cancel in self._subs.values():
            cancel()
        self._subs.clear()
        self._replays.clear()
        self._outbox.clear()
        self._queued = 0
        self._last = None


def _parse(data: str | bytes) -> dict[str, Any] | str:
    """The message as a dict, or the reason it is not one."""
    if isinstance(data, bytes):
        return "messages must be JSON text, not binary"
    try:
        msg = from_wire(data)
    except (ValueError, RecursionError) as exc:
        return f"malformed JSON: {exc}"
    if not isinstance(msg, dict):
        return "a message must be a JSON object"
    return msg
