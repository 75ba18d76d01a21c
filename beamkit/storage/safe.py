"""Reading files of a session folder that anyone may have planted: regular files only, never
through a link, never more than a cap, never blocking on a FIFO or a device."""

from __future__ import annotations

import os
import stat
from typing import Any

from ..errors import InternalError

#: the most events.jsonl may hold: far above any real session (a 32x10 job writes a few MB)
MAX_EVENTS_BYTES = 256 << 20
#: the most metadata.json may hold
MAX_METADATA_BYTES = 64 << 20
#: the most a picture file may hold
MAX_IMAGE_BYTES = 64 << 20

_FLAGS = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


class CorruptSession(InternalError):
    """A session folder that cannot be read: listed as ``status: "corrupt"`` with this reason."""

    def __init__(self, message: str, *, fatal: bool | None = None, **context: Any) -> None:
        super().__init__(message, fatal=fatal, **context)


def read_regular(path: str | os.PathLike[str], cap: int, *, single_link: bool = False) -> bytes | None:
    """The bytes of ``path``, or None when it does not exist.

    Raises CorruptSession for anything but a regular file reached without a link (a FIFO
    would block the reading thread forever, /dev/zero would fill memory), for a file over
    ``cap`` bytes, and with ``single_link`` for a file with other hard links (one planted
    as a link to a file outside the folder).
    """
    path = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait for one.
        fd = os.open(path, _FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a symbolic link
        raise CorruptSession(f"{os.path.basename(path)} cannot be opened: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        name = os.path.basename(path)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptSession(f"{name} is not a regular file")
        if single_link and st.st_nlink > 1:
            raise CorruptSession(f"{name} has other hard links")
        if st.st_size > cap:
            raise CorruptSession(f"{name} holds {st.st_size} bytes, more than the {cap} allowed")
        os.set_blocking(fd, True)
        chunks = []
        left = cap + 1  # a file that grows while read is still cut at the cap
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise CorruptSession(f"{name} holds more than the {cap} bytes allowed")
        return b"".join(chunks)
    finally:
        os.close(fd)
