"""PNG thumbnails for ``GET /api/images/:imageId?size=N`` (longer side at most N pixels)."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from PIL import Image

from ..errors import InvalidRequest

MAX_SIZE = 4096


def parse_size(raw: str | None) -> int | None:
    """The ``size`` query argument: None, or an integer in 1..MAX_SIZE."""
    if raw is None:
        return None
    text = raw.strip()
    # ASCII digits only ("²".isdigit() is true) and few of them (int() refuses thousands of digits).
    if not (0 < len(text) <= 8 and text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_SIZE:
        raise InvalidRequest(f"'size' must be an integer between 1 and {MAX_SIZE}, got {raw!r}", "size")
    return int(text)


def read_image(path: Path, size: int | None) -> bytes:
    """The file's bytes, or a PNG thumbnail of it. Runs in a worker thread."""
    if size is None:
        return path.read_bytes()
    return _thumbnail(str(path), path.stat().st_mtime_ns, size)


@lru_cache(maxsize=64)
def _thumbnail(path: str, mtime_ns: int, size: int) -> bytes:
    with Image.open(path) as img:
        if max(img.size) <= size:
            return Path(path).read_bytes()
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "PNG", optimize=False)
        return buf.getvalue()
