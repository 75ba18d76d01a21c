"""A session folder that stops taking writes mid-job (issue 10, item 2): the job ends with an
``error`` event (INTERNAL_ERROR, naming the folder and the OS error) that every consumer and
``await job`` get, logged once; nothing waits forever. The faults are real ones, made in a
subprocess: the file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) reached by events.jsonl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import beamkit
from beamkit.errors import InternalError, InvalidRequest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import asyncio, json, logging, os, resource, signal, sys
    sys.path.insert(0, {tests!r})
    import beamkit
    from engine_helpers import use
    from beamkit.providers.simulated import Simulation

    records = []
    class Keep(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.ERROR:
                records.append(record.getMessage())
    logging.getLogger("beamkit").addHandler(Keep())

    async def main():
        job = beamkit.start("a fox", N=3, M=1, iterations=2, providers=use(Simulation(image_latency=0.01)),
                            output={output!r}, seed=1)
        seen = []
        job.add_listener(lambda e: seen.append(e.type))
        size = os.path.getsize(job.folder / "events.jsonl")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        watched = [e.type async for e in job.events()]
        try:
            await asyncio.wait_for(job.wait(), 20)
            outcome = None
        except beamkit.BeamkitError as exc:
            outcome = {{"code": str(exc.code), "message": exc.message, "cls": type(exc).__name__}}
        print(json.dumps({{"seen": seen, "watched": watched, "outcome": outcome, "error": job.error,
                          "status": str(job.status), "logged": records, "folder": str(job.folder)}}))

    asyncio.run(main())
""")


def run_script(output: Path) -> dict:
    code = SCRIPT.format(tests=str(ROOT / "tests"), output=str(output))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_log_that_cannot_grow_ends_the_job_with_an_error_every_consumer_gets(tmp_path):
    got = run_script(tmp_path)
    assert got["seen"][-1] == "error" and got["watched"][-1] == "error"
    assert got["status"] == "error" and got["error"]["code"] == "INTERNAL_ERROR"
    assert got["folder"] in got["error"]["message"] and "too large" in got["error"]["message"].lower()
    assert got["outcome"]["code"] == "INTERNAL_ERROR" and got["outcome"]["message"] == got["error"]["message"]
    assert len(got["logged"]) == 1, got["logged"]


def test_reusing_a_job_id_is_a_clear_error(tmp_path):
    async def main() -> None:
        from engine_helpers import use

        from beamkit.providers.simulated import Simulation

        first = beamkit.start("a fox", N=2, M=1, iterations=1, providers=use(Simulation()), output=tmp_path,
                              seed=1, job_id="job-same")
        await first
        with pytest.raises(InvalidRequest, match="already used"):
            beamkit.start("a fox", N=2, M=1, iterations=1, providers=use(Simulation()), output=tmp_path,
                          seed=1, job_id="job-same")

    import asyncio

    asyncio.run(main())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_output_folder_is_named_in_the_error(tmp_path):
    import asyncio

    from engine_helpers import use

    from beamkit.providers.simulated import Simulation

    tmp_path.chmod(0o500)

    async def main() -> None:
        with pytest.raises(InternalError, match=str(tmp_path)):
            beamkit.start("a fox", providers=use(Simulation()), output=tmp_path / "out", seed=1)

    try:
        asyncio.run(main())
    finally:
        tmp_path.chmod(0o700)
