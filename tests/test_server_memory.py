"""A client that never reads cannot make the server hold memory for it (issue 10, item 1).

The server runs in its own process (its RSS is read from /proc); the client is a raw socket
with a small receive window that sends subscribes and never reads. The server process is
the standalone server with a line-based probe on stdin that reports how many client
messages it has handled, so the test knows when the flood has been taken in.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hardening_helpers import rss_bytes
from server_helpers import RawSocket, register_providers, unregister_providers

import beamkit
from beamkit import storage
from beamkit.errors import BeamkitError, ErrorCode
from beamkit.server.manager import ReplayStore

MiB = 1024 * 1024

SERVER = r"""
import asyncio, json, os, sys
from beamkit.server.connection import Connection
from beamkit.server.manager import JobManager
from beamkit.server.standalone import Server

handled = 0
original = Connection.handle

async def counted(self, data):
    global handled
    try:
        await original(self, data)
    finally:
        handled += 1

Connection.handle = counted

async def main():
    manager = JobManager(sys.argv[1], providers="offline", replay_memory=int(sys.argv[2]))
    server = await Server(manager, "127.0.0.1", 0).start()
    print(json.dumps({"port": server.port}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (line := await reader.readline()).strip() != b"stop":
        sockets = server.app.settings.get("beamkit_sockets", ())
        print(json.dumps({"handled": handled, "sockets": len(sockets), "held": manager.replays.held,
                          "pending": sum(s.conn.pending_bytes for s in sockets if s.conn)}), flush=True)
    await server.stop()

asyncio.run(main())
"""


class ServerProcess:
    def __init__(self, output: Path, replay_memory: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(output), str(replay_memory)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.port = json.loads(self.proc.stdout.readline())["port"]

    def stats(self) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    @property
    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    @property
    def peak(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
            self.proc.wait(30)
        except Exception:
            self.proc.kill()
            self.proc.wait(30)


async def until(predicate, timeout: float = 60):  # type: ignore[no-untyped-def]
    """Poll the server's own report until ``predicate`` holds (the flood is taken in at the server's pace)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(0.05)


async def sessions(output: Path, count: int) -> list[str]:
    """``count`` finished sessions of about 0.7 MB each, as a real job writes them."""
    p = register_providers()
    p.sim.llm_latency = p.sim.image_latency = p.sim.vision_latency = 0
    try:
        ids = []
        for i in range(count):
            result = await beamkit.start("p" * 2000 + f" take {i}", N=12, M=2, iterations=4, providers=p.name,
                                         output=output, seed=i)
            ids.append(result.job_id)
        return ids
    finally:
        unregister_providers(p)


async def read_all(port: int, job_id: str) -> int:
    """Replay a session with a client that reads; the number of its events."""
    ws = await RawSocket.connect(port)
    ws.send_json({"type": "subscribe", "jobId": job_id})
    count = 0
    while (frame := await asyncio.wait_for(ws.frame(), 30)) is not None:
        msg = json.loads(frame[1])
        if msg["type"] == "subscribed":
            continue
        count += 1
        if msg["type"] in ("complete", "error"):
            break
    ws.close()
    return count


@pytest.mark.asyncio
async def test_500_subscribes_that_are_never_read_hold_one_copy_of_each_session(tmp_path: Path) -> None:
    output = tmp_path / "out"
    ids = await sessions(output, 20)
    on_disk = sum((output / "sessions" / j / "events.jsonl").stat().st_size for j in ids)
    assert on_disk > 6 * MiB  # a copy per subscribe would be 25 times that
    server = ServerProcess(output, 256 * MiB)
    try:
        assert await read_all(server.port, ids[0]) > 50  # warm-up: thread pool, first replay
        base = server.rss
        stuck = await RawSocket.connect(server.port, rcvbuf=4096)
        for i in range(500):
            stuck.send_json({"type": "subscribe", "jobId": ids[i % len(ids)]})
        await stuck.writer.drain()
        # handled: the warm-up's subscribe, then these 500
        assert (await until(lambda: server.stats()["handled"] >= 501))
        stats = server.stats()
        assert stats["sockets"] == 1, "the stuck client was closed, though what it asked for fits its budget"
        assert stats["held"] <= on_disk + 2 * MiB  # one copy of each session, however many subscribes
        assert stats["pending"] <= on_disk + 2 * MiB  # one replay per job waits, not 25
        assert server.peak - base < 50 * MiB, f"{(server.peak - base) / MiB:.0f} MiB for one stuck client"
        stuck.close()
        assert await until(lambda: server.stats()["sockets"] == 0)
        assert server.stats()["pending"] == 0
        # What stays is the recent sessions the replay budget keeps, read once: the same again replays them.
        assert server.rss - base < 50 * MiB
        assert await read_all(server.port, ids[5]) > 50
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_replays_share_one_copy_and_stay_within_the_servers_budget(tmp_path: Path) -> None:
    output = tmp_path / "out"
    a, b = await sessions(output, 2)
    folder = output / "sessions"
    size = (folder / a / "events.jsonl").stat().st_size
    store = ReplayStore(budget=int(size * 1.5))
    first, again = await asyncio.gather(store.get(a, folder / a), store.get(a, folder / a))
    assert first is again  # read once, shared
    assert len(first) == len(storage.read_events(folder / a))
    # While a socket still writes a's frames, b does not fit in the budget: it is refused, clearly.
    with pytest.raises(BeamkitError) as refused:
        await store.get(b, folder / b)
    assert refused.value.code == ErrorCode.RATE_LIMIT and "replay_memory" in refused.value.message
    del first, again  # every socket has written it: the recent copy alone is let go for the next
    frames = await store.get(b, folder / b)
    assert len(frames) == len(storage.read_events(folder / b))
    assert store.held == frames.nbytes <= store.budget
