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
