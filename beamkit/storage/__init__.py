"""Session storage (SPEC section 6): the only code that reads and writes session folders.

``{output}/sessions/{jobId}/`` holds ``iter{i}-cand{c}.png``, ``events.jsonl`` (one event
a line, appended as events happen) and ``metadata.json`` (written at each iteration's end
and when the job ends). ``SessionStore`` writes a running job's folder and is the engine's
Recorder; ``load`` reads a folder back as a Result.
"""

from __future__ import annotations

from .loading import load, load_state
from .paths import (
    EVENTS_FILE,
    IMAGE_ID_RE,
    JOB_ID_RE,
    METADATA_FILE,
    SESSIONS,
    image_file,
    list_sessions,
    output_problem,
    resolve_image,
    session_folder,
)
from .ratings import RATINGS_FILE, append_rating, read_ratings
from .reading import event_line, read_event_lines, read_events, read_metadata
from .safe import CorruptSession
from .session import SessionStore

__all__ = [
    "CorruptSession", "EVENTS_FILE", "RATINGS_FILE", "append_rating", "read_ratings", "IMAGE_ID_RE", "JOB_ID_RE", "METADATA_FILE", "SESSIONS", "SessionStore", "event_line",
    "image_file", "list_sessions", "load", "load_state", "output_problem", "read_event_lines", "read_events", "read_metadata",
    "resolve_image", "session_folder",
]
