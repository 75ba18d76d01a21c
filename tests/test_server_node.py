"""The JavaScript example client of websocket-api.md, run as written under Node against the
standalone server: only its URL and jobId are filled in."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).parent
EXAMPLE = HERE / "node" / "example-client.js"
SPEC = HERE.parent.parent / "shared" / "spec" / "websocket-api.md"
DOC = HERE.parent / "docs" / "websocket.md"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def example_in(markdown: Path) -> str:
    text = markdown.read_text(encoding="utf-8")
    section = text[text.index("### JavaScript"):]
    return re.search(r"```javascript\n(.*?)```", section, re.S).group(1)


def test_the_example_is_the_documents_own():
    if SPEC.exists():
        assert EXAMPLE.read_text() == example_in(SPEC)
    assert EXAMPLE.read_text() == example_in(DOC)


async def run_example(url: str, job_id: str, tmp_path: Path) -> tuple[str, str]:
    source = EXAMPLE.read_text()
    assert source.count("'ws://localhost:3000'") == 1 and source.count("'job-abc123'") == 1
    script = tmp_path / "client.mjs"
    script.write_text(source.replace("'ws://localhost:3000'", repr(url)).replace("'job-abc123'", repr(job_id)))
    proc = await asyncio.create_subprocess_exec(
        NODE, "--experimental-websocket", str(script),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode(), err.decode()


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["", "/ws"])
async def test_the_example_client_follows_a_job_to_its_end(server, tmp_path, path):
    # the real offline provider set, end to end
    body = {"prompt": "a harbour at night", "N": 4, "M": 2, "iterations": 3, "seed": 2, "providers": "offline"}
    code, body = await server.json("/api/beam-search", "POST", body)
    assert code == 200
    url = server.url.replace("http", "ws", 1) + path
    log, err = await run_example(url, body["jobId"], tmp_path)
    assert err == ""
    lines = log.splitlines()
    assert lines[0] == "Connected"
    assert lines[1].startswith("Job started:") and "prompt: 'a harbour at night'" in log
    assert "Iteration 0/3" in lines and "Iteration 2/3" in lines
    assert sum(line.startswith("Candidate ") and ": score " in line for line in lines) == 12
    best = log[log.index("Best result:"):]
    assert "combinedPrompt:" in best and "totalScore:" in best and "imageId:" in best
    assert lines[-1] == "Disconnected"
    assert "undefined" not in log


@pytest.mark.asyncio
async def test_the_example_client_reports_a_cancelled_job(server, providers, tmp_path):
    code, body = await server.json("/api/beam-search", "POST", {"prompt": "a fox", "N": 2, "M": 1, "iterations": 1,
                                                               "providers": providers.gated})
    await server.json(f"/api/job/{body['jobId']}/cancel", "POST")
    log, err = await run_example(server.url.replace("http", "ws", 1), body["jobId"], tmp_path)
    assert err == "Error: Job was cancelled\n"
    assert log.splitlines()[0] == "Connected" and log.splitlines()[-1] == "Disconnected"


@pytest.mark.asyncio
async def test_the_example_client_runs_through_failed_candidates(tmp_path):
    """A failed candidate carries a score of nulls, so the document's client, which reads
    ``message.score.totalScore`` on every candidate, runs to the end as written."""
    from server_helpers import register_providers, start_server, unregister_providers

    from beamkit.errors import ProviderError
    from beamkit.providers.simulated import Simulation

    calls = iter(range(10**6))
    unlucky = {1, 6}  # two image calls of the twelve fail: their candidates fail, the job goes on
    sim = Simulation(fault=lambda op, args: ProviderError("simulated outage") if op == "image" and next(calls) in unlucky else None)
    p = register_providers(sim)
    running = await start_server(tmp_path / "output", p.name)
    try:
        body = {"prompt": "a lighthouse", "N": 4, "M": 2, "iterations": 3, "seed": 5}
        code, answer = await running.json("/api/beam-search", "POST", body)
        assert code == 200
        job_id = answer["jobId"]
        log, err = await run_example(running.url.replace("http", "ws", 1), job_id, tmp_path)
        code, job = await running.json(f"/api/job/{job_id}")
    finally:
        await running.server.stop()
        unregister_providers(p)
    assert err == ""
    assert job["status"] == "completed" and job["result"]["candidatesFailed"] == 2
    lines = log.splitlines()
    assert sum(line.startswith("Candidate ") for line in lines) == 12
    assert sum(line.endswith(": score null") for line in lines) == 2
    assert any(line.startswith("Best result:") for line in lines) and lines[-1] == "Disconnected"


@pytest.mark.asyncio
async def test_the_example_client_follows_a_steered_job(server, tmp_path):
    # The client knows no "review" status: it logs the review as one more iteration line and goes on.
    body = {"prompt": "a harbour at night", "N": 3, "M": 2, "iterations": 2, "seed": 2, "providers": "offline",
            "steer": True}
    code, body = await server.json("/api/beam-search", "POST", body)
    assert code == 200
    job = server.manager.live_job(body["jobId"])

    async def answer() -> None:
        async for e in job.events():
            if e["type"] == "iteration" and e["status"] == "review":
                code, _ = await server.json(f"/api/job/{job.id}/review", "POST", {"keep": [e["beam"][0]]})
                assert code == 200

    answering = asyncio.ensure_future(answer())
    log, err = await run_example(server.url.replace("http", "ws", 1), body["jobId"], tmp_path)
    await answering
    assert err == ""
    lines = log.splitlines()
    assert lines.count("Iteration 0/2") == 3  # processing, review, completed
    assert "Best result:" in log and lines[-1] == "Disconnected" and "undefined" not in log


def _subscribe_and_collect(server, job_id: str):
    """A plain Python WebSocket client: subscribe, and every event of the job up to its end."""
    from server_helpers import send, until_terminal

    async def collect() -> list[dict]:
        ws = await server.ws()
        try:
            await send(ws, {"type": "subscribe", "jobId": job_id})
            return [m for m in await until_terminal(ws, job_id) if m["type"] != "subscribed"]
        finally:
            ws.close()

    return collect()


def _ref(r: dict) -> tuple[int, int]:
    return r["iteration"], r["candidateId"]


def _assert_iteration_order(events: list[dict], N: int, iterations: int) -> None:
    """The order engine/beam.py emits for a tournament job (docs/websocket.md, "Extension:
    comparison"): ``started``; then per iteration its ``iteration`` "processing", its N
    ``candidate`` events (in the order they finish: every chain ends before the ranking starts),
    then its ``comparison`` events (the ranking, at least one), then its completed ``iteration``
    with the ranked beam; then ``complete``."""
    assert events[0]["type"] == "started" and events[-1]["type"] == "complete"
    k = 1
    for i in range(iterations):
        assert (events[k]["type"], events[k]["iteration"], events[k]["status"]) == ("iteration", i, "processing")
        k += 1
        assert [(e["type"], e["iteration"]) for e in events[k:k + N]] == [("candidate", i)] * N
        k += N
        start = k
        while events[k]["type"] == "comparison":
            assert events[k]["iteration"] == i
            k += 1
        assert k > start, f"iteration {i} asked no comparison"
        assert (events[k]["type"], events[k]["iteration"], events[k]["status"]) == ("iteration", i, "completed")
        k += 1
    assert k == len(events) - 1


@pytest.mark.asyncio
async def test_the_example_client_follows_a_tournament_job(server, tmp_path):
    """The document's client knows no ``comparison`` event: it runs a tournament job (votes=3)
    to its end as written. Beside it, a plain Python client checks the events' order and
    content, and REST and metadata.json the finished job."""
    import json

    N, M, iterations = 4, 2, 3
    body = {"prompt": "a harbour at night", "N": N, "M": M, "iterations": iterations, "seed": 2,
            "providers": "offline", "ranking": "tournament", "votes": 3}
    code, started = await server.json("/api/beam-search", "POST", body)
    assert code == 200
    job_id = started["jobId"]
    url = server.url.replace("http", "ws", 1)
    (log, err), events = await asyncio.gather(run_example(url, job_id, tmp_path), _subscribe_and_collect(server, job_id))
    code, job = await server.json(f"/api/job/{job_id}")
    assert code == 200 and job["status"] == "completed"

    # The example client: to the end, no crash, its output as the document says.
    assert err == ""
    lines = log.splitlines()
    assert lines[0] == "Connected" and lines[-1] == "Disconnected" and "undefined" not in log
    assert [line for line in lines if line.startswith("Iteration ")] == [
        f"Iteration {i}/{iterations}" for i in range(iterations) for _ in ("processing", "completed")]
    assert sum(line.startswith("Candidate ") and ": score " in line for line in lines) == N * iterations
    best = job["result"]["bestCandidate"]
    printed = log[log.index("Best result:"):]
    assert best["combinedPrompt"] in printed and f"imageId: '{best['imageId']}'" in printed
    assert job["result"]["iterations"] == iterations

    # The Python client: the order, and what each event says.
    _assert_iteration_order(events, N, iterations)
    assert events[-1]["result"] == job["result"]
    comparisons = [e for e in events if e["type"] == "comparison"]
    beams = {e["iteration"]: e["beam"] for e in events if e["type"] == "iteration" and e["status"] == "completed"}
    for i in range(iterations):
        assert [b["rank"] for b in beams[i]] == list(range(1, M + 1))
        parents = {_ref(b) for b in beams.get(i - 1, [])}
        children = {_ref(e) for e in events if e["type"] == "candidate" and e["iteration"] == i}
        pool = parents | children
        rank = {_ref(b): b["rank"] for b in beams[i]}
        assert set(rank) <= pool
        for c in (c for c in comparisons if c["iteration"] == i):
            a, b = _ref(c["a"]), _ref(c["b"])
            assert set(c["a"]) == set(c["b"]) == {"iteration", "candidateId"}
            assert a in pool and b in pool and a != b
            assert c["winner"] in ("a", "b") and c["shownFirst"] in ("a", "b") and c["reason"]
            assert len(c["votes"]) == 3 and c["shownFirst"] == c["votes"][0]["shownFirst"]
            said = [v["winner"] for v in c["votes"]]
            assert c.get("fallback") == "score" or said.count(c["winner"]) >= 2
            if a in rank and b in rank:  # two kept: the beam's order follows their verdict
                assert (rank[a] < rank[b]) == (c["winner"] == "a")

    # The session on disk: every verdict, and the beams in rank order.
    meta = json.loads((server.output / "sessions" / job_id / "metadata.json").read_text())
    strip = ("type", "jobId", "timestamp")
    assert meta["comparisons"] == [{k: v for k, v in c.items() if k not in strip} for c in comparisons]
    assert {int(i): [_ref(r) for r in refs] for i, refs in meta["beams"].items()} == {
        i: [_ref(b) for b in beam] for i, beam in beams.items()}
