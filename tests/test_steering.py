"""Steering (steer=True): the job waits after each iteration but the last for a person's review."""

from __future__ import annotations

import asyncio
import json

import pytest
from server_helpers import recv, send, until_terminal

import beamkit
from beamkit.errors import InvalidRequest, JobCancelled
from beamkit.state import SessionState

pytestmark = pytest.mark.asyncio
STEERED = {"N": 3, "M": 2, "iterations": 3, "seed": 11, "steer": True}


async def next_review(job):
    async for e in job.events(len(job.history)):
        if e["type"] == "iteration" and e["status"] == "review":
            return e
    raise AssertionError("the job ended without a review")


async def test_a_person_picks_a_beam_then_stops(tmp_path):
    job = beamkit.start("a red fox in snow", providers="offline", output=tmp_path, **STEERED)
    review = await next_review(job)
    assert review["iteration"] == 0 and job.reviewing and job.state.rest_status == "reviewing"
    proposed = [(b["iteration"], b["candidateId"]) for b in review["beam"]]
    assert job.state.proposed == proposed
    pool = job.pool
    assert set(proposed) <= set(pool) and len(pool) == 3
    worst = next(r for r in reversed(pool) if r not in proposed)  # a candidate the model left out
    with pytest.raises(InvalidRequest, match="7-7"):
        job.keep(["7-7"])
    with pytest.raises(InvalidRequest, match="beam width"):
        job.keep(pool)  # 3 > M
    with pytest.raises(InvalidRequest):
        job.keep([])
    job.keep([worst])
    second = await next_review(job)
    completed_0 = next(e for e in job.history if e["type"] == "iteration" and e["iteration"] == 0
                       and e["status"] == "completed")
    assert [(b["iteration"], b["candidateId"]) for b in completed_0["beam"]] == [worst]
    assert second["iteration"] == 1
    assert all(c.parent == worst for c in job.state.candidates.values() if c.iteration == 1)
    job.keep(None)  # stop: completed with the current beam
    result = await job
    assert result.status == "completed" and result.stopped_by == "person"
    assert result.iterations_done == 2 and not job.reviewing
    meta = json.loads((job.folder / "metadata.json").read_text())
    assert meta["chosenBy"] == {"0": "person", "1": "model"}
    assert beamkit.load(job.folder).stopped_by == "person"
    with pytest.raises(InvalidRequest, match="not waiting"):
        job.keep(None)


async def test_keeping_the_proposal_is_the_models_choice(tmp_path):
    job = beamkit.start("a red fox in snow", providers="offline", output=tmp_path, **{**STEERED, "iterations": 2})
    review = await next_review(job)
    job.keep([f"{b['iteration']}-{b['candidateId']}" for b in review["beam"]])
    result = await job
    assert result.iterations_done == 2 and result.stopped_by is None
    assert json.loads((job.folder / "metadata.json").read_text())["chosenBy"] == {"0": "model", "1": "model"}


async def test_cancel_while_waiting(tmp_path):
    job = beamkit.start("a red fox in snow", providers="offline", output=tmp_path, **STEERED)
    await next_review(job)
    assert job.cancel()
    with pytest.raises(JobCancelled):
        await job
    assert job.status == "cancelled" and not job.reviewing
    assert beamkit.load(job.folder).status == "cancelled"


async def test_a_reader_that_replays_a_steered_log_sees_the_review():
    state = SessionState("job-x")
    state.apply({"type": "started", "jobId": "job-x", "config": {"iterations": 2}, "timestamp": "t"})
    state.apply({"type": "iteration", "jobId": "job-x", "iteration": 0, "totalIterations": 2, "dimension": "what",
                 "status": "review", "beam": [{"iteration": 0, "candidateId": 1, "totalScore": 50.0}], "timestamp": "t"})
    assert state.rest_status == "reviewing" and state.proposed == [(0, 1)]
    state.apply({"type": "iteration", "jobId": "job-x", "iteration": 0, "totalIterations": 2, "dimension": "what",
                 "status": "completed", "beam": [{"iteration": 0, "candidateId": 2, "totalScore": 40.0}], "timestamp": "t"})
    assert state.rest_status == "in_progress" and state.beams[0] == [(0, 2)]


# -- REST --------------------------------------------------------------------------------------


async def until_review(ws, job_id):
    while True:
        msg = await recv(ws)
        if msg.get("jobId") == job_id and msg["type"] == "iteration" and msg["status"] == "review":
            return msg
        assert msg["type"] not in ("complete", "error"), msg


