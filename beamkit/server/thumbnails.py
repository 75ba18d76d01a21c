"""PNG thumbnails for ``GET /api/images/:imageId?size=N`` (longer side at most N pixels).

A session folder may hold planted files, so a picture is read as untrusted: a regular
file with no other hard link, within a size cap, that really is a PNG, whose dimensions
are checked from its header before anything is decoded.
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from ..errors import InvalidRequest, NotFound
from ..storage.safe import MAX_IMAGE_BYTES, CorruptSession, read_regular

MAX_SIZE = 4096
#: the most pixels a picture may have to be made a thumbnail of (the largest generated is 4096 x 4096);
#: decoding is what costs memory (4 bytes a pixel and more), so a bigger one is refused from its header
MAX_PIXELS = 4096 * 4096
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    """The file's bytes, or a PNG thumbnail of it. Runs in a worker thread.

    Raises NotFound for a file that is not a picture this server wrote: no regular file,
    another hard link to it, over the cap, not a PNG, or too many pixels for a thumbnail.
    """
    try:
        data = read_regular(path, MAX_IMAGE_BYTES, single_link=True)
    except CorruptSession as exc:
        raise NotFound(f"{path.name} is not a picture: {exc.message}") from None
    if data is None:
        raise NotFound(f"no image {path.name}")
    if not data.startswith(PNG_SIGNATURE):
        raise NotFound(f"{path.name} is not a PNG image")
    if size is None:
        return data
    key = (str(path), os.stat(path).st_mtime_ns, len(data), size)
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
    if cached is None:
        cached = _thumbnail(data, size)
        with _lock:
            _cache[key] = cached
            while len(_cache) > _CACHED:
                _cache.popitem(last=False)
    return cached


_CACHED = 64
_cache: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()
_lock = threading.Lock()  # read_image runs in several worker threads


def _thumbnail(data: bytes, size: int) -> bytes:
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:  # reads the header only
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise NotFound(f"the picture has {width} x {height} pixels, more than a thumbnail is made of")
            if max(img.size) <= size:
                return data
            img.thumbnail((size, size), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            img.save(buf, "PNG", optimize=False)
            return buf.getvalue()
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:  # PIL's errors for a broken file
        raise NotFound(f"the picture cannot be read: {exc}") from None
