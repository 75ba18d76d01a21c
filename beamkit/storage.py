"""Session storage (SPEC section 6): the one module that reads and writes session folders.

``{output}/sessions/{jobId}/`` holds ``iter{i}-cand{c}.png``, ``events.jsonl``
(appended as events happen) and ``metadata.json`` (rewritten atomically at each
iteration's end and when the job ends).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

SESSIONS = "sessions"
EVENTS_FILE = "events.jsonl"
METADATA_FILE = "metadata.json"
# Used with fullmatch: "$" would also match before a trailing newline, and "\d" any Unicode digit.
JOB_ID_RE = re.compile(r"job-[A-Za-z0-9_-]{1,64}")
IMAGE_ID_RE = re.compile(r"(job-[A-Za-z0-9_-]{1,64})-iter([0-9]{1,3})-cand([0-9]{1,3})\.png")


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
    path = (root / job_id / image_file(it, cand))
    try:
        real = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        return None
    if not real.is_relative_to(root) or not real.is_file():
        return None
    return real


class SessionStore:
    def __init__(self, output: str | os.PathLike[str], job_id: str) -> None:
        self.output = Path(output)
        self.job_id = job_id
        self.folder = session_folder(output, job_id)

    def create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=False)

    def image_path(self, iteration: int, candidate_id: int) -> Path:
        return self.folder / image_file(iteration, candidate_id)

    def write_image(self, iteration: int, candidate_id: int, png: bytes) -> Path:
        path = self.image_path(iteration, candidate_id)
        _atomic_write(path, png)
        return path

    def append_event(self, event: dict[str, Any]) -> None:
        # Opened per line: a killed process loses at most the line being written,
        # and no handle outlives the job.
        with open(self.folder / EVENTS_FILE, "a", encoding="utf-8") as fh:
            fh.write(event_line(event) + "\n")

    def write_metadata(self, metadata: dict[str, Any]) -> None:
        _atomic_write(self.folder / METADATA_FILE, json.dumps(metadata, indent=2, ensure_ascii=False).encode())


def event_line(event: dict[str, Any]) -> str:
    """An event as one line of events.jsonl; the WebSocket sends the same text."""
    return json.dumps(event, ensure_ascii=False)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_event_lines(folder: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """Each complete line of events.jsonl with its event; a torn last line (a killed writer) is skipped."""
    path = Path(folder) / EVENTS_FILE
    if not path.exists():
        return []
    pairs = []
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            try:
                pairs.append((raw.rstrip("\n"), json.loads(raw)))
            except json.JSONDecodeError:
                continue
    return pairs


def read_events(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete event of events.jsonl, in order."""
    return [event for _, event in read_event_lines(folder)]


def read_metadata(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    path = Path(folder) / METADATA_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def list_sessions(output: str | os.PathLike[str]) -> Iterator[Path]:
    root = Path(output) / SESSIONS
    if not root.is_dir():
        return iter(())
    return (p for p in root.iterdir() if p.is_dir() and JOB_ID_RE.fullmatch(p.name))
