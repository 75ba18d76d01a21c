"""Soak, scaled down (issue 6, item 4): 20 jobs through one server, each followed by 5 WebSocket
subscribers (half of them late). No event lost, none extra or out of order, no file handle leaked,
nothing of a finished job kept in memory. The full soak (200 jobs x 20 subscribers, the server in
its own process, RSS reported) is benchmarks/soak.py.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import sys
from pathlib import Path

import pytest
from hardening_helpers import open_fds, rss_bytes
from server_helpers import start_server

_spec = importlib.util.spec_from_file_location("beamkit_bench_soak", Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py")
soak = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["beamkit_bench_soak"] = soak  # dataclasses look their module up
_spec.loader.exec_module(soak)  # type: ignore[union-attr]


async def settled(predicate, tries: int = 300) -> bool:
    """Wait (bounded) for the server to see its last clients go."""
    for _ in range(tries):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


@pytest.mark.asyncio
async def test_20_jobs_with_5_subscribers_each_lose_nothing_and_leak_nothing(tmp_path, providers):
    sim = providers.sim
    sim.llm_latency, sim.image_latency, sim.vision_latency = 0.001, 0.003, 0.001
    server = await start_server(tmp_path / "out", providers.name, max_jobs=8)
    try:
        # warm-up: the first job and socket create what lives for the whole process (thread pool, resolver)
        await soak.drive(server.url, server.output, jobs=1, subscribers=2, running=1)
        gc.collect()
        fds0, rss0 = open_fds(), rss_bytes()
        report = await soak.drive(server.url, server.output, jobs=20, subscribers=5, running=4, timeout=30)
        assert report.outcomes == {"complete": 20}
        assert report.events_expected == report.events_received > 20 * 5 * 15
        assert report.lost == report.extra == report.out_of_order == 0
        sockets = server.server.app.settings["beamkit_sockets"]
        assert await settled(lambda: not sockets), f"{len(sockets)} sockets still open on the server"
        await server.manager.idle()
        assert server.manager.running == 0 and not server.manager._live  # finished jobs are let go
        assert server.manager.replays.held <= server.manager.replays.budget
        gc.collect()
        assert await settled(lambda: open_fds() <= fds0), f"file descriptors: {fds0} before, {open_fds()} after"
        assert rss_bytes() - rss0 < 64 * 1024 * 1024  # generous: 1,900 messages must not cost real memory
    finally:
        await server.server.stop()
