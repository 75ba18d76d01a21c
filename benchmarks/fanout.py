"""Fan-out benchmark of the WebSocket server: how late events arrive, and the server's CPU per delivery.

    .venv/bin/python benchmarks/fanout.py [--subscribers 200] [--jobs 10] [--per-job 20] [--client-procs 2] [--profile FILE]

Scenario 1: one job followed by ``--subscribers`` WebSocket clients.
Scenario 2: ``--jobs`` jobs at once, each followed by ``--per-job`` clients.

The server is a real standalone server in its own process; jobs use the simulated provider
set with fixed latencies (so runs compare), and their first image call waits until every
client has subscribed. The clients are raw asyncio sockets that parse frames from what they
read (light enough not to be the bottleneck), in ``--client-procs`` processes of their own.

Delay: from the moment the job emitted an event (in the server) to the moment a client read
it (CLOCK_MONOTONIC, one clock for every process), for live events (emitted after every
client had subscribed). Server CPU per delivery: the server process's CPU time
(``time.process_time()`` in that process, at nanosecond resolution) while the scenario ran, less what the same jobs cost with no subscriber, divided by the
events delivered. Prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOB = {"N": 9, "M": 3, "iterations": 3}

# The server process: a standalone server with a held simulated provider, driven by lines on stdin.
SERVER = r"""
import asyncio, json, os, sys, tempfile, time
from beamkit.providers import register
from beamkit.providers.simulated import SimulatedProvider, Simulation
from beamkit.server.manager import JobManager
from beamkit.server.standalone import Server

latency = float(sys.argv[1])
go = asyncio.Event()

class Held(SimulatedProvider):
    def create(self, role, options):
        handle = super().create(role, options)
        if role == "image":
            image = handle.impl
            class Image:
                async def generate(self, prompt, *, seed):
                    await go.wait()
                    return await image.generate(prompt, seed=seed)
            handle.impl = Image()
        return handle

def cpu():  # nanosecond CPU time of this process (os.times() counts in 10 ms ticks)
    return time.process_time()

