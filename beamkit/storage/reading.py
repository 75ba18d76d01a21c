"""Reading a session folder's files back; nothing here writes.

A session folder is read as untrusted: only regular files reached without a link, within
size caps (``safe``); a file that cannot be read so raises CorruptSession with the reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ..events import Event, encode
from .paths import EVENTS_FILE, METADATA_FILE
from .safe import MAX_EVENTS_BYTES, MAX_METADATA_BYTES, CorruptSession, read_regular


def event_line(event: Event | Mapping[str, Any]) -> str:
    """An event as one line of events.jsonl (without the newline); the WebSocket sends the same text."""
    return encode(event)


def _parse_line(raw: bytes) -> tuple[str, dict[str, Any]]:
    text = raw.decode("utf-8")
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"an event is a JSON object, not {type(value).__name__}")
    return text, value


def read_event_lines(folder: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """Each complete line of events.jsonl with its event.

    The last line may be torn (a killed writer, or one still writing): if it does not decode
    as UTF-8 JSON it is skipped. Any other line that does not is a corrupt session
    (CorruptSession), since nothing writes into the middle of the log.
    """
    data = read_regular(os.path.join(folder, EVENTS_FILE), MAX_EVENTS_BYTES)
    if not data:
        return []
    raws = data.split(b"\n")
    if raws[-1] == b"":
        raws.pop()
    pairs = []
    last = len(raws) - 1
    for i, raw in enumerate(raws):
        try:
            pairs.append(_parse_line(raw))
        except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            if i == last:
                break
            raise CorruptSession(f"{EVENTS_FILE} line {i + 1} is not a JSON event: {exc}") from None
    return pairs


def read_events(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete event of events.jsonl, in order."""
    return [event for _, event in read_event_lines(folder)]


def read_metadata(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """metadata.json, or None when there is none. It is written atomically, so one that does
    not parse, or holds something other than an object, is a corrupt session."""
    data = read_regular(os.path.join(folder, METADATA_FILE), MAX_METADATA_BYTES)
    if data is None:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptSession(f"{METADATA_FILE} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CorruptSession(f"{METADATA_FILE} holds {type(value).__name__}, not an object")
    return value
