"""Helpers for the hardening tests (tests/test_hardening_*.py).

``LoopThread`` runs an asyncio loop in a thread, so that synchronous test code (hypothesis,
schemathesis, which drive their own loop of examples) can talk to a real server: the server
and any tornado client coroutines run on that loop, the test submits work to it and waits.
Everything binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from server_helpers import Providers, Running, register_providers, start_server, unregister_providers

T = TypeVar("T")


class LoopThread:
    """An event loop in a daemon thread; ``run(coro)`` runs a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="hardening loop", daemon=True)
        self._thread.start()

    def run(self, work: Awaitable[T] | Callable[[], Awaitable[T]], timeout: float = 60) -> T:
        """Await a coroutine, or what ``work()`` returns, on the loop; ``work`` is called there, so
        functions that make futures (``ws.read_message``, ``websocket_connect``) make them on it."""

        async def inside() -> T:
            return await (work() if callable(work) else work)

        return asyncio.run_coroutine_threadsafe(inside(), self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 30) -> T:
        """Call ``fn`` on the loop's thread (for state that belongs to the loop)."""

        async def inside() -> T:
            return fn()

        return self.run(inside(), timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ThreadedServer:
    """A standalone server on a ``LoopThread``, with a synchronous HTTP helper."""

    lt: LoopThread
    running: Running
    providers: Providers
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.running.server.port

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def manager(self) -> Any:
        return self.running.manager

    @property
    def output(self) -> Path:
        return self.running.output

    def http(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None, timeout: float = 20) -> Answer:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers={**self.running.headers(), **(headers or {})})
            r = conn.getresponse()
            return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()


@contextmanager
def threaded_server(output: Path, providers: Providers | None = None, default: str = "gated",
                    **options: Any) -> Iterator[ThreadedServer]:
    """A standalone server on 127.0.0.1 in a thread; jobs that name no set use the gated one by default."""
    p = providers or register_providers()
    lt = LoopThread()
    try:
        running = lt.run(start_server(output, p.gated if default == "gated" else p.name, **options))
        try:
            yield ThreadedServer(lt, running, p)
        finally:
            lt.call(p.gate.open)  # let held jobs go, so that stopping is quick
            lt.run(running.server.stop())
    finally:
        lt.close()
        if providers is None:
            unregister_providers(p)


def open_fds() -> int:
    """File descriptors this process holds now."""
    return len(os.listdir("/proc/self/fd"))


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")