async def test_steering_over_rest(server):
    code, body = await server.json("/api/beam-search", "POST", {"prompt": "a red fox in snow", **STEERED})
    assert code == 200
    job_id = body["jobId"]
    ws = await server.ws()
    await send(ws, {"type": "subscribe", "jobId": job_id})
    review = await until_review(ws, job_id)
    code, status = await server.json(f"/api/job/{job_id}")
    assert code == 200 and status["status"] == "reviewing"
    code, bad = await server.json(f"/api/job/{job_id}/review", "POST", {"keep": ["0-9"]})
    assert code == 400 and bad["code"] == "INVALID_REQUEST" and "0-9" in bad["error"] and bad["field"] == "keep"
    code, bad = await server.json(f"/api/job/{job_id}/review", "POST", {"neither": 1})
    assert code == 400
    pick = review["beam"][-1]
    code, after = await server.json(f"/api/job/{job_id}/review", "POST", {"keep": [pick]})
    assert code == 200 and after["status"] == "in_progress"
    await until_review(ws, job_id)
    code, after = await server.json(f"/api/job/{job_id}/review", "POST", {"stop": True})
    assert code == 200
    events = await until_terminal(ws, job_id)
    assert events[-1]["type"] == "complete" and events[-1]["result"]["stoppedBy"] == "person"
    code, done = await server.json(f"/api/job/{job_id}/review", "POST", {"stop": True})
    assert code == 400 and "not waiting" in done["error"]
    code, missing = await server.json("/api/job/job-nope/review", "POST", {"stop": True})
    assert code == 404
    ws.close()


async def test_cancel_over_rest_while_waiting(server):
    code, body = await server.json("/api/beam-search", "POST", {"prompt": "a red fox in snow", **STEERED})
    job_id = body["jobId"]
    ws = await server.ws()
    await send(ws, {"type": "subscribe", "jobId": job_id})
    await until_review(ws, job_id)
    code, status = await server.json(f"/api/job/{job_id}/cancel", "POST")
    assert code == 200 and status["status"] == "cancelled"
    events = await until_terminal(ws, job_id)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "CANCELLED"
    ws.close()


async def test_a_tournament_job_refines_the_persons_pick(tmp_path):
    # The judge compares pictures it keeps in memory: a pick the judge dropped must still have its picture.
    job = beamkit.start("a red fox in snow", providers="offline", output=tmp_path, ranking="tournament",
                        **{**STEERED, "iterations": 2})
    review = await next_review(job)
    proposed = [(b["iteration"], b["candidateId"]) for b in review["beam"]]
    left_out = next(r for r in job.pool if r not in proposed)
    job.keep([left_out])
    result = await job
    assert result.status == "completed"
    assert all(c.parent == left_out for c in result.candidates if c.iteration == 1)
    assert result.beams[0] == [left_out]
    assert all(c.ok for c in result.candidates)


async def test_the_cli_asks_on_stdin(tmp_path):
    import subprocess
    import sys

    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "beamkit", "run", "a fox", "--providers", "offline", "--N", "3", "--M", "2",
         "--iterations", "3", "--seed", "3", "--steer", "--quiet", "--json", "--output", str(tmp_path)],
        input="\nbogus\nstop\n", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("review of iteration") == 2 and "'keep' must name a candidate" in proc.stderr
    assert json.loads(proc.stdout)["stoppedBy"] == "person"


# -- the widget: review controls and compare mode (the messages its buttons and keys send) ----------


async def test_the_widget_reviews_and_rates(tmp_path):
    from beamkit.widget.widget import for_job, for_result

    job = beamkit.start("a red fox in snow", providers="offline", output=tmp_path, **{**STEERED, "iterations": 2})
    w = for_job(job)
    review = await next_review(job)
    panel = w.person["review"]
    assert panel["iteration"] == 0 and panel["M"] == 2
    assert panel["proposed"] == [f"{b['iteration']}-{b['candidateId']}" for b in review["beam"]]
    assert len(panel["pool"]) == 3
    w._on_msg(w, {"type": "keep", "keys": ["0-9"]}, [])  # a bad pick: said under the controls, the job still waits
    assert "0-9" in w.person["message"] and job.reviewing
    w._on_msg(w, {"type": "keep", "keys": panel["proposed"]}, [])  # "Keep proposed"
    result = await job
    assert w.person["review"] is None and result.iterations_done == 2

    view = for_result(beamkit.load(job.folder))
    view._on_msg(view, {"type": "compare", "on": True}, [])
    first = view.person["compare"]
    view._on_msg(view, {"type": "rate", **first, "winner": "b"}, [])  # "right is better" (→ or 2)
    second = view.person["compare"]
    assert second != first and view.person["ratings"] == 1
    view._on_msg(view, {"type": "rate", **second, "winner": "skip"}, [])  # S: nothing recorded
    assert view.person["ratings"] == 1 and view.person["compare"] not in (first, second)
    assert view.person["agreement"]["rated"] == 2
    assert len(beamkit.load(job.folder).ratings) == 1
