"""Event order and shapes (websocket-api.md and SPEC section 3), and the session folder (section 6)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

import beamkit
from beamkit.providers.simulated import Simulation
from beamkit.storage import read_events

from engine_helpers import by_type, run_job, use

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.mark.asyncio
async def test_event_order(tmp_path):
    N, iterations = 5, 3
    job, events = await run_job(Simulation(), tmp_path, N=N, M=2, iterations=iterations)
    kinds = [e["type"] for e in events]
    expected = ["started"]
    for _ in range(iterations):
        expected += ["iteration"] + ["candidate"] * N + ["iteration"]
    assert kinds == expected + ["complete"]
    its = by_type(events, "iteration")
    assert [(e["iteration"], e["status"]) for e in its] == [
        (i, s) for i in range(iterations) for s in ("processing", "completed")
    ]
    for e in events:
        assert e["jobId"] == job.id and TIMESTAMP.match(e["timestamp"]), e


@pytest.mark.asyncio
async def test_event_shapes(tmp_path):
    job, events = await run_job(Simulation(), tmp_path, N=4, M=2, iterations=2, alpha=0.5)
    started = events[0]
    assert {"prompt", "N", "M", "iterations", "alpha", "temperature", "seed", "providers"} <= started["config"].keys()
    assert started["config"]["N"] == 4 and started["config"]["prompt"] == "a forest at dawn"
    it = by_type(events, "iteration")[0]
    assert {"iteration", "totalIterations", "dimension", "status", "operation"} <= it.keys()
    assert it["totalIterations"] == 2 and it["operation"] == "expand" and it["dimension"] == "what"
    done = by_type(events, "iteration")[1]
    assert len(done["beam"]) == 2 and set(done["beam"][0]) == {"iteration", "candidateId", "totalScore"}
    assert done["beam"][0]["totalScore"] >= done["beam"][1]["totalScore"]
    for c in by_type(events, "candidate"):
        assert c["totalCandidates"] == 8
        assert {"whatPrompt", "howPrompt", "combinedPrompt", "imageId", "imagePath", "dimension", "parent"} <= c.keys()
        s = c["score"]
        assert s["totalScore"] == pytest.approx(0.5 * s["alignmentScore"] + 0.5 * s["aestheticScore"] * 10, abs=1e-3)
        assert c["imageId"] == f"{job.id}-iter{c['iteration']}-cand{c['candidateId']}.png"
        assert (c["parent"] is None) == (c["iteration"] == 0)
    result = events[-1]["result"]
    best = result["bestCandidate"]
    assert {"whatPrompt", "howPrompt", "combinedPrompt", "imagePath", "imageId", "totalScore", "alignmentScore",
            "aestheticScore", "iteration", "candidateId", "lineage"} <= best.keys()
    assert result["iterations"] == 2 and result["candidatesEvaluated"] == 8 and isinstance(result["duration"], int)
    assert best["lineage"][-1] == {"iteration": best["iteration"], "candidateId": best["candidateId"]}
    assert best["lineage"][0]["iteration"] == 0
    assert result == (await job).to_dict()


@pytest.mark.asyncio
async def test_session_folder_round_trip(tmp_path):
    job, events = await run_job(Simulation(), tmp_path, N=4, M=2, iterations=3)
    folder = tmp_path / "sessions" / job.id
    assert folder == job.folder
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(f"iter{i}-cand{c}.png" for i in range(3) for c in range(4))
    assert read_events(folder) == events == job.history
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["status"] == "completed" and meta["config"]["seed"] == 7
    assert len(meta["candidates"]) == 12 and set(meta["beams"]) == {"0", "1", "2"}
    assert any(c["critiques"] for c in meta["candidates"])
    assert all(c["timings"].get("image") is not None for c in meta["candidates"])
    loaded = beamkit.load(folder)
    assert loaded.to_dict() == events[-1]["result"]
    assert loaded.status == "completed" and loaded.best.key == job.result.best.key


@pytest.mark.asyncio
async def test_load_of_an_interrupted_session_reads_what_its_events_recorded(tmp_path):
    job, events = await run_job(Simulation(), tmp_path, N=3, M=1, iterations=3)
    folder = job.folder
    # Cut the session as a killed process would leave it: metadata from iteration 0, a torn last line.
    lines = (folder / "events.jsonl").read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"iteration": 1, ' in line and '"processing"' in line) + 3
    (folder / "events.jsonl").write_text("".join(lines[:cut]) + '{"type": "candi')
    meta = json.loads((folder / "metadata.json").read_text())
    meta.update(status="running", candidates=[c for c in meta["candidates"] if c["iteration"] == 0], beams={"0": meta["beams"]["0"]})
    (folder / "metadata.json").write_text(json.dumps(meta))
    loaded = beamkit.load(folder)
    assert loaded.status == "interrupted"
    # candidates finish in any order: the two of iteration 1 are those whose lines were kept
    kept = [json.loads(line) for line in lines[:cut]]
    done_in_1 = sorted((e["iteration"], e["candidateId"]) for e in kept if e["type"] == "candidate" and e["iteration"] == 1)
    assert len(done_in_1) == 2
    assert [c.key for c in loaded.candidates] == [(0, 0), (0, 1), (0, 2), *done_in_1]
    assert loaded.best is not None and loaded.iterations_done == 1


def test_load_of_a_folder_that_is_not_a_session(tmp_path):
    with pytest.raises(beamkit.NotFound):
        beamkit.load(tmp_path)


@pytest.mark.asyncio
async def test_provider_settings_are_never_written(tmp_path):
    secret = "sk-test-0123456789abcdef"
    sim = Simulation()
    job = beamkit.start("a cat", N=2, M=1, iterations=2, providers=use(sim), output=tmp_path, provider_settings={"api_key": secret})
    await job
    for path in job.folder.iterdir():
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in json.dumps(job.history)


@pytest.mark.asyncio
async def test_listeners_see_the_final_status_with_the_final_event(tmp_path):
    for sim, final in ((Simulation(), "completed"), (Simulation(fault=lambda op, a: RuntimeError("x")), "error")):
        job = beamkit.start("a cat", N=2, M=1, iterations=2, providers=use(sim), output=tmp_path, seed=1)
        seen = []
        job.add_listener(lambda e, job=job: seen.append((e["type"], job.status)))
        await job.wait() if final == "completed" else await asyncio.gather(job.wait(), return_exceptions=True)
        assert seen[-1][1] == final and seen[-1][0] in ("complete", "error")
        assert all(status == "running" for _, status in seen[:-1])
