"""Event order and shapes (websocket-api.md and SPEC section 3), and the session folder (section 6)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from engine_helpers import by_type, run_job, use

import beamkit
from beamkit import events as ev
from beamkit.providers.simulated import Simulation
from beamkit.storage import read_events

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
    assert secret not in "".join(ev.encode(e) for e in job.history)


@pytest.mark.asyncio
async def test_listeners_see_the_final_status_with_the_final_event(tmp_path):
    for sim, final in ((Simulation(), "completed"), (Simulation(fault=lambda op, a: RuntimeError("x")), "error")):
        job = beamkit.start("a cat", N=2, M=1, iterations=2, providers=use(sim), output=tmp_path, seed=1)
        seen = []
        job.add_listener(lambda e, job=job, seen=seen: seen.append((e["type"], job.status)))
        await job.wait() if final == "completed" else await asyncio.gather(job.wait(), return_exceptions=True)
        assert seen[-1][1] == final and seen[-1][0] in ("complete", "error")
        assert all(status == "running" for _, status in seen[:-1])



@pytest.mark.asyncio
async def test_a_listener_finds_the_jobs_state_with_every_event_so_far_applied(tmp_path):
    """The job applies each event to its state before its listeners run."""
    job = beamkit.start("a cat", N=3, M=1, iterations=2, providers=use(Simulation()), output=tmp_path, seed=1)
    seen: list[tuple[int, int]] = []

    def look(e) -> None:
        if e["type"] == "candidate":
            seen.append((sum(1 for h in job.history if h["type"] == "candidate"), job.progress["candidatesProcessed"]))

    job.add_listener(look)
    await job
    assert seen == [(k, k) for k in range(1, 7)]
    assert job.state.progress["candidatesProcessed"] == 6 and job.state.events_applied == len(job.history)

# -- typed events: one encoder, one decoder ------------------------------------------------------

CANDIDATE_KEYS = ["type", "jobId", "iteration", "candidateId", "totalCandidates", "dimension", "parent", "whatPrompt",
                  "howPrompt", "combinedPrompt", "imageId", "imagePath", "status", "score"]


@pytest.mark.asyncio
async def test_wire_shapes_and_key_order(tmp_path):
    calls = iter(range(10**6))
    sim = Simulation(fault=lambda op, a: RuntimeError("boom") if op == "vision" and next(calls) == 2 else None)
    job, events = await run_job(sim, tmp_path, N=3, M=1, iterations=2)
    assert list(events[0]) == ["type", "jobId", "config", "timestamp"]
    its = by_type(events, "iteration")
    assert list(its[0]) == ["type", "jobId", "iteration", "totalIterations", "dimension", "operation", "status", "timestamp"]
    assert list(its[1]) == list(its[0])[:-1] + ["beam", "timestamp"]
    cands = by_type(events, "candidate")
    ok0 = next(e for e in cands if e["status"] == "ok" and e["iteration"] == 0)
    ok1 = next(e for e in cands if e["status"] == "ok" and e["iteration"] == 1)
    failed = next(e for e in cands if e["status"] == "failed")
    assert list(ok0) == CANDIDATE_KEYS + ["analysis", "strengths", "weaknesses", "imageMetadata", "timestamp"]
    assert list(ok1) == CANDIDATE_KEYS + ["analysis", "strengths", "weaknesses", "critique", "imageMetadata", "timestamp"]
    assert list(failed)[:len(CANDIDATE_KEYS) + 1] == CANDIDATE_KEYS + ["error"]
    # a failed candidate has a score of nulls: clients of the protocol document read score.totalScore
    assert failed["score"] == {"totalScore": None, "alignmentScore": None, "aestheticScore": None}
    # the picture was made before vision failed: what the image provider said beside it is kept
    assert failed["imageMetadata"] == {"seed": failed["imageMetadata"]["seed"]}
    assert list(events[-1]) == ["type", "jobId", "result", "timestamp"]


@pytest.mark.asyncio
async def test_extension_fields_strengths_critique_and_image_metadata(tmp_path):
    job, events = await run_job(Simulation(), tmp_path, N=4, M=2, iterations=3)
    meta = {(c["iteration"], c["candidateId"]): c for c in json.loads((job.folder / "metadata.json").read_text())["candidates"]}
    for e in by_type(events, "candidate"):
        parent = e["parent"]
        if e["iteration"] == 0:
            assert "critique" not in e
        else:
            # the critique of the parent that this refinement answered, as the parent keeps it
            key = f"iter{e['iteration']}-{e['dimension']}"
            assert e["critique"] == meta[(parent["iteration"], parent["candidateId"])]["critiques"][key]
            assert e["critique"].startswith(f"critique of ({parent['iteration']}, {parent['candidateId']})")
        assert e["strengths"] == [] and e["weaknesses"] == []  # the simulated vision names none
        assert e["imageMetadata"]["seed"] == meta[(e["iteration"], e["candidateId"])]["imageMetadata"]["seed"]
        assert meta[(e["iteration"], e["candidateId"])]["critique"] == e.get("critique")
    loaded = beamkit.load(job.folder)
    refined = next(c for c in loaded.candidates if c.iteration == 2)
    assert refined.critique and refined.image_metadata.get("seed") is not None


@pytest.mark.asyncio
async def test_decode_is_the_inverse_of_encode(tmp_path):
    job, events = await run_job(Simulation(fail_rate=0.2), tmp_path, N=4, M=2, iterations=2, seed=3)
    lines = (job.folder / "events.jsonl").read_text().splitlines()
    assert lines == [ev.encode(e) for e in job.history]  # the one text, on disk and on the wire
    for line, e in zip(lines, job.history):
        assert ev.encode(e) is ev.encode(e)  # encoded once per event
        back = ev.decode(json.loads(line))
        assert type(back) is type(e) and back == e and ev.encode(back) == line
    assert isinstance(job.history[0], ev.StartedEvent) and isinstance(job.history[-1], ev.TERMINAL_TYPES)
    with pytest.raises(TypeError):
        job.history[0]["jobId"] = "job-other"  # an event is a value


@pytest.mark.parametrize("bad", [
    {"type": "candidate", "jobId": "job-x", "candidateId": 1, "score": {}},
    {"type": "candidate", "jobId": "job-x", "iteration": 0, "candidateId": True, "score": {}},
    {"type": "candidate", "jobId": "job-x", "iteration": 0, "candidateId": 1, "status": "ok"},
    {"type": "candidate", "jobId": "job-x", "iteration": 0, "candidateId": 1, "score": {"totalScore": "high"}},
    {"type": "candidate", "jobId": "job-x", "iteration": 1, "candidateId": 1, "score": {}, "parent": {"iteration": 0}},
    {"type": "iteration", "jobId": "job-x", "iteration": 0, "status": "halfway"},
    {"type": "iteration", "jobId": "job-x", "iteration": 0, "status": "completed", "beam": {"0": 1}},
    {"type": "complete", "jobId": "job-x"},
    {"type": "error", "jobId": "job-x", "error": "boom"},
    {"type": "error", "jobId": "job-x", "error": {"message": "boom"}},
    {"type": "started", "jobId": 7, "config": {}},
])
def test_decode_names_what_is_wrong_with_a_malformed_event(bad):
    with pytest.raises(ValueError, match=f"malformed {bad['type']} event"):
        ev.decode(bad)


def test_decode_keeps_what_it_does_not_know():
    unknown = ev.decode({"type": "judged", "jobId": "job-x", "winner": 2})
    assert isinstance(unknown, ev.UnknownEvent) and unknown == {"type": "judged", "jobId": "job-x", "winner": 2}
    newer = {"type": "error", "jobId": "job-x", "error": {"message": "m", "code": "RATE_LIMIT"}, "retryIn": 5,
             "timestamp": "2025-01-01T00:00:00.000Z"}
    e = ev.decode(newer)
    assert isinstance(e, ev.ErrorEvent) and e.extra == {"retryIn": 5} and ev.encode(e) == json.dumps(newer)
    with pytest.raises(ValueError):
        ev.decode(["not", "an", "object"])


@pytest.mark.parametrize("status", ["ok", "failed"])
def test_a_candidates_event_sets_every_field_and_reads_back_as_it_was(status):
    """``CandidateEvent.of`` maps an ok and a failed candidate onto the event's fields (a failed one has no scores)."""
    import dataclasses

    from beamkit.candidate import Candidate

    c = Candidate(2, 5, "how", what_prompt="w", how_prompt="h", parent=(1, 3), combined_prompt="w | h",
                  image_id="job-x-2-5", image_path="/tmp/p.png", alignment_score=71.5, aesthetic_score=6.25,
                  total_score=69.1, analysis="fine", strengths=["light"], weaknesses=["blur"], critique="more fog",
                  status=status, error=None if status == "ok" else {"message": "no", "code": "PROVIDER_ERROR"},
                  timings={"image": 0.2}, image_metadata={"seed": 9, "model": ("m", 1)})
    made = ev.CandidateEvent.of("job-x", c, 12)
    names = {f.name for f in dataclasses.fields(ev.CandidateEvent)}
    assert names <= set(vars(made)), names - set(vars(made))
    fields = {n: getattr(made, n) for n in names if n != "timestamp"}
    built = ev.CandidateEvent(**fields, timestamp=made.timestamp)
    assert dict(made) == dict(built) and ev.encode(made) == ev.encode(built)
    assert {n: getattr(built, n) for n in names} == {n: getattr(made, n) for n in names}
    assert made.status == status and (made.total_score is None) == (status == "failed")
    assert ev.decode(json.loads(ev.encode(made))) == made
