"""Helpers for the server tests: a standalone server on a free port, HTTP and WebSocket calls."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

from beamkit.providers import register, unregister
from beamkit.providers.base import GeneratedImage, RoleHandle, RoleOptions
from beamkit.providers.simulated import SimulatedProvider, Simulation
from beamkit.server.manager import JobManager
from beamkit.server.standalone import Server


class Gate:
    """Holds every image call until opened: a job that stays running as long as a test needs."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.waiting = 0
        self.arrived = asyncio.Event()

    def open(self) -> None:
        self.opened.set()

    def wrap(self, image: Any) -> Any:
        gate = self

        class GatedImage:
            async def generate(self, prompt: str, *, seed: int) -> GeneratedImage:
                gate.waiting += 1
                gate.arrived.set()
                await gate.opened.wait()
                return await image.generate(prompt, seed=seed)

        return GatedImage()


@dataclass
class Providers:
    """A simulated provider registered under a fresh name; ``gated`` holds image calls.
    ``settings_seen`` has the settings each job's LLM role got (those with a value)."""

    name: str
    sim: Simulation
    gated: str
    gate: Gate
    settings_seen: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Running:
    server: Server
    manager: JobManager
    output: Path
    token: str | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ws_url(self) -> str:
        return self.server.url.replace("http", "ws", 1) + "/ws"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def fetch(self, path: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None,
                    raw: bytes | None = None) -> HTTPResponse:
        """An HTTP request that returns error answers instead of raising them."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None))
        req = HTTPRequest(self.url + path, method=method, body=data, headers={**self.headers(), **(headers or {})},
                          request_timeout=20)
        client = AsyncHTTPClient()
        try:
            return await client.fetch(req)
        except HTTPClientError as exc:
            assert exc.response is not None
            return exc.response

    async def json(self, path: str, method: str = "GET", body: Any = None, **kw: Any) -> tuple[int, Any]:
        r = await self.fetch(path, method, body, **kw)
        return r.code, json.loads(r.body)

    async def ws(self, path: str = "/ws", headers: dict[str, str] | None = None) -> WebSocketClientConnection:
        url = self.server.url.replace("http", "ws", 1) + path
        return await websocket_connect(HTTPRequest(url, headers={**self.headers(), **(headers or {})}))


async def start_server(output: Path, providers: str, **options: Any) -> Running:
    manager_opts = {k: options.pop(k) for k in ("max_jobs",) if k in options}
    manager = JobManager(output, providers=providers, **manager_opts)
    server = await Server(manager, "127.0.0.1", 0, **options).start()
    return Running(server, manager, output, options.get("token"))



# -- WebSocket helpers -------------------------------------------------------------------------


async def send(ws: WebSocketClientConnection, msg: Any) -> None:
    await ws.write_message(msg if isinstance(msg, (str, bytes)) else json.dumps(msg), binary=isinstance(msg, bytes))


async def recv(ws: WebSocketClientConnection, timeout: float = 20) -> dict[str, Any]:
    text = await asyncio.wait_for(ws.read_message(), timeout)
    assert text is not None, "the socket closed"
    return json.loads(text)


async def until_terminal(ws: WebSocketClientConnection, job_id: str, timeout: float = 30) -> list[dict[str, Any]]:
    """Messages about ``job_id`` up to and including its ``complete`` or ``error``."""
    seen: list[dict[str, Any]] = []
    while True:
        msg = await recv(ws, timeout)
        if msg.get("jobId") != job_id:
            continue
        seen.append(msg)
        if msg["type"] in ("complete", "error"):
            return seen


# -- a raw WebSocket client: for peers that never read, or never answer pings ------------------


class RawSocket:
    """RFC 6455 by hand over asyncio streams, so a test can misbehave on purpose."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str = "/ws", *, rcvbuf: int | None = None, limit: int = 2**16) -> RawSocket:
        import base64
        import os
        import socket

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # a small window: the server's writes stall once it is full
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, opcode: int, payload: bytes) -> None:
        import os
        import struct

        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        self.writer.write(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send_json(self, msg: Any) -> None:
        self.send(0x1, json.dumps(msg).encode())

    async def frame(self) -> tuple[int, bytes] | None:
        """The next frame as (opcode, payload); None at end of stream."""
        import struct

        try:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            return b0 & 0x0F, await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def close(self) -> None:
        self.writer.close()


class _Recorded(SimulatedProvider):
    """The simulated provider, noting each job's settings; ``gate`` (when set) holds its image calls."""

    def __init__(self, sim: Simulation, p: Providers, gate: Gate | None = None) -> None:
        super().__init__(sim)
        self.p, self.gate = p, gate

    def create(self, role: str, options: RoleOptions) -> RoleHandle:
        handle = super().create(role, options)
        if role == "llm":
            self.p.settings_seen.append({k: v for k, v in options.settings.items() if v is not None})
        if role == "image" and self.gate is not None:
            handle.impl = self.gate.wrap(handle.impl)
        return handle


def register_providers(sim: Simulation | None = None, prefix: str = "sim") -> Providers:
    """A simulated provider and its gated twin (image calls held until ``gate.open()``)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    sim = sim or Simulation()
    sim.name = name
    gate = Gate()
    p = Providers(name, sim, f"{name}-gated", gate)
    register(p.name, _Recorded(sim, p))
    register(p.gated, _Recorded(sim, p, gate))
    return p


def unregister_providers(p: Providers) -> None:
    unregister(p.name)
    unregister(p.gated)
