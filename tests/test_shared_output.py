"""Two real ``beamkit serve`` processes on one output folder: each sees the other's running job as
running, follows it from disk, can cancel it, and reads it as interrupted once its process dies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from beamkit import storage
from beamkit.storage.owner import CANCEL_FILE, OWNER_FILE, OWNER_LOCK, Ownership, owner_of, request_cancel

#: a job far longer than any test here lets it run
LONG_JOB = {"prompt": "a lighthouse in fog", "N": 64, "M": 4, "iterations": 20}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Serve:
    """One ``beamkit serve`` process."""

    def __init__(self, output: Path) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "beamkit", "serve", "--port", str(self.port), "--output", str(output)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        assert "beamkit serving" in self.proc.stdout.readline()

    async def json(self, path: str, body: Any = None) -> tuple[int, Any]:
        req = HTTPRequest(f"http://127.0.0.1:{self.port}{path}", method="GET" if body is None else "POST",
                          body=None if body is None else json.dumps(body), request_timeout=30)
        try:
            r = await AsyncHTTPClient().fetch(req)
        except HTTPClientError as exc:
            assert exc.response is not None
            r = exc.response
        return r.code, json.loads(r.body)

    async def ws(self) -> WebSocketClientConnection:
        return await websocket_connect(f"ws://127.0.0.1:{self.port}/ws")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


@pytest_asyncio.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Callable[[], Serve]]:
    started: list[Serve] = []

    def start() -> Serve:
        started.append(Serve(tmp_path / "out"))
        return started[-1]

    try:
        yield start
    finally:
        for s in started:
            s.stop()


async def _running_job(a: Serve) -> str:
    """A long job started on ``a``, once it has reported a candidate."""
    code, body = await a.json("/api/beam-search", LONG_JOB)
    assert code == 200, body
    job_id: str = body["jobId"]
    while (await a.json(f"/api/job/{job_id}"))[1]["progress"]["candidatesProcessed"] < 1:
        await asyncio.sleep(0.1)  # polling a real server's progress, not waiting out a race
    return job_id


async def _read(ws: WebSocketClientConnection, timeout: float) -> str | bytes | None:
    async def one() -> str | bytes | None:
        return await ws.read_message()

    return await asyncio.wait_for(one(), timeout)


async def _subscribe(server: Serve, job_id: str) -> WebSocketClientConnection:
    ws = await server.ws()
    await ws.write_message(json.dumps({"type": "subscribe", "jobId": job_id}))
    first = json.loads(await _read(ws, 30) or 'null')
    assert (first["type"], first["jobId"]) == ("subscribed", job_id)
    return ws


async def _until_terminal(ws: WebSocketClientConnection) -> list[str]:
    lines: list[str] = []
    while True:
        text = await _read(ws, 60)
        assert isinstance(text, str), "the socket closed before the job's end"
        lines.append(text)
        if json.loads(text)["type"] in ("complete", "error"):
            return lines


def _log(folder: Path) -> list[str]:
    return [line for line, _ in storage.read_event_lines(folder)]


def test_the_owner_mark_is_live_exactly_while_held_and_a_planted_one_never_hangs(tmp_path: Path) -> None:
    mine, other = Ownership(tmp_path), Ownership(tmp_path)
    assert owner_of(tmp_path) is None
    mine.take()
    info = owner_of(tmp_path)
    assert info is not None and info["pid"] == os.getpid() and info["host"] and info["since"]
    with pytest.raises(BlockingIOError):
        other.take()  # one owner at a time, even within one process
    assert not mine.cancel_requested()
    request_cancel(tmp_path)
    assert mine.cancel_requested()
    mine.release()
    assert owner_of(tmp_path) is None and sorted(p.name for p in tmp_path.iterdir()) == []
    os.mkfifo(tmp_path / OWNER_LOCK)  # planted: no regular file, no owner, and no wait for a writer
    assert owner_of(tmp_path) is None


@pytest.mark.slow
@pytest.mark.asyncio
async def test_the_other_server_reports_follows_and_really_cancels_a_running_job(servers: Callable[[], Serve], tmp_path: Path) -> None:
    a, b = servers(), servers()
    job_id = await _running_job(a)
    folder = tmp_path / "out" / "sessions" / job_id
    owner = owner_of(folder)
    assert owner is not None and owner["pid"] == a.proc.pid

    code, status = await b.json(f"/api/job/{job_id}")
    assert code == 200 and status["status"] == "in_progress" and "interrupted" not in status and "error" not in status
    row = next(r for r in (await b.json("/api/jobs"))[1]["jobs"] if r["jobId"] == job_id)
    assert row["status"] == "in_progress" and "interrupted" not in row

    on_disk_before = len(_log(folder))
    ws = await _subscribe(b, job_id)
    code, answer = await b.json(f"/api/job/{job_id}/cancel", {})
    # The answer comes once the owner has really stopped: it is the outcome, not a hope.
    assert code == 200 and answer["status"] == "cancelled" and answer["error"]["code"] == "CANCELLED", answer
    received = await _until_terminal(ws)
    ws.close()

    log = _log(folder)
    assert received == log, "B's subscriber gets exactly what A wrote, in order"
    assert len(log) > on_disk_before, "events written after the subscribe reached it live"
    end = json.loads(log[-1])
    assert end["type"] == "error" and end["error"]["code"] == "CANCELLED" and "interrupted" not in end
    assert (await a.json(f"/api/job/{job_id}"))[1]["status"] == "cancelled"
    after = (await b.json(f"/api/job/{job_id}"))[1]
    assert after["status"] == "cancelled"
    assert after["progress"]["candidatesProcessed"] < after["progress"]["totalCandidates"], "the job was cut short"
    assert not any((folder / name).exists() for name in (OWNER_LOCK, OWNER_FILE, CANCEL_FILE)), "the owner's mark is gone"
    assert owner_of(folder) is None


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_killed_owners_job_reads_interrupted_from_the_other_server(servers: Callable[[], Serve], tmp_path: Path) -> None:
    a, b = servers(), servers()
    job_id = await _running_job(a)
    folder = tmp_path / "out" / "sessions" / job_id
    ws = await _subscribe(b, job_id)
    a.proc.kill()
    a.proc.wait(60)

    received = await _until_terminal(ws)
    ws.close()
    end = json.loads(received[-1])
    assert end["type"] == "error" and end.get("interrupted") is True and end["error"]["code"] == "INTERNAL_ERROR"
    assert received[:-1] == _log(folder), "every line A wrote before it died, then the end its death means"
    code, status = await b.json(f"/api/job/{job_id}")
    assert code == 200 and status["status"] == "error" and status["interrupted"] is True
    row = next(r for r in (await b.json("/api/jobs"))[1]["jobs"] if r["jobId"] == job_id)
    assert row.get("interrupted") is True
    code, answer = await b.json(f"/api/job/{job_id}/cancel", {})
    assert code == 200 and answer["status"] == "error" and answer["interrupted"] is True, "nothing left to cancel"
