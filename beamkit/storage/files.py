"""File writing off the event loop: atomic replacement, and one worker thread per session."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data``: a reader sees the old file or the new one, never part of one."""
    path = os.fspath(path)
    head, name = os.path.split(path)
    # A session's writes are done one after another (its Writer), so a fixed temporary name cannot collide.
    tmp = os.path.join(head, f".tmp-{name}")
    fd = os.open(tmp, _FLAGS, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


_Item = tuple[Callable[[], Any], "asyncio.Future[Any]"]
_Done = tuple["asyncio.Future[Any]", Any, "BaseException | None"]

#: worker threads shared by every session of the process; a session keeps to one, so its work stays in order
LANES = 4


class _Lane:
    """One worker thread, started with its first work and kept for the life of the process: a job
    does not wait for a thread to start, and concurrent jobs (up to LANES) do not wait on each
    other's disk."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: SimpleQueue[list[_Item]] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()  # sessions of loops in other threads may share a lane

    def put(self, batch: list[_Item]) -> None:
        self._queue.put(batch)
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    # A daemon: a process that exits mid-job must not wait on it (writes are atomic anyway).
                    self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                    self._thread.start()

    def _work(self) -> None:
        done: list[_Done] = []
        while True:
            for work, fut in self._queue.get():
                try:
                    done.append((fut, work(), None))
                except BaseException as exc:  # handed to whoever awaits it
                    done.append((fut, None, exc))
            if self._queue.empty():  # a burst of finished work wakes each loop once
                _hand_back(done)
                done = []


_lanes = [_Lane(f"beamkit writer {i}") for i in range(LANES)]
_next_lane = itertools.count()


class Writer:
    """Runs a session's file work in order on a worker thread, so the event loop never waits on the disk.

    Work handed over in one turn of the loop reaches the thread in one batch: each wake-up
    of the other thread costs both of them the GIL. An error is set on that piece's future:
    nothing hangs. After ``close()`` nothing more is taken.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lane = _lanes[next(_next_lane) % LANES]
        self._batch: list[_Item] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def submit(self, work: Callable[[], T]) -> asyncio.Future[T]:
        if self.closed:
            raise RuntimeError(f"{self.name} is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(f"{self.name} belongs to another event loop")
        fut: asyncio.Future[T] = loop.create_future()
        if not self._batch:
            loop.call_soon(self._send)
        self._batch.append((work, fut))
        return fut

    def close(self) -> None:
        """No more work; what was submitted is still done."""
        if not self.closed:
            self.closed = True
            self._send()

    def _send(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self._lane.put(batch)


def _hand_back(done: list[_Done]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[_Done]] = {}
    for item in done:
        by_loop.setdefault(item[0].get_loop(), []).append(item)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, items)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            log.debug("beamkit finished file work after its loop closed")


def _settle(done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, exc in done:
        if fut.done():  # its awaiter was cancelled
            continue
        if exc is None:
            fut.set_result(value)
        else:
            fut.set_exception(exc)
