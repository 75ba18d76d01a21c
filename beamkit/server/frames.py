"""WebSocket text frames built once per event, and a job's frames shared by every socket.

A server sends the same event to every subscriber: its frame (RFC 6455 header and UTF-8
payload, unmasked, as a server sends) is built once and the same bytes are written to
every socket. A job's frames so far are one ``Frames`` object, live or read back from disk,
and a replay is a cursor over it: no socket holds a copy of a job's events.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

#: FIN and the text opcode: every event is one whole text message
_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked WebSocket text frame around ``payload`` (UTF-8)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", _TEXT, n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", _TEXT, 126, n)
    else:
        head = struct.pack("!BBQ", _TEXT, 127, n)
    return head + payload


def frame_of(line: str) -> bytes:
    """The frame of one event's wire text."""
    return text_frame(line.encode("utf-8"))


def payloads(data: bytes) -> Iterator[bytes]:
    """The payloads of the whole unmasked frames in ``data`` (for a transport that must frame them itself)."""
    view, i = memoryview(data), 0
    while i < len(view):
        n = view[i + 1] & 0x7F
        start = i + 2
        if n == 126:
            n, start = struct.unpack_from("!H", view, start)[0], start + 2
        elif n == 127:
            n, start = struct.unpack_from("!Q", view, start)[0], start + 8
        yield bytes(view[start:start + n])
        i = start + n


class Frames:
    """A job's events as frames, in order, with the running byte total (``ends[i]``: bytes of frames 0..i)."""

    __slots__ = ("items", "ends", "__weakref__")

    def __init__(self, items: list[bytes] | None = None) -> None:
        self.items: list[bytes] = []
        self.ends: list[int] = []
        for item in items or ():
            self.append(item)

    def append(self, frame: bytes) -> None:
        self.items.append(frame)
        self.ends.append((self.ends[-1] if self.ends else 0) + len(frame))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def nbytes(self) -> int:
        return self.ends[-1] if self.ends else 0

    def size(self, start: int, end: int) -> int:
        """Bytes of frames ``start..end-1``."""
        if end <= start:
            return 0
        return self.ends[end - 1] - (self.ends[start - 1] if start else 0)


class Cursor:
    """Frames ``start..end-1`` of a shared ``Frames``, still to be written to one socket (``job_id``'s replay)."""

    __slots__ = ("frames", "pos", "end", "job_id")

    def __init__(self, frames: Frames, start: int, end: int, job_id: str = "") -> None:
        self.frames, self.pos, self.end, self.job_id = frames, start, end, job_id

    @property
    def remaining(self) -> int:
        return self.frames.size(self.pos, self.end)

    def take(self, budget: int, out: list[bytes]) -> int:
        """Move frames to ``out`` until ``budget`` bytes are taken (at least one frame); the bytes taken."""
        items, taken = self.frames.items, 0
        while self.pos < self.end and taken < budget:
            frame = items[self.pos]
            out.append(frame)
            taken += len(frame)
            self.pos += 1
        return taken
