"""The CLI as a user runs it: a real subprocess, exit codes and one-line messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import beamkit


def beamkit_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "beamkit", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["run", ""], "'prompt' must not be empty"),
        (["run", "a fox", "--N", "0"], "'N' must be between 1 and 64"),
        (["run", "a fox", "--N", "3", "--M", "5"], "'M' must be at most N"),
        (["run", "a fox", "--alpha", "1.5"], "'alpha' must be between 0 and 1"),
        (["run", "a fox", "--N", "nine"], "--N takes an integer, not 'nine'"),
        (["run", "a fox", "--alpha", "high"], "--alpha takes a number, not 'high'"),
        (["run", "a fox", "--providers", "nope"], "unknown provider 'nope'"),
        (["run", "a fox", "--bogus"], "unrecognized arguments: --bogus"),
        (["run"], "the following arguments are required: prompt"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(tmp_path, args, needle):
    proc = beamkit_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "output").exists()


def test_run_prints_the_best_candidate_and_where_the_session_went(tmp_path):
    proc = beamkit_cli("run", "a forest at dawn", "--N", "4", "--M", "2", "--iterations", "2", "--seed", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "cand/s" in proc.stderr or "cand" in proc.stderr  # the progress bar
    lines = dict(line.split(None, 1) for line in proc.stdout.splitlines() if line.strip() and not line.startswith("best"))
    folder = tmp_path / lines["session"].strip()
    result = beamkit.load(folder)
    assert result.status == "completed"
    assert lines["prompt"].strip() == result.best.combined_prompt


def test_run_json_is_the_result(tmp_path):
    proc = beamkit_cli("run", "a red boat", "--N", "3", "--M", "1", "--iterations", "2", "--seed", "5", "--json", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    sessions = list((tmp_path / "output" / "sessions").iterdir())
    assert len(sessions) == 1
    assert data == beamkit.load(sessions[0]).to_dict()
    assert data["iterations"] == 2 and data["candidatesEvaluated"] == 6
