"""Reading a session back as a Result, without re-running anything."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import events as ev
from ..errors import NotFound
from ..result import Result
from ..state import SessionState, replay
from .ratings import read_ratings
from .reading import read_events, read_metadata
from .safe import CorruptSession

# metadata.json's top-level keys and the JSON types each may hold (None: the key may be null or absent).
_METADATA_TYPES: dict[str, tuple[type, ...]] = {
    "jobId": (str,), "status": (str,), "config": (dict,), "candidates": (list,), "beams": (dict,),
    "best": (dict,), "lineage": (list,), "duration": (int, float), "usage": (dict,), "error": (dict,),
}


#: a temporary file older than this is left over by a killed writer (a write takes milliseconds)
STALE_TEMPORARY_S = 60.0


def remove_stale_temporaries(folder: str | os.PathLike[str], min_age: float = STALE_TEMPORARY_S) -> list[str]:
    """Delete the ``.tmp-*`` files a killed writer left in ``folder`` (those older than ``min_age``
    seconds, so never one a live job is writing); returns their names."""
    removed: list[str] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(".tmp-"):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > min_age:
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:  # gone already, or not ours to delete
            continue
    return removed


def _check_metadata(meta: Mapping[str, Any]) -> None:
    for key, types in _METADATA_TYPES.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            raise CorruptSession(f"metadata.json's {key!r} is {type(value).__name__}, not {types[0].__name__}")


def _decoded(events: list[dict[str, Any]]) -> list[ev.Event]:
    out = []
    for i, raw in enumerate(events):
        try:
            out.append(ev.decode(raw))
        except ValueError as exc:
            raise CorruptSession(f"events.jsonl event {i + 1}: {exc}") from None
    return out


def load_state(folder: str | os.PathLike[str], *, finished: bool = True) -> SessionState:
    """A session folder's state: events.jsonl replayed through the reducer, with metadata.json
    filling in what events do not carry (timings, the critiques a parent received).

    A session whose process died mid-job still loads: what its events recorded is there,
    and its status reads "interrupted". Raises NotFound for a folder with neither file (or
    no folder), and CorruptSession (an InternalError) with the reason for one that cannot
    be read: a file that is no regular file or over its cap, a line in the middle of the
    log that is no JSON event, a malformed event or metadata.json.

    ``finished=False``: a live process still runs the job (``owner_of``), so a log without an
    end is a job in progress, not an interrupted one.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "it is not a folder" if folder.exists() else "it does not exist"
        raise NotFound(f"no beamkit session in {folder}: {what}")
    remove_stale_temporaries(folder)
    meta = read_metadata(folder)
    if meta is not None:
        _check_metadata(meta)
    events = _decoded(read_events(folder))
    if meta is None and not events:
        raise NotFound(f"no beamkit session in {folder}")
    try:
        return replay(events, meta, job_id=folder.name, finished=finished)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # values of the right type but wrong shape
        raise CorruptSession(f"the session cannot be read back: {type(exc).__name__}: {exc}") from None


def load(folder: str | os.PathLike[str]) -> Result:
    """Read a finished or interrupted session folder back as a Result (with its ratings)."""
    result = Result.from_state(load_state(folder), folder)
    result.ratings = read_ratings(folder)
    return result
