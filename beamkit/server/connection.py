"""One WebSocket client: its subscriptions, a bounded outbox, and the one task that writes it.

Jobs hand events to a connection synchronously (``Feed.publish``); the connection only
appends them to its outbox, so a slow or stuck client can never hold up a job or the
other clients. A client whose outbox reaches ``max_queue`` items is dropped.
The transport is two callables, so the same class serves both Tornado apps and tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from .. import events as ev
from ..errors import ErrorCode, NotFound
from .manager import JobManager, from_wire, wire

log = logging.getLogger(__name__)

Send = Callable[[str], "Awaitable[Any] | None"]
Close = Callable[[int, str], None]

#: close code for a client that fell too far behind (RFC 6455: policy violation)
TOO_SLOW = 1008
#: close code for a client the server could not write to (RFC 6455: internal error)
INTERNAL = 1011
DEFAULT_MAX_QUEUE = 1000
#: messages handed to the transport before the writer waits for them to be flushed
BATCH = 32


@dataclass(frozen=True)
class Replay:
    """``lines[start:end]`` of a job, queued as one item (no copy of the job's events)."""

    lines: list[str]
    start: int
    end: int


class Connection:
    def __init__(self, manager: JobManager, send: Send, close: Close, *, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        self.manager = manager
        self.max_queue = max_queue
        self._send = send
        self._close = close
        self._outbox: deque[str | Replay] = deque()
        self._subs: dict[str, Callable[[], None]] = {}
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped = False
        self.sent = 0
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name="beamkit ws writer")

    @property
    def subscriptions(self) -> frozenset[str]:
        return frozenset(self._subs)

    @property
    def pending(self) -> int:
        return len(self._outbox)

    # -- client messages --------------------------------------------------------------------

    async def handle(self, data: str | bytes) -> None:
        """Answer one client message. Bad input gets an ``error`` event; nothing here closes the socket."""
        if self.closed:
            return
        msg = _parse(data)
        if isinstance(msg, str):
            return self._push(wire(ev.error(None, msg, ErrorCode.INVALID_REQUEST)))
        kind = msg.get("type")
        if kind == "ping":
            return self._push(wire(ev.pong(msg.get("jobId") if isinstance(msg.get("jobId"), str) else None)))
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
            sub = self.manager.follow(job_id, sink) or await self.manager.replay(job_id)
        except NotFound as exc:
            return self._push(wire(ev.error(job_id, exc.message, exc.code)))
        if self.closed:
            sub.cancel()
            return
        if sub.live:
            self._subs[job_id] = sub.cancel
        # Registration and these pushes happen in one step of the loop: no event falls between.
        self._push(wire(ev.subscribed(job_id)))
        if sub.count:
            self._push(Replay(sub.lines, 0, sub.count))

    def _unsubscribe(self, job_id: str) -> None:
        if job_id not in self._subs and not self.manager.exists(job_id):
            return self._push(wire(ev.error(job_id, f"no job '{job_id}'", ErrorCode.NOT_FOUND)))
        self._drop_subscription(job_id)
        self._push(wire(ev.unsubscribed(job_id)))

    def _invalid(self, message: str, field: str) -> None:
        self._push(wire(ev.error(None, message, ErrorCode.INVALID_REQUEST, field=field)))

    def _drop_subscription(self, job_id: str) -> None:
        cancel = self._subs.pop(job_id, None)
        if cancel is not None:
            cancel()

    def _sink(self, job_id: str) -> Callable[[str, bool], None]:
        def sink(line: str, terminal: bool) -> None:
            if terminal:
                self._subs.pop(job_id, None)
            self._push(line)

        return sink

    # -- the outbox ---------------------------------------------------------------------------

    def _push(self, item: str | Replay) -> None:
        if self.closed:
            return
        if len(self._outbox) >= self.max_queue:
            self._drop()
            return
        self._outbox.append(item)
        self._wake.set()

    def _drop(self) -> None:
        log.warning("beamkit: dropping a WebSocket client %d messages behind", len(self._outbox))
        self.dropped = True
        self._shut(TOO_SLOW, f"client too slow: {len(self._outbox)} messages waiting")

    def _shut(self, code: int, reason: str) -> None:
        """Stop, and tell the peer why: never leave it on an open socket that no longer answers."""
        self.close()
        try:
            self._close(code, reason)
        except Exception:
            log.debug("closing a client (%d %s) failed", code, reason, exc_info=True)

    async def _write_loop(self) -> None:
        unflushed, last = 0, None
        try:
            while not self.closed:
                if not self._outbox:
                    if last is not None:  # idle: wait for the transport to flush what it holds
                        await asyncio.shield(last)
                        unflushed, last = 0, None
                        continue
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                item = self._outbox.popleft()
                texts = (item,) if isinstance(item, str) else (item.lines[i] for i in range(item.start, item.end))
                for text in texts:
                    fut = self._send(text)
                    self.sent += 1
                    if fut is None:
                        continue
                    unflushed += 1
                    if unflushed >= BATCH:  # never more than BATCH messages in the transport's buffer
                        # shielded: closing this writer must not cancel the transport's own future
                        await asyncio.shield(fut)
                        unflushed, last = 0, None
                    else:
                        _quiet(fut)
                        last = fut
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket closed under us, or a message could not be sent
            log.debug("beamkit ws writer stopped", exc_info=True)
            self._shut(INTERNAL, "server error")

    # -- end ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop following every job and stop writing; idempotent."""
        if self.closed:
            return
        self.closed = True
        for cancel in self._subs.values():
            cancel()
        self._subs.clear()
        self._outbox.clear()
        if self._writer is not asyncio.current_task():
            self._writer.cancel()


def _quiet(fut: Any) -> None:
    """A future we will not await: fetch its error, so none is reported as never retrieved."""
    add = getattr(fut, "add_done_callback", None)
    if add is not None:
        add(lambda f: f.cancelled() or f.exception())


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
