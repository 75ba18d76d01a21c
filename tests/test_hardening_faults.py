"""Faults (issue 6, item 2): providers that fail, crash and stall at seeded rates; the engine's
per-call timeout; a `beamkit serve` killed with SIGKILL mid-job and started again.

Every job must end in `complete` or `error` (none hangs), every finished candidate must be on disk
with its image, and `beamkit.load` must read every session back, interrupted ones included.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import by_type, run_job
from PIL import Image
from server_helpers import recv, send, start_server, until_terminal
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

import beamkit
from beamkit import storage
from beamkit.errors import ErrorCode
from beamkit.providers import register, unregister
from beamkit.providers.base import DEFAULT_CALL_TIMEOUT, RoleHandle, RoleOptions
from beamkit.providers.simulated import SimulatedProvider, Simulation

# -- the engine's per-call timeout -------------------------------------------------------------------


def test_the_default_call_timeout_is_generous_and_every_set_has_one():
    assert DEFAULT_CALL_TIMEOUT >= 300
    assert RoleHandle(None).call_timeout == DEFAULT_CALL_TIMEOUT
    assert Simulation().provider.create("image", RoleOptions("image")).call_timeout == DEFAULT_CALL_TIMEOUT


def first(kind: str, held: list[tuple[Any, ...]]):
    """A block hook that holds the first call of ``kind`` forever (and records its arguments)."""

    def block(op: str, args: tuple[Any, ...]) -> bool:
        if op == kind and not held:
            held.append(args)
            return True
        return False

    return block


@pytest.mark.asyncio
async def test_a_stalled_call_costs_its_candidate_a_timeout_not_the_job(tmp_path):
    held: list[tuple[Any, ...]] = []
    sim = Simulation(call_timeout=0.2, block=first("image", held))
    job, events = await asyncio.wait_for(run_job(sim, tmp_path, N=3, M=2, iterations=2), 20)
    assert events[-1]["type"] == "complete"
    failed = [e for e in by_type(events, "candidate") if e["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["combinedPrompt"] == held[0][0] and failed[0]["iteration"] == 0
    assert failed[0]["error"]["code"] == ErrorCode.TIMEOUT and "0.2 s" in failed[0]["error"]["message"]
    assert sim.cancelled == ["image"]  # the stalled call was cancelled, not left running
    assert sim.busy() == 0


@pytest.mark.asyncio
async def test_a_stalled_critique_fails_its_children_with_timeout(tmp_path):
    held: list[tuple[Any, ...]] = []
    sim = Simulation(call_timeout=0.2, block=first("critique", held))
    job, events = await asyncio.wait_for(run_job(sim, tmp_path, N=4, M=2, iterations=2), 20)
    assert events[-1]["type"] == "complete"
    parent = {"iteration": held[0][0][0], "candidateId": held[0][0][1]}
    children = [e for e in by_type(events, "candidate") if e["iteration"] == 1]
    of_stalled = [e for e in children if e["parent"] == parent]
    assert len(of_stalled) == 2 and all(e["error"]["code"] == ErrorCode.TIMEOUT for e in of_stalled)
    assert all(e["status"] == "ok" for e in children if e not in of_stalled)


@pytest.mark.asyncio
async def test_a_providers_own_timeout_is_a_timeout_too_and_none_means_no_bound(tmp_path):
    sim = Simulation(call_timeout=None, fault=lambda op, args: TimeoutError() if op == "vision" else None)
    job, events = await asyncio.wait_for(run_job(sim, tmp_path, N=2, M=1, iterations=1), 20)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == ErrorCode.TIMEOUT
    failed = by_type(events, "candidate")
    assert len(failed) == 2 and all(e["error"]["message"].endswith("analyze timed out") for e in failed)


# -- a batch of jobs on a faulty provider set ----------------------------------------------------------

BATCH = 16
SMALL = {"N": 4, "M": 2, "iterations": 3}


def check_session(folder: Path, events: list[dict[str, Any]]) -> beamkit.Result:
    """The session on disk holds what the events say: every finished candidate with its image."""
    assert events == storage.read_events(folder)
    for e in by_type(events, "candidate"):
        if e["status"] == "ok":
            path = Path(e["imagePath"])
            assert path.parent == folder and path.name == f"iter{e['iteration']}-cand{e['candidateId']}.png"
            assert e["imageId"] == f"{folder.name}-{path.name}"
            with Image.open(path) as img:
                img.verify()
        else:
            assert e["error"]["code"] in vars(ErrorCode).values()
            assert e["score"] == {"totalScore": None, "alignmentScore": None, "aestheticScore": None}
    result = beamkit.load(folder)
    ok = {(e["iteration"], e["candidateId"]) for e in by_type(events, "candidate") if e["status"] == "ok"}
    assert {c.key for c in result.candidates if c.ok} == ok
    return result


@pytest.mark.asyncio
async def test_a_batch_on_failing_crashing_stalling_providers_all_end(tmp_path, providers):
    sim = providers.sim
    sim.fail_rate, sim.crash_rate, sim.stall_rate, sim.call_timeout = 0.06, 0.04, 0.03, 0.25
    sim.llm_latency = sim.image_latency = sim.vision_latency = 0.002
    server = await start_server(tmp_path / "out", providers.name, max_jobs=BATCH)
    try:
        ids = []
        for seed in range(BATCH):
            code, body = await server.json("/api/beam-search", "POST", {"prompt": f"a lighthouse, take {seed}",
                                                                         "seed": 1000 + seed, **SMALL})
            assert code == 200, body
            ids.append(body["jobId"])
        cancelled = ids[-1]  # one job is cancelled in the middle as well
        ws = await server.ws()

        async def follow(job_id: str) -> list[dict[str, Any]]:
            sock = await server.ws()
            await send(sock, {"type": "subscribe", "jobId": job_id})
            assert (await recv(sock))["type"] == "subscribed"
            events = await until_terminal(sock, job_id, timeout=20)
            sock.close()
            return events

        followers = [asyncio.ensure_future(follow(j)) for j in ids]
        await send(ws, {"type": "subscribe", "jobId": cancelled})
        while (await recv(ws))["type"] != "candidate":  # cancel once it has finished something
            pass
        code, body = await server.json(f"/api/job/{cancelled}/cancel", "POST")
        assert code == 200 and body["status"] in ("cancelled", "completed", "error")
        # None hangs: every job ends, bounded in time (stalls cost 0.25 s each).
        streams = await asyncio.wait_for(asyncio.gather(*followers), 60)
        await asyncio.wait_for(server.manager.idle(), 10)
        ws.close()
    finally:
        await server.server.stop()

    ends = {}
    codes: set[str] = set()
    messages: list[str] = []
    for job_id, events in zip(ids, streams):
        assert events[0]["type"] == "started" and events[-1]["type"] in ("complete", "error")
        assert sum(e["type"] in ("complete", "error") for e in events) == 1
        ends[job_id] = events[-1]["type"] if events[-1]["type"] == "complete" else events[-1]["error"]["code"]
        codes |= {e["error"]["code"] for e in by_type(events, "candidate") if e["status"] == "failed"}
        messages += [e["error"]["message"] for e in by_type(events, "candidate") if e["status"] == "failed"]
        result = check_session(tmp_path / "out" / "sessions" / job_id, events)
        expected_status = {"complete": "completed", "CANCELLED": "cancelled"}.get(ends[job_id], "error")
        assert result.status == expected_status
        status = json.loads((tmp_path / "out" / "sessions" / job_id / "metadata.json").read_text())["status"]
        assert status == expected_status
    # The batch really met every kind of fault, and most jobs still came through.
    assert {ErrorCode.PROVIDER_ERROR, ErrorCode.TIMEOUT} <= codes, codes
    assert any("simulated failure" in m for m in messages) and any("RuntimeError" in m for m in messages)
    assert sum(v == "complete" for v in ends.values()) >= BATCH // 2, ends
    assert ends[cancelled] in ("CANCELLED", "complete", ErrorCode.PROVIDER_ERROR, ErrorCode.TIMEOUT)
    assert sim.busy() == 0  # no provider call is left running


@pytest.mark.asyncio
async def test_a_job_whose_every_call_stalls_ends_with_timeout(tmp_path):
    sim = Simulation(stall_rate=1.0, call_timeout=0.1)
    job, events = await asyncio.wait_for(run_job(sim, tmp_path, N=2, M=1, iterations=2), 20)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == ErrorCode.TIMEOUT
    assert beamkit.load(job.folder).status == "error"


# -- a server killed with SIGKILL mid-job ---------------------------------------------------------------

# `beamkit serve` itself (beamkit.cli.main), with a simulated provider set registered first: iteration 2
# (the first HOW refinement) never gets its critiques, so the job is certainly mid-way when it is killed.
SERVE = textwrap.dedent("""
    import sys
    from beamkit.cli import main
    from beamkit.providers import register
    from beamkit.providers.simulated import Simulation

    sim = Simulation(name="held", image_latency=0.005, block=lambda op, args: op == "critique" and args[1] == "how")
    register("held", sim.provider)
    sys.exit(main(["serve", "--port", sys.argv[1], "--output", sys.argv[2], "--providers", "held"]))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(port: int, output: Path, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(port), str(output)], stdout=subprocess.PIPE,
                            stderr=open(log, "ab"), text=True, cwd=output.parent)
    line = proc.stdout.readline()  # printed once it listens (or "" if it died)
    assert "beamkit serving" in line, (line, log.read_text())
    return proc


