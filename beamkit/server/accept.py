"""Accepting connections when the process is out of file descriptors.

Tornado's accept handler lets EMFILE escape: the listening socket stays readable, so the loop
calls the handler again at once, logs the same traceback each time (32,774 lines were seen) and
starves every other callback, ``/health`` included. Here the listener pauses instead, logs once,
and resumes after a short back-off; connections already open carry on meanwhile.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

from tornado import httpserver
from tornado.ioloop import IOLoop

log = logging.getLogger(__name__)

#: errors of accept() that mean "no resources for one more connection now", not a broken listener
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: seconds the listener rests before it tries again
BACKOFF = 0.25
#: connections accepted per wake-up at most, as Tornado does, so a flood cannot starve the loop
BATCH = 128


def add_accept_handler(sock: socket.socket, callback: Callable[[socket.socket, Any], None],
                       backoff: float = BACKOFF) -> Callable[[], None]:
    """Like ``tornado.netutil.add_accept_handler``, pausing on EMFILE/ENFILE; returns a remover."""
    loop = IOLoop.current()
    removed = paused = short = False

    def resume() -> None:
        nonlocal paused
        if paused and not removed:
            paused = False
            loop.add_handler(sock, on_readable, IOLoop.READ)

    def on_readable(fd: Any, events: int) -> None:
        nonlocal paused, short
        for _ in range(BATCH):
            if removed:
                return
            try:
                connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in OUT_OF_RESOURCES:
                    raise
                if not short:  # once per shortage, not once per attempt
                    log.warning("beamkit: out of file descriptors (%s); new connections wait until some close",
                                exc.strerror)
                    short = True
                loop.remove_handler(sock)
                paused = True
                loop.call_later(backoff, resume)
                return
            if short:
                log.warning("beamkit: accepting connections again")
                short = False
            callback(connection, address)

    def remove() -> None:
        nonlocal removed
        if not paused:
            loop.remove_handler(sock)
        removed = True

    loop.add_handler(sock, on_readable, IOLoop.READ)
    return remove


class HTTPServer(httpserver.HTTPServer):
    """Tornado's HTTP server with an accept loop that backs off when descriptors run out."""

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = add_accept_handler(sock, self._handle_connection)
