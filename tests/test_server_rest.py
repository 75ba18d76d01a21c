"""REST API of SPEC section 5 on a real standalone server."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import re
import weakref

import pytest
from PIL import Image
from server_helpers import recv, send, start_server, until_terminal

from beamkit import storage

pytestmark = pytest.mark.asyncio
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SMALL = {"N": 3, "M": 2, "iterations": 2, "seed": 7}


async def run_job(server, **params):
    """Start a job and follow it over a WebSocket to its end; returns (jobId, events)."""
    code, body = await server.json("/api/beam-search", "POST", {"prompt": "a red fox in snow", **SMALL, **params})
    assert code == 200, body
    ws = await server.ws()
    await send(ws, {"type": "subscribe", "jobId": body["jobId"]})
    events = await until_terminal(ws, body["jobId"])
    ws.close()
    return body["jobId"], events[1:]  # without `subscribed`


async def test_health(server):
    code, body = await server.json("/health")
    assert code == 200
    assert body["status"] == "ok" and TS.match(body["timestamp"])


async def test_a_job_runs_and_reports_its_result(server):
    code, body = await server.json("/api/beam-search", "POST", {"prompt": "a red fox in snow", **SMALL})
    assert code == 200
    assert body["status"] == "started" and body["message"] == "Beam search job started"
    assert body["jobId"].startswith("job-")
    ws = await server.ws()
    await send(ws, {"type": "subscribe", "jobId": body["jobId"]})
    events = await until_terminal(ws, body["jobId"])
    assert events[-1]["type"] == "complete"
    code, job = await server.json(f"/api/job/{body['jobId']}")
    assert code == 200
    assert job["status"] == "completed"
    assert job["result"]["bestCandidate"] == events[-1]["result"]["bestCandidate"]
    assert job["result"]["candidatesEvaluated"] == 6
    assert job["progress"] == {"currentIteration": 1, "totalIterations": 2, "candidatesProcessed": 6, "totalCandidates": 6}
    best = job["result"]["bestCandidate"]
    for key in ("whatPrompt", "howPrompt", "combinedPrompt", "imagePath", "imageId", "totalScore", "alignmentScore",
                "aestheticScore", "iteration", "candidateId", "lineage"):
        assert key in best


async def test_a_running_job_reports_progress(server, providers):
    code, body = await server.json("/api/beam-search", "POST", {"prompt": "a fox", **SMALL, "providers": providers.gated})
    await providers.gate.arrived.wait()
    code, job = await server.json(f"/api/job/{body['jobId']}")
    assert code == 200 and job["status"] == "in_progress"
    assert job["progress"] == {"currentIteration": 0, "totalIterations": 2, "candidatesProcessed": 0, "totalCandidates": 6}
    providers.gate.open()
    await server.manager.idle()


BAD_BODIES = [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": None}, "prompt"),
    ({"prompt": "x" * 4001}, "prompt"),
    ({"prompt": "x", "N": True}, "N"),
    ({"prompt": "x", "N": 0}, "N"),
    ({"prompt": "x", "N": 65}, "N"),
    ({"prompt": "x", "N": "9"}, "N"),
    ({"prompt": "x", "N": 2.5}, "N"),
    ({"prompt": "x", "N": 3, "M": 4}, "M"),
    ({"prompt": "x", "M": 0}, "M"),
    ({"prompt": "x", "iterations": 0}, "iterations"),
    ({"prompt": "x", "iterations": 21}, "iterations"),
    ({"prompt": "x", "alpha": 1.5}, "alpha"),
    ({"prompt": "x", "alpha": False}, "alpha"),
    ({"prompt": "x", "temperature": -0.1}, "temperature"),
    ({"prompt": "x", "temperature": "hot"}, "temperature"),
    ({"prompt": "x", "seed": "7"}, "seed"),
    ({"prompt": "x", "seed": True}, "seed"),
    ({"prompt": "x", "providers": "no-such-set"}, "providers"),
    ({"prompt": "x", "providers": 3}, "providers"),
    ({"prompt": "x", "extra": 1}, "extra"),
    ({"prompt": "x", "n": 3}, "n"),
]


@pytest.mark.parametrize("body,field", BAD_BODIES, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_BODIES)])
async def test_bad_parameters_are_400_naming_the_field(server, body, field):
    code, answer = await server.json("/api/beam-search", "POST", body)
    assert code == 400
    assert answer["code"] == "INVALID_REQUEST"
    assert answer["field"] == field
    assert isinstance(answer["error"], str) and answer["error"]
    assert not (server.output / "sessions").exists() or not any((server.output / "sessions").iterdir())


@pytest.mark.parametrize("raw", [b"{not json", b"", b"   ", b"[1, 2]", b'"a prompt"', b"null", b'{"prompt": "x", "alpha": NaN}',
                                 b"\xff\xfe", b'{"prompt": "x"' + b" " * 70_000 + b"}"])
async def test_bad_bodies_are_400(server, raw):
    r = await server.fetch("/api/beam-search", "POST", raw=raw)
    assert r.code == 400
    answer = json.loads(r.body)
    assert answer["code"] == "INVALID_REQUEST" and answer["error"]


@pytest.mark.parametrize("path", ["/api/job/job-doesnotexist", "/api/job/not-a-job-id", "/api/job/job-x%2F..%2F..",
                                  "/api/nothing-here", "/api/job/job-abc/cancel/more", "/favicon.ico"])
async def test_unknown_paths_and_jobs_are_404(server, path):
    code, answer = await server.json(path)
    assert code == 404 and answer["code"] == "NOT_FOUND" and answer["error"]


async def test_404_names_the_job(server):
    code, answer = await server.json("/api/job/job-doesnotexist")
    assert answer["jobId"] == "job-doesnotexist"
    code, answer = await server.json("/api/job/job-doesnotexist/cancel", "POST")
    assert code == 404 and answer["jobId"] == "job-doesnotexist"


async def test_wrong_method_is_an_error_body(server):
    code, answer = await server.json("/api/beam-search")
    assert code == 405 and answer["code"] == "INVALID_REQUEST"


async def test_images_and_thumbnails(server, tmp_path):
    job_id, events = await run_job(server)
    cand = next(e for e in events if e["type"] == "candidate")
    assert cand["imageId"] == f"{job_id}-iter0-cand{cand['candidateId']}.png"
    r = await server.fetch(f"/api/images/{cand['imageId']}")
    assert r.code == 200 and r.headers["Content-Type"] == "image/png"
    full = Image.open(io.BytesIO(r.body))
    assert r.body == (server.output / "sessions" / job_id / f"iter0-cand{cand['candidateId']}.png").read_bytes()
    # a bigger picture, to see the thumbnail shrink it with its aspect kept
    big = server.output / "sessions" / job_id / "iter9-cand9.png"
    Image.new("RGB", (300, 120), (10, 200, 30)).save(big)
    for size in (1, 64, 150, 299, 300, 1000):
        r = await server.fetch(f"/api/images/{job_id}-iter9-cand9.png?size={size}")
        assert r.code == 200 and r.headers["Content-Type"] == "image/png"
        thumb = Image.open(io.BytesIO(r.body))
        assert thumb.format == "PNG"
        assert max(thumb.size) == min(size, 300)
        if size >= 64:
            assert abs(thumb.size[0] / thumb.size[1] - 2.5) < 0.05
    assert full.format == "PNG"


@pytest.mark.parametrize("size", ["0", "-1", "abc", "1.5", "99999", "", "1e3"])
async def test_bad_thumbnail_size_is_400(server, size):
    job_id, events = await run_job(server)
    image_id = next(e["imageId"] for e in events if e["type"] == "candidate")
    code, answer = await server.json(f"/api/images/{image_id}?size={size}")
    assert code == 400 and answer["code"] == "INVALID_REQUEST" and answer["field"] == "size"


async def test_image_ids_never_reach_outside_the_output_folder(server, tmp_path):
    job_id, _ = await run_job(server)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    os.symlink(secret, server.output / "sessions" / job_id / "iter5-cand5.png")
    (server.output / "sessions" / "job-evil").symlink_to(tmp_path)
    for image_id in [
        f"{job_id}-iter5-cand5.png",  # a symlink out of the folder
        "job-evil-iter0-cand0.png",  # a session folder that is a symlink out
        "..%2F..%2Fsecret.png",
        "%2e%2e%2fsecret.png",
        "..%5C..%5Csecret.png",
        f"{job_id}%2F..%2F..%2F..%2Fsecret.png",
        f"{job_id}-iter0-cand0.png%00.txt",
        f"{job_id}-iter0-cand99.png",
        f"{job_id}-iter0-cand0.jpg",
        "metadata.json",
        f"{job_id}-iter0-cand0",
    ]:
        r = await server.fetch(f"/api/images/{image_id}")
        assert r.code == 404, image_id
        assert json.loads(r.body)["code"] == "NOT_FOUND"


async def test_too_many_jobs_is_429_and_frees_up(tmp_path, providers):
    server = await start_server(tmp_path / "out", providers.gated, max_jobs=2)
    try:
        for _ in range(2):
            code, _ = await server.json("/api/beam-search", "POST", {"prompt": "a fox", **SMALL})
            assert code == 200
        code, answer = await server.json("/api/beam-search", "POST", {"prompt": "a fox", **SMALL})
        assert code == 429 and answer["code"] == "RATE_LIMIT" and answer["maxJobs"] == 2
        providers.gate.open()
        await server.manager.idle()
        code, _ = await server.json("/api/beam-search", "POST", {"prompt": "a fox", **SMALL})
        assert code == 200
        await server.manager.idle()
    finally:
        await server.server.stop()


async def test_cancel(server, providers):
    code, body = await server.json("/api/beam-search", "POST", {"prompt": "a fox", **SMALL, "providers": providers.gated})
    job_id = body["jobId"]
    ws = await server.ws()
    await send(ws, {"type": "subscribe", "jobId": job_id})
    await providers.gate.arrived.wait()
    code, answer = await server.json(f"/api/job/{job_id}/cancel", "POST")
    assert code == 200
    assert answer["status"] == "cancelled" and answer["error"]["code"] == "CANCELLED"
    events = await until_terminal(ws, job_id)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "CANCELLED"
    code, again = await server.json(f"/api/job/{job_id}/cancel", "POST")
    assert code == 200 and again["status"] == "cancelled"
    await server.manager.idle()
    code, job = await server.json(f"/api/job/{job_id}")
    assert job["status"] == "cancelled"


async def test_cancelling_a_finished_job_leaves_it_completed(server):
    job_id, _ = await run_job(server)
    code, answer = await server.json(f"/api/job/{job_id}/cancel", "POST")
    assert code == 200 and answer["status"] == "completed"


async def test_list_is_newest_first(server):
    ids = []
    for prompt in ("first", "second", "third"):
        code, body = await server.json("/api/beam-search", "POST", {"prompt": prompt, **SMALL})
        ids.append(body["jobId"])
        await server.manager.idle()
    code, answer = await server.json("/api/jobs")
    assert code == 200
    jobs = answer["jobs"]
    assert [j["jobId"] for j in jobs] == ids[::-1]
    assert [j["prompt"] for j in jobs] == ["third", "second", "first"]
    assert all(j["status"] == "completed" and isinstance(j["bestScore"], float) for j in jobs)


async def test_a_restarted_server_knows_past_jobs(tmp_path, providers):
    first = await start_server(tmp_path / "out", providers.name)
    job_id, events = await run_job(first)
    await first.server.stop()
    second = await start_server(tmp_path / "out", providers.name)
    try:
        code, job = await second.json(f"/api/job/{job_id}")
        assert code == 200 and job["status"] == "completed"
        assert job["result"]["bestCandidate"] == events[-1]["result"]["bestCandidate"]
        r = await second.fetch(f"/api/images/{job['result']['bestCandidate']['imageId']}?size=4")
        assert r.code == 200 and r.headers["Content-Type"] == "image/png"
        code, listing = await second.json("/api/jobs")
        assert [j["jobId"] for j in listing["jobs"]] == [job_id]
        ws = await second.ws()
        await send(ws, {"type": "subscribe", "jobId": job_id})
        assert (await recv(ws))["type"] == "subscribed"
        assert await until_terminal(ws, job_id) == events
    finally:
        await second.server.stop()


async def test_an_interrupted_session_reads_as_an_error(tmp_path, providers):
    first = await start_server(tmp_path / "out", providers.name)
    job_id, events = await run_job(first)
    await first.server.stop()
    # as if the process had died mid-job, mid-line
    folder = tmp_path / "out" / "sessions" / job_id
    lines = (folder / "events.jsonl").read_text().splitlines()
    (folder / "events.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])
    (folder / "metadata.json").unlink()
    server = await start_server(tmp_path / "out", providers.name)
    try:
        code, job = await server.json(f"/api/job/{job_id}")
        assert code == 200 and job["status"] == "error" and job["interrupted"] is True
        assert job["error"]["code"] == "INTERNAL_ERROR"
        replays = []
        for _ in range(2):
            ws = await server.ws()
            await send(ws, {"type": "subscribe", "jobId": job_id})
            await recv(ws)
            replays.append(await until_terminal(ws, job_id))
        assert replays[0] == replays[1]
        assert replays[0][:4] == events[:4]
        assert len(replays[0]) == 5
        assert replays[0][-1]["type"] == "error" and replays[0][-1]["error"]["code"] == "INTERNAL_ERROR"
        code, listing = await server.json("/api/jobs")
        assert listing["jobs"][0]["status"] == "error"
    finally:
        await server.server.stop()


async def test_finished_jobs_are_let_go(server, providers):
    code, body = await server.json("/api/beam-search", "POST", {"prompt": "a fox", **SMALL, "providers": providers.gated})
    job = server.manager.live_job(body["jobId"])
    ref = weakref.ref(job)
    del job
    ws = await server.ws()
    await send(ws, {"type": "subscribe", "jobId": body["jobId"]})
    providers.gate.open()
    live = await until_terminal(ws, body["jobId"])
    await server.manager.idle()
    gc.collect()
    assert ref() is None, gc.get_referrers(ref())
    assert server.manager.live_job(body["jobId"]) is None
    await send(ws, {"type": "subscribe", "jobId": body["jobId"]})  # replayed from disk
    assert (await until_terminal(ws, body["jobId"]))[1:] == live[1:]


async def test_the_api_key_header_reaches_the_providers_and_nothing_else(server, providers, caplog):
    key = "sk-test-DO-NOT-LEAK-4242"
    caplog.set_level(logging.DEBUG)
    r = await server.fetch("/api/beam-search", "POST", {"prompt": "a fox", **SMALL}, headers={"X-OpenAI-API-Key": key})
    assert r.code == 200 and key not in r.body.decode()
    job_id = json.loads(r.body)["jobId"]
    ws = await server.ws()
    await send(ws, {"type": "subscribe", "jobId": job_id})
    events = await until_terminal(ws, job_id)
    assert providers.settings_seen[-1] == {"api_key": key}
    await server.manager.idle()
    seen = [json.dumps(events)]
    for path in (f"/api/job/{job_id}", "/api/jobs"):
        seen.append((await server.fetch(path)).body.decode())
    for file in (server.output / "sessions" / job_id).iterdir():
        seen.append(file.read_bytes().decode("latin-1"))
    seen.append(caplog.text)
    assert not any(key in text for text in seen)


async def test_no_header_means_no_key(server, providers):
    await run_job(server)
    assert providers.settings_seen[-1] == {}


async def test_a_bad_request_makes_no_session_folder(server):
    await server.json("/api/beam-search", "POST", {"prompt": "x", "providers": "nope"})
    assert list(storage.list_sessions(server.output)) == []