class Remote:
    """HTTP to a server in another process."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    async def fetch(self, path: str, method: str = "GET", body: Any = None) -> Any:
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        try:
            return await AsyncHTTPClient().fetch(HTTPRequest(self.base + path, method=method, body=data, request_timeout=20))
        except HTTPClientError as exc:
            assert exc.response is not None, exc
            return exc.response

    async def json(self, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        r = await self.fetch(path, method, body)
        return r.code, json.loads(r.body)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_server_killed_mid_job_serves_the_finished_part_after_a_restart(tmp_path):
    port, output, log = _free_port(), tmp_path / "out", tmp_path / "server.log"
    output.mkdir()
    proc = _serve(port, output, log)
    client = Remote(port)
    try:
        code, body = await client.json("/api/beam-search", "POST", {"prompt": "a harbour at night", "N": 3, "M": 2,
                                                                     "iterations": 4, "seed": 9})
        assert code == 200
        job_id = body["jobId"]
        ws = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{port}/ws"))
        await send(ws, {"type": "subscribe", "jobId": job_id})
        assert (await recv(ws))["type"] == "subscribed"
        seen: list[dict[str, Any]] = []
        while not (seen and seen[-1]["type"] == "iteration" and seen[-1]["iteration"] == 2):
            seen.append(await recv(ws))
        code, live = await client.json(f"/api/job/{job_id}")
        assert live["status"] == "in_progress"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        ws.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    folder = output / "sessions" / job_id
    loaded = beamkit.load(folder)
    assert loaded.status == "interrupted" and loaded.iterations_done == 2
    assert len([c for c in loaded.candidates if c.ok]) == 6

    proc = _serve(port, output, log)
    try:
        code, status = await client.json(f"/api/job/{job_id}")
        assert code == 200 and status["status"] == "error" and status["interrupted"] is True
        assert status["error"]["code"] == "INTERNAL_ERROR" and "interrupted" in status["error"]["message"]
        # the iteration it was in when it stopped, as a live job's progress says it
        assert status["progress"]["candidatesProcessed"] == 6 and status["progress"]["currentIteration"] == 2
        code, listing = await client.json("/api/jobs")
        row = next(j for j in listing["jobs"] if j["jobId"] == job_id)
        assert row["status"] == "error" and row["interrupted"] is True
        for e in seen:
            if e["type"] == "candidate":
                r = await client.fetch(f"/api/images/{e['imageId']}")
                assert r.code == 200 and r.body == Path(e["imagePath"]).read_bytes()
                assert Image.open(io.BytesIO(r.body)).format == "PNG"
        ws = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{port}/ws"))
        await send(ws, {"type": "subscribe", "jobId": job_id})
        assert (await recv(ws))["type"] == "subscribed"
        replay = await until_terminal(ws, job_id)
        assert replay[:-1] == seen
        assert replay[-1]["type"] == "error" and replay[-1]["interrupted"] is True
        ws.close()
        # and the restarted server runs new jobs (this one stops at its own held iteration 2)
        code, body = await client.json("/api/beam-search", "POST", {"prompt": "again", "N": 2, "M": 1, "iterations": 2})
        assert code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0


# -- a provider that answers with broken text ---------------------------------------------------------


@pytest.mark.asyncio
async def test_a_provider_answer_that_is_not_text_costs_its_candidate_not_the_job(tmp_path):
    """JSON can carry lone surrogates ("\\ud800"); a careless compatible server may send them. Such a
    string can be neither stored nor sent as UTF-8: it must fail one candidate, like any provider fault."""
    sim = Simulation()
    broken: list[str] = []

    class BrokenText(SimulatedProvider):
        def create(self, role: str, options: RoleOptions) -> RoleHandle:
            handle = super().create(role, options)
            s = handle.impl
            if role == "llm":
                combine = s.combine

                async def bad_combine(what: str, how: str, *, seed: int) -> str:
                    text = await combine(what, how, seed=seed)
                    if not broken:
                        broken.append(text)
                        return text + " \ud83d"
                    return text

                s.combine = bad_combine
            elif role == "vision":
                analyze = s.analyze

                async def bad_analyze(image: bytes, user_prompt: str, *, seed: int) -> Any:
                    result = await analyze(image, user_prompt, seed=seed)
                    if len(broken) == 1:
                        broken.append("analysis")
                        result.strengths = ["fine", "\udfff"]
                    return result

                s.analyze = bad_analyze
            return handle

    register("broken-text", BrokenText(sim))
    try:
        job = beamkit.start("a fox", N=3, M=1, iterations=2, seed=5, providers="broken-text", output=tmp_path)
        events = [e async for e in job.events()]
    finally:
        unregister("broken-text")
    assert events[-1]["type"] == "complete", events[-1]
    failed = [e for e in by_type(events, "candidate") if e["status"] == "failed"]
    assert len(failed) == 2 and all(e["error"]["code"] == ErrorCode.PROVIDER_ERROR for e in failed)
    assert storage.read_events(job.folder) == events
    json.dumps(events, ensure_ascii=False).encode("utf-8")  # everything recorded is text
    assert beamkit.load(job.folder).status == "completed"
