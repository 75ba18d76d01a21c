"""Session folders read as untrusted (issue 10, items 3 and 4): torn lines, planted files,
crafted JSON. A session that cannot be read is listed as corrupt with its reason; it never
hangs a reader, fills memory, or costs the other sessions their answers."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from engine_helpers import run_job
from PIL import Image
from server_helpers import recv, send

import beamkit
from beamkit import storage
from beamkit.errors import NotFound
from beamkit.providers.simulated import Simulation
from beamkit.server import thumbnails
from beamkit.storage import CorruptSession


async def make_session(output: Path) -> Path:
    job, _ = await run_job(Simulation(), output, N=2, M=1, iterations=1)
    await job  # past its last event, until its store is closed and its owner mark released
    return job.folder


def tear_inside_a_character(folder: Path) -> None:
    """Append a last line cut in the middle of a two-byte UTF-8 character, as a killed writer leaves it."""
    with open(folder / storage.EVENTS_FILE, "ab") as fh:
        fh.write('{"type": "pong", "jobId": "x", "note": "é'.encode()[:-1])


# -- the reader ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_last_line_torn_inside_a_utf8_character_is_skipped(tmp_path):
    folder = await make_session(tmp_path)
    before = storage.read_event_lines(folder)
    tear_inside_a_character(folder)
    assert storage.read_event_lines(folder) == before
    assert storage.load(folder).status == "completed"


@pytest.mark.asyncio
async def test_an_undecodable_middle_line_is_a_corrupt_session(tmp_path):
    folder = await make_session(tmp_path)
    lines = (folder / storage.EVENTS_FILE).read_bytes().split(b"\n")
    lines[1] = b"\xff\xfe garbage"
    (folder / storage.EVENTS_FILE).write_bytes(b"\n".join(lines))
    with pytest.raises(CorruptSession, match="line 2"):
        storage.load(folder)


@pytest.mark.asyncio
@pytest.mark.parametrize("plant", ["fifo", "symlink_to_dev_zero", "too_big"])
async def test_a_planted_events_file_is_refused_without_blocking_or_filling_memory(tmp_path, plant, monkeypatch):
    folder = await make_session(tmp_path)
    path = folder / storage.EVENTS_FILE
    path.unlink()
    if plant == "fifo":
        os.mkfifo(path)
    elif plant == "symlink_to_dev_zero":
        path.symlink_to("/dev/zero")
    else:
        monkeypatch.setattr("beamkit.storage.reading.MAX_EVENTS_BYTES", 100)
        path.write_bytes(b"{}\n" * 100)
    with pytest.raises(CorruptSession):
        await asyncio.wait_for(asyncio.to_thread(storage.load, folder), 10)


@pytest.mark.asyncio
async def test_a_fifo_as_metadata_is_refused(tmp_path):
    folder = await make_session(tmp_path)
    (folder / storage.METADATA_FILE).unlink()
    os.mkfifo(folder / storage.METADATA_FILE)
    with pytest.raises(CorruptSession, match="not a regular file"):
        await asyncio.wait_for(asyncio.to_thread(storage.load, folder), 10)


@pytest.mark.asyncio
@pytest.mark.parametrize("meta", ['{"config": ["x"]}', "[1, 2]", "not json", '{"candidates": 5}'])
async def test_crafted_metadata_is_a_corrupt_session(tmp_path, meta):
    folder = await make_session(tmp_path)
    (folder / storage.METADATA_FILE).write_text(meta)
    with pytest.raises(CorruptSession, match="metadata.json"):
        storage.load(folder)


@pytest.mark.asyncio
async def test_a_malformed_known_event_is_a_corrupt_session(tmp_path):
    folder = await make_session(tmp_path)
    lines = (folder / storage.EVENTS_FILE).read_text().splitlines()
    first = json.loads(lines[0])
    first["timestamp"] = 5
    lines[0] = json.dumps(first)
    (folder / storage.EVENTS_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(CorruptSession, match="timestamp"):
        storage.load(folder)


def test_loading_a_file_or_nothing_is_a_beamkit_not_found(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(NotFound, match="not a folder"):
        beamkit.load(tmp_path / "a-file")
    with pytest.raises(NotFound, match="does not exist"):
        beamkit.load(tmp_path / "nowhere")


# -- pictures --------------------------------------------------------------------------------------


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, "PNG")
    return buf.getvalue()


def test_only_the_canonical_image_id_resolves(tmp_path):
    folder = tmp_path / storage.SESSIONS / "job-a"
    folder.mkdir(parents=True)
    (folder / "iter0-cand0.png").write_bytes(png(4, 4))
    assert storage.resolve_image(tmp_path, "job-a-iter0-cand0.png") is not None
    for other in ("job-a-iter00-cand0.png", "job-a-iter0-cand00.png", "job-a-iter01-cand0.png"):
        assert storage.resolve_image(tmp_path, other) is None


def test_a_hard_link_or_a_file_that_is_no_png_is_not_served(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("root:x:0:0")
    linked = tmp_path / "iter0-cand0.png"
    os.link(outside, linked)
    with pytest.raises(NotFound, match="hard links"):
        thumbnails.read_image(linked, None)
    fake = tmp_path / "iter0-cand1.png"
    fake.write_text("root:x:0:0")
    with pytest.raises(NotFound, match="not a PNG"):
        thumbnails.read_image(fake, None)


def test_a_huge_picture_is_refused_from_its_header_before_decoding(tmp_path):
    path = tmp_path / "iter0-cand0.png"
    path.write_bytes(png(13000, 13000))  # a few hundred KB of zeros, 169 megapixels once decoded
    assert thumbnails.read_image(path, None) == path.read_bytes()  # the file itself is small: served as is
    with pytest.raises(NotFound, match="13000 x 13000"):
        thumbnails.read_image(path, 64)


# -- the server ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_corrupt_sessions_are_listed_with_their_reason_and_the_others_still_answer(server, tmp_path):
    good = await make_session(server.output)
    crafted, torn, junk = [await make_session(server.output) for _ in range(3)]
    (crafted / storage.METADATA_FILE).write_text('{"config": ["x"]}')
    tear_inside_a_character(torn)
    (junk / storage.EVENTS_FILE).write_bytes(os.urandom(4096).replace(b"\n", b"") + b"\n{}")
    (junk / storage.METADATA_FILE).unlink()
    fifo = server.output / storage.SESSIONS / "job-fifo"
    shutil.copytree(good, fifo)
    (fifo / storage.METADATA_FILE).unlink()
    os.mkfifo(fifo / storage.METADATA_FILE)

    code, body = await server.json("/api/jobs")
    assert code == 200
    rows = {r["jobId"]: r for r in body["jobs"]}
    assert rows[good.name]["status"] == "completed" and rows[torn.name]["status"] == "completed"
    for bad in (crafted.name, junk.name, "job-fifo"):
        assert rows[bad]["status"] == "corrupt" and rows[bad]["reason"], rows[bad]
    assert "not a regular file" in rows["job-fifo"]["reason"]

    code, body = await server.json(f"/api/job/{crafted.name}")
    assert code == 200 and body["status"] == "corrupt" and "config" in body["reason"]
    code, body = await server.json(f"/api/job/{torn.name}")
    assert code == 200 and body["status"] == "completed"


@pytest.mark.asyncio
async def test_a_subscriber_to_a_corrupt_session_gets_an_error_and_keeps_its_other_subscriptions(server):
    good = await make_session(server.output)
    bad = await make_session(server.output)
    lines = (bad / storage.EVENTS_FILE).read_bytes().split(b"\n")
    lines[1] = b"\xc3"
    (bad / storage.EVENTS_FILE).write_bytes(b"\n".join(lines))
    ws = await server.ws()
    try:
        await send(ws, {"type": "subscribe", "jobId": bad.name})
        msg = await recv(ws)
        assert msg["type"] == "error" and msg["jobId"] == bad.name and "line 2" in msg["error"]["message"]
        await send(ws, {"type": "subscribe", "jobId": good.name})
        seen = []
        while not seen or seen[-1]["type"] not in ("complete", "error"):
            seen.append(await recv(ws))
        assert seen[-1]["type"] == "complete" and seen[-1]["jobId"] == good.name
    finally:
        ws.close()


@pytest.mark.asyncio
async def test_temporaries_left_by_a_killed_writer_are_removed_on_load_and_fresh_ones_kept(tmp_path):
    folder = await make_session(tmp_path)
    stale, fresh = folder / ".tmp-iter0-cand0.png", folder / ".tmp-metadata.json"
    stale.write_bytes(b"half a picture")
    fresh.write_bytes(b"being written")
    os.utime(stale, (os.path.getmtime(stale) - 120,) * 2)
    storage.load(folder)
    assert not stale.exists() and fresh.exists()


@pytest.mark.asyncio
async def test_every_session_file_is_private_to_its_owner(tmp_path):
    folder = await make_session(tmp_path)
    assert folder.stat().st_mode & 0o777 == 0o700
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path.name