async def main():
    register("bench", Held(Simulation(llm_latency=latency, image_latency=latency * 4, vision_latency=latency, name="bench")))
    out = tempfile.mkdtemp(prefix="beamkit-fanout-")
    manager = JobManager(out, max_jobs=64, providers="bench")
    server = await Server(manager, "127.0.0.1", 0).start()
    print(json.dumps({"port": server.port}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    emitted = {}
    while True:
        cmd = json.loads(await reader.readline())
        if cmd["do"] == "start":
            go.clear()
            ids = []
            for i in range(cmd["jobs"]):
                job = manager.start({"prompt": f"a lighthouse in a storm, take {i}", **cmd["job"], "seed": i})
                times = emitted[job.id] = []
                job.add_listener(lambda e, times=times: times.append(time.monotonic()))
                ids.append(job.id)
            print(json.dumps({"ids": ids}), flush=True)
        elif cmd["do"] == "go":  # every client is in: what was emitted so far came as a replay
            live = {j: len(t) for j, t in emitted.items()}
            c0 = cpu()
            go.set()
            await manager.idle()
            print(json.dumps({"live_from": live, "cpu_jobs": cpu() - c0}), flush=True)
        elif cmd["do"] == "cpu":
            print(json.dumps({"cpu": cpu()}), flush=True)
        elif cmd["do"] == "emitted":
            print(json.dumps({"emitted": emitted, "out": out}), flush=True)
            emitted = {}
        else:
            break
    await server.stop()

if os.environ.get("BEAMKIT_FANOUT_PROFILE"):  # --profile: where the server's time goes
    import cProfile
    cProfile.run("asyncio.run(main())", os.environ["BEAMKIT_FANOUT_PROFILE"])
else:
    asyncio.run(main())
"""


class ServerProcess:
    def __init__(self, latency: float, profile: str | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), **({"BEAMKIT_FANOUT_PROFILE": profile} if profile else {})}
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(latency)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.port = self.ask(None)["port"]

    def ask(self, cmd: dict | None) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if cmd is not None:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        try:
            self.ask_nothing({"do": "stop"})
            self.proc.wait(30)
        except Exception:
            self.proc.kill()

    def ask_nothing(self, cmd: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()


# -- the clients -------------------------------------------------------------------------------------


async def subscriber(port: int, job_id: str, subscribed: asyncio.Event, out: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await reader.readuntil(b"\r\n\r\n")
    payload = json.dumps({"type": "subscribe", "jobId": job_id}).encode()
    mask = os.urandom(4)
    writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    got: list[tuple[bytes, float]] = []
    buf = b""
    done = False
    while not done:
        chunk = await reader.read(1 << 18)
        now = time.monotonic()
        if not chunk:
            break
        buf += chunk
        i = 0
        while len(buf) - i >= 2:  # whole frames in what has arrived
            n, start = buf[i + 1] & 0x7F, i + 2
            if n == 126:
                if len(buf) - i < 4:
                    break
                n, start = struct.unpack_from("!H", buf, i + 2)[0], i + 4
            elif n == 127:
                if len(buf) - i < 10:
                    break
                n, start = struct.unpack_from("!Q", buf, i + 2)[0], i + 10
            if len(buf) < start + n:
                break
            text = buf[start:start + n]
            i = start + n
            if text.startswith(b'{"type": "subscribed"') or b'"type": "subscribed"' in text[:40]:
                subscribed.set()
                continue
            got.append((text, now))
            if b'"type": "complete"' in text[:40] or b'"type": "error"' in text[:40]:
                done = True
        buf = buf[i:]
    writer.close()
    out.append((job_id, [(t.decode(), at) for t, at in got]))


async def follow_all(port: int, plan: list[tuple[str, int]], ready) -> list:  # type: ignore[no-untyped-def]
    results: list = []
    flags, tasks = [], []
    for job_id, count in plan:
        for _ in range(count):
            flag = asyncio.Event()
            flags.append(flag)
            tasks.append(asyncio.create_task(subscriber(port, job_id, flag, results)))
    for flag in flags:
        await flag.wait()
    ready()
    await asyncio.gather(*tasks)
    return results


def _clients_process(port: int, plan: list[tuple[str, int]], conn) -> None:  # type: ignore[no-untyped-def]
    results = asyncio.run(follow_all(port, plan, lambda: conn.send("ready")))
    conn.send(results)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def read_events(folder: Path) -> list[dict]:
    with open(folder / "events.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def scenario(name: str, server: ServerProcess, jobs: int, per_job: int, procs: int) -> dict:
    # The same jobs with nobody watching: the CPU that is the jobs' own, not the fan-out's.
    ids = server.ask({"do": "start", "jobs": jobs, "job": JOB})["ids"]
    alone = server.ask({"do": "go"})["cpu_jobs"]
    server.ask({"do": "emitted"})

    ids = server.ask({"do": "start", "jobs": jobs, "job": JOB})["ids"]
    plan = [(job_id, 1) for job_id in ids for _ in range(per_job)]
    shares = [plan[i::procs] for i in range(procs)]  # sockets dealt out to the client processes
    ctx = multiprocessing.get_context("spawn")
    pipes, kids = [], []
    for share in shares:
        if not share:
            continue
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_clients_process, args=(server.port, share, child))
        proc.start()
        pipes.append(parent)
        kids.append(proc)
    for parent in pipes:
        assert parent.recv() == "ready"
    t0 = time.perf_counter()
    c0 = server.ask({"do": "cpu"})["cpu"]
    went = server.ask({"do": "go"})
    results = [r for parent in pipes for r in parent.recv()]
    c1 = server.ask({"do": "cpu"})["cpu"]
    wall = time.perf_counter() - t0
    for proc in kids:
        proc.join()
    info = server.ask({"do": "emitted"})
    emitted, out = info["emitted"], Path(info["out"])
    sent = delivered = 0
    delays: list[float] = []
    identical = True
    for job_id, got in results:
        truth = read_events(out / "sessions" / job_id)
        sent += len(truth)
        delivered += len(got)
        identical &= [json.loads(t) for t, _ in got] == truth
        for index, (_, at) in enumerate(got):
            if index >= went["live_from"][job_id]:
                delays.append((at - emitted[job_id][index]) * 1000)
    fanout_cpu = (c1 - c0) - alone
    return {
        "scenario": name, "jobs": jobs, "subscribers": jobs * per_job, "events sent": sent, "events delivered": delivered,
        "all arrived, in order": identical and sent == delivered, "live deliveries": len(delays),
        "p50 ms": round(pct(delays, 50), 2), "p99 ms": round(pct(delays, 99), 2), "max ms": round(max(delays, default=0), 2),
        "mean ms": round(statistics.fmean(delays), 2) if delays else None, "wall s": round(wall, 2),
        "server cpu s": round(c1 - c0, 3), "of which the jobs s": round(alone, 3),
        "server us/event/subscriber": round(fanout_cpu / max(delivered, 1) * 1e6, 2),
    }


def main(args: argparse.Namespace) -> None:
    server = ServerProcess(args.latency, args.profile)
    try:
        rows = [
            scenario("one job, many subscribers", server, 1, args.subscribers, args.client_procs),
            scenario("jobs at once", server, args.jobs, args.per_job, args.client_procs),
        ]
    finally:
        server.stop()
    for row in rows:
        print(f"\n{row.pop('scenario')}")
        for key, value in row.items():
            print(f"  {key:<28} {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--per-job", type=int, default=20)
    parser.add_argument("--client-procs", type=int, default=2, help="client processes (sockets dealt out among them)")
    parser.add_argument("--latency", type=float, default=0.01, help="simulated LLM/vision latency in seconds (image: 4x)")
    parser.add_argument("--profile", metavar="FILE",
                        help="profile the server process (cProfile) into FILE: its figures are then not comparable")
    main(parser.parse_args())
