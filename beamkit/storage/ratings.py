"""ratings.jsonl: a person's pairwise choices between a session's candidates, one JSON object a line.

Appended, never rewritten: a rating is a fact about when it was given, and an append of one
short line is what survives a killed process best (a torn last line is skipped on reading).
The file is created 0600, like the session's other files.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .safe import MAX_METADATA_BYTES, read_regular

RATINGS_FILE = "ratings.jsonl"
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def append_rating(folder: str | os.PathLike[str], rating: dict[str, Any]) -> None:
    """Append one rating (a JSON object) to the folder's ratings.jsonl."""
    line = (json.dumps(rating, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
    fd = os.open(os.path.join(folder, RATINGS_FILE), _FLAGS, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn last line (a killed writer) stays on its own
            line = b"\n" + line
        # One write of a short line with O_APPEND: two processes rating the same session do not interleave.
        os.write(fd, line)
    finally:
        os.close(fd)


def read_ratings(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete rating in the folder, oldest first ([] when there is no file).

    A line that is not a JSON object is skipped: ratings are a person's notes beside the
    session, and one bad line must not hide the others or the session.
    """
    data = read_regular(os.path.join(folder, RATINGS_FILE), MAX_METADATA_BYTES)
    if not data:
        return []
    out = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            out.append(value)
    return out
