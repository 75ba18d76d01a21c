"""Soak: many jobs through one server, each followed by many WebSocket subscribers.

    .venv/bin/python benchmarks/soak.py [--jobs 200] [--subscribers 20] [--running 8] [--keep]
    .venv/bin/python benchmarks/soak.py --extension --jobs 100 --subscribers 10

The server is `beamkit serve` (``beamkit.cli.main``) in a subprocess on 127.0.0.1, or with
``--extension`` a Jupyter Server with the beamkit extension and a token (every request and
socket carries it; Jupyter's state folders are fresh temporary ones), with a simulated
provider set of small fixed latencies registered first, so that the numbers are the server's own.
At most ``--running`` jobs run at once. Each job is followed by ``--subscribers`` WebSocket
clients: half subscribe as soon as the job is started, half once the first of them has seen a
candidate (late subscribers get the replay, then the live events). Every client must receive
exactly the job's events as ``events.jsonl`` holds them, in order.

It prints the server's RSS and open file descriptors at start (after one warm-up job), and after
the last job (every client closed), and how many events were lost, duplicated or out of order.
Exit status 0 when nothing was lost and the descriptors came back to where they started.
Prints numbers; it is not a test (tests/test_hardening_soak.py runs a small one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest  # noqa: E402
from tornado.websocket import websocket_connect  # noqa: E402

JOB = {"N": 4, "M": 2, "iterations": 3}


@dataclass
class Report:
    jobs: int = 0
    subscribers: int = 0
    events_expected: int = 0
    events_received: int = 0
    lost: int = 0
    extra: int = 0
    out_of_order: int = 0
    refused: int = 0  # starts answered 429 (counted, then retried)
    outcomes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


async def _post(http: AsyncHTTPClient, url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    try:
        r = await http.fetch(HTTPRequest(url, method="POST", body=json.dumps(body), headers=headers, request_timeout=30))
    except HTTPClientError as exc:
        assert exc.response is not None, exc
        r = exc.response
    return r.code, json.loads(r.body)


async def _follow(ws_url: str, job_id: str, headers: dict[str, str], timeout: float) -> list[str]:
    """Subscribe, then every message about the job (as received text) up to its last event."""
    ws = await websocket_connect(HTTPRequest(ws_url, headers=headers))
    try:
        await ws.write_message(json.dumps({"type": "subscribe", "jobId": job_id}))
        got: list[str] = []
        while True:
            text = await asyncio.wait_for(ws.read_message(), timeout)
            if text is None:
                return got  # dropped: what is missing counts as lost
            msg = json.loads(text)
            if msg.get("jobId") != job_id or msg["type"] in ("subscribed", "pong"):
                continue
            got.append(text)
            if msg["type"] in ("complete", "error"):
                return got
    finally:
        await _close(ws, timeout)


async def _close(ws: Any, timeout: float) -> None:
    """Close and read to the end: a tornado client reads no frame (the server's close included)
    while a message waits unread, so without this its socket would linger for 5 s."""
    ws.close()
    try:
        while await asyncio.wait_for(ws.read_message(), timeout) is not None:
            pass
    except TimeoutError:
        pass


async def drive(base_url: str, output: Path, *, jobs: int, subscribers: int, running: int,
                params: dict[str, Any] | None = None, providers: str | None = None, token: str | None = None,
                timeout: float = 60) -> Report:
    """Run ``jobs`` jobs through the server at ``base_url``, ``running`` at a time, each followed by
    ``subscribers`` WebSocket clients; compare what every client got with the session on disk."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws_url = base_url.replace("http", "ws", 1) + "/ws"
    http = AsyncHTTPClient(force_instance=True)
    report = Report(jobs=jobs, subscribers=subscribers)
    gate = asyncio.Semaphore(running)
    body = {"prompt": "a lighthouse in a storm", **(params or JOB), **({"providers": providers} if providers else {})}

    async def one(n: int) -> None:
        async with gate:
            for _ in range(100):  # bounded: a 429 means a finished job is still being let go
                code, answer = await _post(http, base_url + "/api/beam-search", {**body, "seed": n}, headers)
                if code != 429:
                    break
                report.refused += 1
                await asyncio.sleep(0.05)
            assert code == 200, answer
            job_id = answer["jobId"]
            early = [asyncio.ensure_future(_follow(ws_url, job_id, headers, timeout)) for _ in range(subscribers // 2)]
            # late subscribers: once the job has finished a candidate (or ended)
            first = asyncio.ensure_future(_first_candidate(ws_url, job_id, headers, timeout))
            await first
            late = [asyncio.ensure_future(_follow(ws_url, job_id, headers, timeout))
                    for _ in range(subscribers - len(early))]
            streams = await asyncio.gather(*early, *late)
        disk = (output / "sessions" / job_id / "events.jsonl").read_text(encoding="utf-8").splitlines()
        last = json.loads(disk[-1])
        outcome = last["type"] if last["type"] == "complete" else last["error"]["code"]
        report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
        for got in streams:
            report.events_expected += len(disk)
            report.events_received += len(got)
            same = sum(1 for a, b in zip(got, disk) if json.loads(a) == json.loads(b))
            report.lost += max(0, len(disk) - len(got))
            report.extra += max(0, len(got) - len(disk))
            report.out_of_order += min(len(got), len(disk)) - same

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(one(n) for n in range(jobs)))
    finally:
        http.close()
    report.seconds = time.perf_counter() - t0
    return report


async def _first_candidate(ws_url: str, job_id: str, headers: dict[str, str], timeout: float) -> None:
    ws = await websocket_connect(HTTPRequest(ws_url, headers=headers))
    try:
        await ws.write_message(json.dumps({"type": "subscribe", "jobId": job_id}))
        while True:
            text = await asyncio.wait_for(ws.read_message(), timeout)
            if text is None or json.loads(text)["type"] in ("candidate", "complete", "error"):
                return
    finally:
        await _close(ws, timeout)


# -- the server process ---------------------------------------------------------------------------------

SERVE = textwrap.dedent("""
    import collections, sys
    from beamkit.cli import main
    from beamkit.providers import register
    from beamkit.providers.simulated import Simulation

    sim = Simulation(name="soak", llm_latency=0.002, image_latency=0.005, vision_latency=0.002)
    sim.calls = collections.deque(maxlen=1000)  # the simulation's own record of calls must not count as the server's memory
    register("soak", sim.provider)
    sys.exit(main(["serve", "--port", sys.argv[1], "--output", sys.argv[2], "--providers", "soak",
                   "--max-jobs", sys.argv[3], "--max-connections", sys.argv[4]]))
""")


JUPYTER = textwrap.dedent("""
    import collections, sys
    from beamkit.providers import register
    from beamkit.providers.simulated import Simulation
    from jupyter_server.serverapp import ServerApp

    sim = Simulation(name="soak", llm_latency=0.002, image_latency=0.005, vision_latency=0.002)
    sim.calls = collections.deque(maxlen=1000)
    register("soak", sim.provider)
    port, output, max_jobs, max_connections, token, root = sys.argv[1:7]
    print("beamkit serving (jupyter)", flush=True)
    ServerApp.launch_instance(argv=[
        "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
        "--ServerApp.jpserver_extensions={'beamkit': True}",
        f"--BeamkitSettings.output={output}", "--BeamkitSettings.providers=soak",
        f"--BeamkitSettings.max_jobs={max_jobs}", f"--BeamkitSettings.max_connections={max_connections}"])
""")


async def _until_listening(base: str, headers: dict[str, str], proc: subprocess.Popen, timeout: float = 90) -> bool:
    http = AsyncHTTPClient(force_instance=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                await http.fetch(base + "/health", headers=headers, request_timeout=5)
                return True
            except Exception:
                await asyncio.sleep(0.2)  # polling a condition: the port opening
        return False
    finally:
        http.close()


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _settled_fds(pid: int, baseline: int, tries: int = 200) -> int:
    """The server's descriptors once it has seen every client go (bounded: ``tries`` looks, 20 ms apart)."""
    n = fds(pid)
    for _ in range(tries):
        if n <= baseline:
            break
        await asyncio.sleep(0.02)
        n = fds(pid)
    return n


async def main_async(args: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="beamkit-soak-"))
    output = folder / "out"
    port = _free_port()
    limits = [str(2 * args.running), str(2 * args.running * args.subscribers + 16)]
    token = None
    env = dict(os.environ)
    if args.extension:
        token = os.urandom(16).hex()
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
            (folder / name).mkdir()
            env[name] = str(folder / name)
        cmd = [sys.executable, "-c", JUPYTER, str(port), str(output), *limits, token, str(folder)]
        base = f"http://127.0.0.1:{port}/beamkit"
    else:
        cmd = [sys.executable, "-c", SERVE, str(port), str(output), *limits]
        base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(folder / "server.log", "wb"), text=True, env=env)
    try:
        line = proc.stdout.readline()
        up = "beamkit serving" in line
        if up and args.extension:
            up = await _until_listening(base, {"Authorization": f"Bearer {token}"}, proc)
        if not up:
            print("the server did not start:", (folder / "server.log").read_text(), file=sys.stderr)
            shutil.rmtree(folder, ignore_errors=True)
            return 1
        await drive(base, output, jobs=1, subscribers=args.subscribers, running=1, token=token)  # warm-up
        rss0, fds0 = rss(proc.pid), fds(proc.pid)
        report = await drive(base, output, jobs=args.jobs, subscribers=args.subscribers, running=args.running,
                             token=token)
        fds1 = await _settled_fds(proc.pid, fds0)
        rss1 = rss(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    mib = 1024 * 1024
    print(f"{'Jupyter Server extension (token)' if args.extension else 'beamkit serve'}: jobs {report.jobs} x subscribers {report.subscribers}, at most {args.running} running; "
          f"{report.seconds:.1f} s; outcomes {report.outcomes}; 429 retried {report.refused}")
    print(f"events expected {report.events_expected}, received {report.events_received}, lost {report.lost}, "
          f"extra {report.extra}, out of order {report.out_of_order}")
    print(f"server RSS before {rss0 / mib:.1f} MiB, after {rss1 / mib:.1f} MiB ({(rss1 - rss0) / mib:+.1f} MiB)")
    print(f"server open fds before {fds0}, after {fds1}")
    if args.keep:
        print(f"sessions in {output}; server exit status {proc.returncode}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
        print(f"server exit status {proc.returncode}")
    ok = report.lost == report.extra == report.out_of_order == 0 and fds1 <= fds0 and proc.returncode == 0
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--running", type=int, default=8, help="jobs at once")
    parser.add_argument("--extension", action="store_true", help="soak the Jupyter Server extension, with a token")
    parser.add_argument("--keep", action="store_true", help="keep the sessions (and the server's log) in a temp folder")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
