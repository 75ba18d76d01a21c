"""Fan-out benchmark of the WebSocket server: how many events arrive, and how late.

    .venv/bin/python benchmarks/fanout.py [--subscribers 200] [--jobs 10] [--per-job 20]

Scenario 1: one job followed by ``--subscribers`` WebSocket clients.
Scenario 2: ``--jobs`` jobs at once, each followed by ``--per-job`` clients.

Jobs use the simulated provider set with fixed latencies (so runs compare), on a real
standalone server on 127.0.0.1. The clients run in a second process (``--clients
process``, the default) or on the server's own loop (``--clients inline``, where the
delays include the clients' work too). Delay is measured from the moment the job
emitted an event to the moment a client got it (one monotonic clock for both
processes), for live events: those emitted after every client had subscribed.
Prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tornado.httpclient import HTTPRequest  # noqa: E402
from tornado.websocket import websocket_connect  # noqa: E402

from beamkit import storage  # noqa: E402
from beamkit.providers import register  # noqa: E402
from beamkit.providers.base import ProviderOptions, ProviderSet  # noqa: E402
from beamkit.providers.simulated import Simulation  # noqa: E402
from beamkit.server.manager import JobManager  # noqa: E402
from beamkit.server.standalone import Server  # noqa: E402

JOB = {"N": 9, "M": 3, "iterations": 3}


class Held:
    """A provider set whose first image call waits until every subscriber is in."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.go = asyncio.Event()

    def factory(self, options: ProviderOptions) -> ProviderSet:
        s = self.sim.factory(options)
        image, go = s.image, self.go

        class Image:
            async def generate(self, prompt: str, *, seed: int):  # type: ignore[no-untyped-def]
                await go.wait()
                return await image.generate(prompt, seed=seed)

        s.image = Image()
        return s


async def subscriber(url: str, job_id: str, subscribed: asyncio.Event, out: list) -> None:
    ws = await websocket_connect(HTTPRequest(url))
    ws.write_message(json.dumps({"type": "subscribe", "jobId": job_id}))
    got: list[tuple[str, float]] = []
    while True:
        text = await ws.read_message()
        now = time.monotonic()
        if text is None:
            break
        msg = json.loads(text)
        if msg["type"] == "subscribed":
            subscribed.set()
            continue
        got.append((text, now))
        if msg["type"] in ("complete", "error"):
            break
    ws.close()
    out.append((job_id, got))


async def follow_all(url: str, plan: list[tuple[str, int]], ready) -> list:
    """Open every subscriber, signal ``ready`` once all are subscribed, collect their events."""
    results: list = []
    flags, tasks = [], []
    for job_id, count in plan:
        for _ in range(count):
            flag = asyncio.Event()
            flags.append(flag)
            tasks.append(asyncio.create_task(subscriber(url, job_id, flag, results)))
    for flag in flags:
        await flag.wait()
    ready()
    await asyncio.gather(*tasks)
    return results


def _clients_process(url: str, plan: list[tuple[str, int]], conn) -> None:  # type: ignore[no-untyped-def]
    results = asyncio.run(follow_all(url, plan, lambda: conn.send("ready")))
    conn.send(results)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def scenario(name: str, server: Server, held: Held, jobs: int, per_job: int, inline: bool) -> dict:
    held.go.clear()
    manager = server.manager
    emitted: dict[str, list[float]] = {}
    ids = []
    for i in range(jobs):
        job = manager.start({"prompt": f"a lighthouse in a storm, take {i}", **JOB, "seed": i, "providers": "bench"})
        emitted[job.id] = []
        job.add_listener(lambda e, times=emitted[job.id]: times.append(time.monotonic()))
        ids.append(job.id)
    url = server.url.replace("http", "ws", 1) + "/ws"
    t0 = time.perf_counter()
    plan = [(job_id, per_job) for job_id in ids]
    live_from: dict[str, int] = {}

    def ready() -> None:  # every client has subscribed: what was emitted so far came as a replay
        live_from.update({job_id: len(emitted[job_id]) for job_id in ids})
        held.go.set()

    if inline:
        results = await follow_all(url, plan, ready)
    else:
        parent, child = multiprocessing.Pipe()
        proc = multiprocessing.get_context("spawn").Process(target=_clients_process, args=(url, plan, child))
        proc.start()
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, parent.recv) == "ready"
        ready()
        results = await loop.run_in_executor(None, parent.recv)
        proc.join()
    wall = time.perf_counter() - t0
    await manager.idle()
    sent = delivered = 0
    delays: list[float] = []
    identical = True
    for job_id, got in results:
        truth = storage.read_events(manager.output / "sessions" / job_id)
        sent += len(truth)
        delivered += len(got)
        identical &= [json.loads(t) for t, _ in got] == truth
        for index, (_, at) in enumerate(got):
            if index >= live_from[job_id]:
                delays.append((at - emitted[job_id][index]) * 1000)
    return {
        "scenario": name, "jobs": jobs, "subscribers": jobs * per_job, "events sent": sent, "events delivered": delivered,
        "all arrived, in order": identical and sent == delivered, "live deliveries": len(delays),
        "p50 ms": round(pct(delays, 50), 2), "p99 ms": round(pct(delays, 99), 2), "max ms": round(max(delays, default=0), 2),
        "mean ms": round(statistics.fmean(delays), 2) if delays else None, "wall s": round(wall, 2),
    }


async def main(args: argparse.Namespace) -> None:
    sim = Simulation(llm_latency=args.latency, image_latency=args.latency * 4, vision_latency=args.latency, name="bench")
    held = Held(sim)
    register("bench", held.factory)
    with tempfile.TemporaryDirectory() as out:
        manager = JobManager(out, max_jobs=max(args.jobs, 1), providers="bench")
        server = await Server(manager, "127.0.0.1", 0).start()
        try:
            rows = [
                await scenario("one job, many subscribers", server, held, 1, args.subscribers, args.clients == "inline"),
                await scenario("jobs at once", server, held, args.jobs, args.per_job, args.clients == "inline"),
            ]
        finally:
            await server.stop()
    for row in rows:
        print(f"\n{row.pop('scenario')}")
        for key, value in row.items():
            print(f"  {key:<22} {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--per-job", type=int, default=20)
    parser.add_argument("--clients", choices=("process", "inline"), default="process")
    parser.add_argument("--latency", type=float, default=0.01, help="simulated LLM/vision latency in seconds (image: 4x)")
    asyncio.run(main(parser.parse_args()))
