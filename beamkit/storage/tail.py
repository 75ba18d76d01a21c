"""Following the events.jsonl of a job that another process is writing, from where it was last read."""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from .paths import EVENTS_FILE
from .safe import MAX_EVENTS_BYTES, CorruptSession

_FLAGS = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK


class EventTail:
    """Reads a growing events.jsonl line by line: only complete lines (a line still being written
    waits for its newline), each at most once, as untrusted as every other session read."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = os.path.join(os.fspath(folder), EVENTS_FILE)
        self.offset = 0
        self._line = 0

    def read(self) -> list[tuple[str, dict[str, Any]]]:
        """The lines completed since the last call, with their events (none when it has not grown).
        Raises CorruptSession for a file that is no regular file, too large, or a complete line that is no event."""
        try:
            fd = os.open(self.path, _FLAGS)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise CorruptSession(f"{EVENTS_FILE} cannot be opened: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CorruptSession(f"{EVENTS_FILE} is not a regular file")
            if st.st_size > MAX_EVENTS_BYTES:
                raise CorruptSession(f"{EVENTS_FILE} holds {st.st_size} bytes, more than the {MAX_EVENTS_BYTES} allowed")
            if st.st_size <= self.offset:
                return []
            os.set_blocking(fd, True)
            data = os.pread(fd, st.st_size - self.offset, self.offset)
        finally:
            os.close(fd)
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        out = []
        for raw in data[:end].split(b"\n"):
            self._line += 1
            try:
                text = raw.decode("utf-8")
                value = json.loads(text)
            except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError alike
                raise CorruptSession(f"{EVENTS_FILE} line {self._line} is not a JSON event: {exc}") from None
            if not isinstance(value, dict):
                raise CorruptSession(f"{EVENTS_FILE} line {self._line} is not a JSON object")
            out.append((text, value))
        return out


__all__ = ["EventTail"]
