"""Which live process owns a running session, and how another process asks it to stop.

Several processes may share one output folder (``beamkit serve`` and the Jupyter
extension both on ``./output``). The process that runs a job holds ``owner.lock`` with
``flock(LOCK_EX)`` for the job's life; the kernel drops the lock when that process dies,
however it dies, so "is the job live?" is "is the lock still held?", never a guess from
a pid that may have been reused. ``owner.json`` says who holds it (pid, host, since), for
people. Another process cancels the job by writing the ``cancel`` file, which the owner
looks for several times a second. All three files go away when the job ends.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from typing import Any

from ..events import timestamp
from .files import atomic_write
from .safe import CorruptSession, read_regular

OWNER_LOCK = "owner.lock"
OWNER_FILE = "owner.json"
CANCEL_FILE = "cancel"
#: how often the owner looks for a cancel request, in seconds (a cancel takes effect well within a second)
CANCEL_POLL_S = 0.25

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class Ownership:
    """The owner's hold on one session folder: taken when the session is made, released when it closes."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self._prefix = os.path.join(os.fspath(folder), "")
        self._fd: int | None = None

    def take(self) -> None:
        """Hold the folder's lock and say who holds it. Raises OSError (BlockingIOError if another holds it)."""
        fd = os.open(self._prefix + OWNER_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | _NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "since": timestamp()}
            atomic_write(self._prefix + OWNER_FILE, json.dumps(info).encode("utf-8"))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def cancel_requested(self) -> bool:
        """Whether another process asked for this job to stop (one stat: cheap enough to poll)."""
        return os.path.lexists(self._prefix + CANCEL_FILE)

    def release(self) -> None:
        """Remove the mark and let the lock go. The files go first: whoever sees no lock sees no owner."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        for name in (OWNER_FILE, CANCEL_FILE, OWNER_LOCK):
            try:
                os.unlink(self._prefix + name)
            except FileNotFoundError:
                pass
            except OSError:  # a folder that stopped taking writes: the lock still dies with the descriptor
                pass
        os.close(fd)


def owner_of(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who owns the running session in ``folder``: ``owner.json``'s pid/host/since (``{}`` when it
    cannot be read), or None when no live process holds its lock (finished, or its process died)."""
    prefix = os.path.join(os.fspath(folder), "")
    try:
        # O_NONBLOCK: a FIFO planted as the lock must not hang the reader.
        fd = os.open(prefix + OWNER_LOCK, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | _NOFOLLOW)
    except OSError:  # none (not running), or not a file we may open: nobody owns it through it
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: its owner is alive
        except OSError:
            return None
        else:
            return None  # free: its owner is gone (the shared lock is dropped with the descriptor)
    finally:
        os.close(fd)
    try:
        data = read_regular(prefix + OWNER_FILE, 4096)
        info = json.loads(data) if data else {}
    except (CorruptSession, ValueError):
        info = {}
    return info if isinstance(info, dict) else {}


def request_cancel(folder: str | os.PathLike[str]) -> None:
    """Ask the process that owns the session in ``folder`` to cancel its job."""
    fd = os.open(os.path.join(os.fspath(folder), CANCEL_FILE),
                 os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | _NOFOLLOW | os.O_NONBLOCK, 0o600)
    os.close(fd)


__all__ = ["CANCEL_FILE", "CANCEL_POLL_S", "OWNER_FILE", "OWNER_LOCK", "Ownership", "owner_of", "request_cancel"]
