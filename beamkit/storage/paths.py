"""Where a session's files are (SPEC section 6), and which names may be looked up."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

SESSIONS = "sessions"
EVENTS_FILE = "events.jsonl"
METADATA_FILE = "metadata.json"
# Used with fullmatch: "$" would also match before a trailing newline, and "\d" any Unicode digit.
JOB_ID_RE = re.compile(r"job-[A-Za-z0-9_-]{1,64}")
# One spelling per picture: no leading zeros ("iter00-cand0" is not "iter0-cand0").
IMAGE_ID_RE = re.compile(r"(job-[A-Za-z0-9_-]{1,64})-iter(0|[1-9][0-9]{0,2})-cand(0|[1-9][0-9]{0,2})\.png")


def image_file(iteration: int, candidate_id: int) -> str:
    return f"iter{iteration}-cand{candidate_id}.png"


def session_folder(output: str | os.PathLike[str], job_id: str) -> Path:
    if not JOB_ID_RE.fullmatch(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return Path(output) / SESSIONS / job_id


def resolve_image(output: str | os.PathLike[str], image_id: str) -> Path | None:
    """The file an imageId names, or None. Only ``{jobId}-iter{i}-cand{c}.png`` resolves,
    and never to anything outside the output folder (symlinks included)."""
    m = IMAGE_ID_RE.fullmatch(image_id)
    if not m:
        return None
    job_id, it, cand = m.group(1), int(m.group(2)), int(m.group(3))
    root = (Path(output) / SESSIONS).resolve()
    path = root / job_id / image_file(it, cand)
    try:
        real = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        return None
    if not real.is_relative_to(root) or not real.is_file():
        return None
    return real


def list_sessions(output: str | os.PathLike[str]) -> Iterator[Path]:
    root = Path(output) / SESSIONS
    if not root.is_dir():
        return iter(())
    return (p for p in root.iterdir() if p.is_dir() and JOB_ID_RE.fullmatch(p.name))


def output_problem(output: str | os.PathLike[str]) -> str | None:
    """Why sessions cannot be written under ``output`` (None when they can): checked once when a
    server starts, so that an unwritable folder is one clear line, not a failure on every job."""
    import tempfile

    folder = Path(output) / SESSIONS
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as exc:
        return f"cannot write sessions under the output folder '{output}': {exc.strerror or exc}"
    return None
