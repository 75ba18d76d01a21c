"""Session storage (SPEC section 6): the only writer of session folders, and what it guarantees.

events.jsonl stays open for the job and each line reaches the file as its event happens;
pictures and metadata.json are written atomically, off the loop; nothing it opens outlives
the job; a write that fails costs what it was writing, and never hangs the job.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from functools import partial
from pathlib import Path

import pytest
from engine_helpers import run_job, use
from PIL import Image

import beamkit
from beamkit import storage
from beamkit.candidate import Candidate
from beamkit.engine.recorder import SearchRecord
from beamkit.errors import ErrorCode
from beamkit.providers.simulated import Simulation
from beamkit.storage.files import Writer, atomic_write
from beamkit.storage.metadata import MetadataRecord


def open_in(folder: Path) -> list[str]:
    """The files under ``folder`` this process holds open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder.resolve())):
            found.append(target)
    return found


@pytest.mark.asyncio
async def test_the_event_log_is_open_for_the_job_each_line_on_disk_at_once_and_nothing_outlives_it(tmp_path):
    seen: list[tuple[int, int, list[str]]] = []
    job = beamkit.start("a fox", N=3, M=1, iterations=2, providers=use(Simulation()), output=tmp_path, seed=1)

    def look(event) -> None:  # runs as each event happens: its line must already be in the file
        on_disk = (job.folder / storage.EVENTS_FILE).read_text(encoding="utf-8").splitlines()
        seen.append((len(job.history), len(on_disk), open_in(job.folder)))

    job.add_listener(look)
    await job
    assert seen and all(count == lines for count, lines, _ in seen)
    # The log, and the owner's lock that tells other processes the job is live (storage/owner.py).
    expected = sorted(str((job.folder / name).resolve()) for name in (storage.EVENTS_FILE, "owner.lock"))
    assert all(sorted(held) == expected for _, _, held in seen[:-1])
    assert open_in(job.folder) == []  # closed when the job ended
    assert not list(job.folder.glob(".tmp-*"))  # every atomic write was completed or cleaned up


@pytest.mark.asyncio
async def test_metadata_json_is_compact_holds_spec_section_6_and_agrees_with_load(tmp_path):
    job, events = await run_job(Simulation(), tmp_path, N=4, M=2, iterations=3)
    text = (job.folder / storage.METADATA_FILE).read_text(encoding="utf-8")
    assert "\n" not in text and ": " not in text.split('"candidates"')[0]  # compact
    meta = json.loads(text)
    assert list(meta) == ["jobId", "status", "config", "candidates", "beams", "best", "lineage", "duration", "usage",
                          "error", "stoppedBy"]
    assert meta["status"] == "completed" and meta["jobId"] == job.id and meta["config"]["N"] == 4
    assert [(c["iteration"], c["candidateId"]) for c in meta["candidates"]] == sorted(
        (c["iteration"], c["candidateId"]) for c in meta["candidates"])
    parents = {(r["iteration"], r["candidateId"]) for i in ("0", "1") for r in meta["beams"][i]}
    for c in meta["candidates"]:
        assert {"whatPrompt", "howPrompt", "combinedPrompt", "parent", "totalScore", "analysis", "critiques",
                "status", "timings"} <= c.keys()
        # a parent's critiques, written after it was reported, are in the file too
        assert bool(c["critiques"]) == ((c["iteration"], c["candidateId"]) in parents)
    assert meta["best"] == events[-1]["result"]["bestCandidate"] and meta["lineage"] == meta["best"]["lineage"]
    loaded = beamkit.load(job.folder)
    assert loaded.to_dict() == events[-1]["result"]
    assert {c.key: c.timings for c in loaded.candidates} == {
        (c["iteration"], c["candidateId"]): c["timings"] for c in meta["candidates"]}


def _candidate(i: int, cid: int, parent: tuple[int, int] | None = None) -> Candidate:
    c = Candidate(i, cid, "what", f"what {i}.{cid}", "how", parent, f"what {i}.{cid} | how",
                  total_score=float(10 * i + cid), alignment_score=1.0, aesthetic_score=1.0)
    c.status = "ok"
    return c


