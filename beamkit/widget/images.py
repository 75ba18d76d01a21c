"""Where the widget gets pictures, and the thumbnails it sends to the browser.

Only thumbnails (longer side at most 256 px, WebP, JPEG where WebP is missing) cross to the
front end for candidate cards; the full picture is sent for the best-so-far panel and for a
card the user clicks. Decoding and encoding is CPU work, so the async methods run it in a
thread: the engine on the kernel's loop is never held up by it.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any, Protocol

THUMB_SIZE = 256
THUMB_QUALITY = 78
#: the best-so-far panel and a clicked card show the picture at its full size; it is sent as
#: WebP at this quality (a 512 px painting: ~40 KB instead of ~350 KB of PNG), or as the
#: original file when a widget is made with ``full_pictures="original"``
FULL_QUALITY = 90


def _thumb_format() -> str:
    try:
        from PIL import features

        return "webp" if features.check("webp") else "jpeg"
    except Exception:  # pragma: no cover - Pillow without its features module
        return "jpeg"


THUMB_FORMAT = _thumb_format()


def make_thumbnail(data: bytes, size: int = THUMB_SIZE, fmt: str = THUMB_FORMAT, quality: int = THUMB_QUALITY) -> bytes:
    """Encode ``data`` (any image Pillow reads) as a WebP or JPEG whose longer side is at most ``size``.

    Small pictures are not scaled up.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as src:
        src.draft("RGB", (size, size))  # JPEG sources decode at a reduced scale
        im = src.convert("RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        out = io.BytesIO()
        if fmt == "webp":
            im.save(out, "WEBP", quality=quality, method=4)
        else:
            im.save(out, "JPEG", quality=quality, optimize=True, progressive=True)
        return out.getvalue()


def make_full(data: bytes, fmt: str = THUMB_FORMAT, quality: int = FULL_QUALITY) -> bytes:
    """The picture at its full size, re-encoded as WebP (JPEG where WebP is missing)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as src:
        im = src.convert("RGB")
        out = io.BytesIO()
        if fmt == "webp":
            im.save(out, "WEBP", quality=quality, method=4)
        else:
            im.save(out, "JPEG", quality=quality, optimize=True)
        return out.getvalue()


def encode_full(data: bytes | None, mode: str) -> bytes | None:
    if data is None or mode == "original":
        return data
    try:
        encoded = make_full(data)
    except Exception:
        return data
    return encoded if len(encoded) < len(data) else data


def sniff_format(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "png"


class ImageSource(Protocol):
    """What the widget needs: a thumbnail and the full picture of a candidate."""

    async def thumbnail(self, cand: dict[str, Any]) -> bytes | None: ...

    async def full(self, cand: dict[str, Any]) -> bytes | None: ...

    def thumbnail_sync(self, cand: dict[str, Any]) -> bytes | None: ...

    def full_sync(self, cand: dict[str, Any]) -> bytes | None: ...

    async def stored(self, cand: dict[str, Any]) -> bytes | None: ...

    def stored_sync(self, cand: dict[str, Any]) -> bytes | None: ...


class LocalImages:
    """Pictures in a session folder (a job of this kernel, or one loaded from disk)."""

    def __init__(self, folder: str | Path | None, *, full_pictures: str = "webp") -> None:
        self.folder = Path(folder) if folder is not None else None
        self.full_pictures = full_pictures

    def path(self, cand: dict[str, Any]) -> Path | None:
        from ..storage import image_file

        # The folder's own file first: imagePath was written relative to the job's working directory.
        if self.folder is not None:
            p = self.folder / image_file(cand["iteration"], cand["candidateId"])
            if p.is_file():
                return p
        raw = cand.get("imagePath")
        if raw:
            p = Path(raw)
            if p.is_file():
                return p
        return None

    def original(self, cand: dict[str, Any]) -> bytes | None:
        p = self.path(cand)
        if p is None:
            return None
        try:
            return p.read_bytes()
        except OSError:
            return None

    def full_sync(self, cand: dict[str, Any]) -> bytes | None:
        return encode_full(self.original(cand), self.full_pictures)

    def thumbnail_sync(self, cand: dict[str, Any]) -> bytes | None:
        data = self.original(cand)
        if data is None:
            return None
        try:
            return make_thumbnail(data)
        except Exception:
            return None

    async def full(self, cand: dict[str, Any]) -> bytes | None:
        return await asyncio.to_thread(self.full_sync, cand)

    def stored_sync(self, cand: dict[str, Any]) -> bytes | None:
        """The picture as the session folder keeps it (for downloads and the full-size view)."""
        return self.original(cand)

    async def stored(self, cand: dict[str, Any]) -> bytes | None:
        return await asyncio.to_thread(self.original, cand)

    async def thumbnail(self, cand: dict[str, Any]) -> bytes | None:
        return await asyncio.to_thread(self.thumbnail_sync, cand)


class RemoteImages:
    """Pictures of a job on a beamkit server, fetched over REST (``GET /api/images/{imageId}``).

    The server scales thumbnails (``?size=256``); they are re-encoded to WebP/JPEG here,
    off the loop, because the server answers PNG.
    """

    def __init__(self, client: Any, *, full_pictures: str = "webp") -> None:
        self.client = client
        self.full_pictures = full_pictures

    async def _get(self, image_id: str, size: int | None) -> bytes | None:
        try:
            return await self.client.image(image_id, size=size)
        except Exception:
            return None

    async def full(self, cand: dict[str, Any]) -> bytes | None:
        if not cand.get("imageId"):
            return None
        data = await self._get(cand["imageId"], None)
        return await asyncio.to_thread(encode_full, data, self.full_pictures)

    async def thumbnail(self, cand: dict[str, Any]) -> bytes | None:
        if not cand.get("imageId"):
            return None
        data = await self._get(cand["imageId"], THUMB_SIZE)
        if data is None:
            return None
        try:
            return await asyncio.to_thread(make_thumbnail, data)
        except Exception:
            return None

    async def stored(self, cand: dict[str, Any]) -> bytes | None:
        """The server's PNG as it is, not re-encoded."""
        return await self._get(cand["imageId"], None) if cand.get("imageId") else None

    def full_sync(self, cand: dict[str, Any]) -> bytes | None:  # pragma: no cover - remote views are always live
        return None

    def stored_sync(self, cand: dict[str, Any]) -> bytes | None:  # pragma: no cover
        return None

    def thumbnail_sync(self, cand: dict[str, Any]) -> bytes | None:  # pragma: no cover
        return None
