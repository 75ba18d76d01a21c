"""A server that is stopped records its running jobs as interrupted, not cancelled; an output
folder that cannot be written is one clear line, not a traceback or a bare 500."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import beamkit
from beamkit import storage
from beamkit.events import JobStatus


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> dict:
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read())


@pytest.mark.slow
def test_sigterm_mid_job_records_interrupted_not_cancelled(tmp_path: Path) -> None:
    port, out = _free_port(), tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "beamkit", "serve", "--port", str(port), "--output", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "beamkit serving" in proc.stdout.readline()
        body = json.dumps({"prompt": "a forest at dawn", "N": 64, "M": 4, "iterations": 20}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/beam-search", data=body,
                                     headers={"Content-Type": "application/json"})
        job_id = json.loads(urllib.request.urlopen(req, timeout=10).read())["jobId"]
        deadline = time.monotonic() + 60
        while _get(port, f"/api/job/{job_id}")["progress"]["candidatesProcessed"] < 1:
            assert time.monotonic() < deadline, "the job never produced a candidate"
            time.sleep(0.1)  # polling a real server's progress, not waiting out a race
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0
    result = beamkit.load(out / "sessions" / job_id)
    assert result.status == JobStatus.INTERRUPTED
    last = storage.read_events(out / "sessions" / job_id)[-1]
    assert last["type"] == "error" and last.get("interrupted") is True
    assert last["error"]["code"] == "INTERNAL_ERROR" and "interrupted" in last["error"]["message"]


def test_serve_refuses_an_unwritable_output_folder_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = subprocess.run([sys.executable, "-m", "beamkit", "serve", "--port", str(_free_port()), "--output", str(blocker / "out")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(blocker / "out") in lines[0] and "Not a directory" in lines[0], out.stderr


def test_the_cli_names_an_unwritable_output_folder_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = subprocess.run([sys.executable, "-m", "beamkit", "run", "a fox", "--N", "2", "--M", "1", "--iterations", "1",
                          "--output", str(blocker / "out")], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(blocker / "out") in lines[0] and "Traceback" not in out.stderr, out.stderr


def _limit_descriptors() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))


@pytest.mark.slow
def test_out_of_descriptors_the_server_backs_off_logs_once_and_recovers(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "beamkit", "serve", "--port", str(port), "--output", str(tmp_path / "o")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_limit_descriptors)
    held: list[socket.socket] = []
    try:
        assert "beamkit serving" in proc.stdout.readline()
        # more connections than the server has descriptors for: the kernel queues them, accept() gets EMFILE
        for _ in range(80):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        time.sleep(1.0)  # let the server meet the shortage for a while: a spinning accept loop would log thousands of lines
        for s in held:
            s.close()
        held.clear()
        deadline = time.monotonic() + 30
        while True:
            try:
                assert _get(port, "/health")["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() < deadline, "the server never accepted again"
                time.sleep(0.1)
    finally:
        for s in held:
            s.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    err = proc.stderr.read()
    assert err.count("out of file descriptors") == 1, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