def test_a_checkpoint_re_encodes_only_what_changed_and_reads_the_same_as_a_fresh_one():
    record = SearchRecord("job-abc", {"prompt": "p", "N": 2})
    kept = MetadataRecord()
    record.candidates += [_candidate(0, 0), _candidate(0, 1)]
    record.beams[0] = [(0, 1), (0, 0)]
    first = json.loads(kept.render(record))
    record.candidates[1].critiques["iter1-what"] = "more fog"  # the parent gains a critique
    pending = Candidate(1, 1, "what", parent=(0, 1))  # cut off: never recorded
    record.candidates += [_candidate(1, 0, (0, 1)), pending]
    record.beams[1] = [(1, 0), (0, 1)]
    second = kept.render(record)
    assert json.loads(second) == json.loads(MetadataRecord().render(record))
    meta = json.loads(second)
    assert [(c["iteration"], c["candidateId"]) for c in meta["candidates"]] == [(0, 0), (0, 1), (1, 0)]
    assert meta["candidates"][1]["critiques"] == {"iter1-what": "more fog"}
    assert first["candidates"][1]["critiques"] == {}
    assert meta["best"]["iteration"] == 1 and meta["lineage"] == [{"iteration": 0, "candidateId": 1},
                                                                    {"iteration": 1, "candidateId": 0}]


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metadata.json"
    atomic_write(path, b'{"old": true}')
    with pytest.raises(TypeError):
        atomic_write(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b'{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["metadata.json"]


def test_a_torn_last_line_is_skipped_and_every_complete_line_kept(tmp_path):
    lines = [json.dumps({"type": "started", "jobId": "job-x", "config": {}, "timestamp": "t"}),
             json.dumps({"type": "pong", "jobId": "job-x", "timestamp": "t"})]
    (tmp_path / storage.EVENTS_FILE).write_text("\n".join(lines) + '\n{"type": "candid', encoding="utf-8")
    assert [line for line, _ in storage.read_event_lines(tmp_path)] == lines
    assert [e["type"] for e in storage.read_events(tmp_path)] == ["started", "pong"]


@pytest.mark.asyncio
async def test_the_writer_does_its_work_in_order_and_hands_each_error_to_its_own_future():
    writer = Writer("beamkit test-writer")
    done: list[int] = []

    def boom() -> None:
        raise OSError("disk full")

    futures = [writer.submit(partial(done.append, i)) for i in range(50)]
    failing = writer.submit(boom)
    after = writer.submit(lambda: "still going")
    await asyncio.gather(*futures)
    with pytest.raises(OSError, match="disk full"):
        await failing
    assert await after == "still going" and done == list(range(50))
    writer.close()
    with pytest.raises(RuntimeError):
        writer.submit(lambda: None)


def test_sessions_of_loops_in_two_threads_share_the_workers_and_each_gets_its_own_answers():
    async def session(tag: str) -> list[str]:
        writer = Writer(f"beamkit {tag}")
        got = await asyncio.gather(*(writer.submit(partial(str.__add__, tag, str(i))) for i in range(200)))
        writer.close()
        return list(got)

    results: dict[str, list[str]] = {}
    threads = [threading.Thread(target=lambda t=t: results.update({t: asyncio.run(session(t))})) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {t: [f"{t}{i}" for i in range(200)] for t in "ab"}


@pytest.mark.asyncio
async def test_a_picture_that_cannot_be_written_costs_its_candidate_and_the_job_goes_on(tmp_path):
    sim = Simulation(image_latency=0.02)
    job = beamkit.start("a fox", N=3, M=1, iterations=2, providers=use(sim), output=tmp_path, seed=1)
    # A directory where the picture's temporary file goes: that one write fails (even for root).
    (job.folder / ".tmp-iter0-cand1.png").mkdir()
    events = [e async for e in job.events()]
    await asyncio.wait_for(job.wait(), 20)
    assert events[-1]["type"] == "complete"
    failed = [e for e in events if e["type"] == "candidate" and e["status"] == "failed"]
    assert [(e["iteration"], e["candidateId"]) for e in failed] == [(0, 1)]
    assert "IsADirectoryError" in failed[0]["error"]["message"]
    assert beamkit.load(job.folder).status == "completed"


@pytest.mark.asyncio
async def test_metadata_that_cannot_be_written_ends_the_job_with_an_error_instead_of_hanging(tmp_path):
    job = beamkit.start("a fox", N=2, M=1, iterations=2, providers=use(Simulation()), output=tmp_path, seed=1)
    (job.folder / ".tmp-metadata.json").mkdir()
    events = [e async for e in job.events()]
    with pytest.raises(beamkit.BeamkitError) as info:
        await asyncio.wait_for(job.wait(), 20)
    assert info.value.code == ErrorCode.INTERNAL_ERROR and events[-1]["type"] == "error"
    assert storage.read_events(job.folder) == [dict(e) for e in events]  # the log is whole all the same
    assert open_in(job.folder) == []


# A job in its own process, held in iteration 1 (its critiques never answer), then killed.
KILLED = textwrap.dedent("""
    import asyncio, sys
    import beamkit
    from beamkit.providers import register
    from beamkit.providers.simulated import Simulation

    sim = Simulation(block=lambda op, args: op == "critique")
    register("held", sim.provider)

    async def main():
        job = beamkit.start("a fox", N=3, M=1, iterations=3, providers="held", output=sys.argv[1], seed=1)
        async for e in job.events():
            if e["type"] == "iteration" and e["iteration"] == 1:
                print(job.id, len(job.history), flush=True)
        await job

    asyncio.run(main())
""")


def test_a_killed_process_keeps_every_line_it_had_written(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        job_id, count = proc.stdout.readline().split()
        folder = tmp_path / "sessions" / job_id
        before = storage.read_event_lines(folder)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert len(before) == int(count)  # each line was on disk as soon as its event happened
    after = storage.read_event_lines(folder)
    assert after == before
    loaded = beamkit.load(folder)
    assert loaded.status == "interrupted" and len(loaded.candidates) == 3
    for c in loaded.candidates:
        assert c.image_path is not None
        with Image.open(c.image_path) as img:
            img.verify()
