"""The REST and WebSocket handlers, written once and bound to two apps.

Each route here is a mixin with the route's logic only. ``standalone.py`` binds them to
plain Tornado handlers with a token check; ``extension.py`` binds them to Jupyter's
handlers with Jupyter's authentication. Both apps put a ``JobManager`` in the
application settings under ``beamkit_manager``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from tornado import web
from tornado.iostream import IOStream
from tornado.websocket import WebSocketClosedError

from .. import __version__
from .. import events as ev
from ..errors import BeamkitError, ErrorCode, InvalidRequest, NotFound
from ..providers import registry
from ..settings import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING_BYTES, DEFAULT_MAX_QUEUE
from . import openapi, thumbnails
from .connection import Connection
from .frames import payloads
from .manager import JobManager, from_wire

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_WS_MESSAGE = 64 * 1024
CANCEL_WAIT = 5.0
_STATUS_CODE = {400: ErrorCode.INVALID_REQUEST, 401: ErrorCode.AUTH_ERROR, 403: ErrorCode.AUTH_ERROR, 404: ErrorCode.NOT_FOUND,
                405: ErrorCode.INVALID_REQUEST, 413: ErrorCode.INVALID_REQUEST, 429: ErrorCode.RATE_LIMIT}
_TOKEN_IN_URI = re.compile(r"([?&]token=)[^&]*", re.IGNORECASE)


def scrub(uri: str) -> str:
    """A URI fit for a log: any ``token=`` value hidden."""
    return _TOKEN_IN_URI.sub(r"\1[secret]", uri)


class BeamkitHandler:
    """What every route shares: the manager, JSON in and out, errors as ``{"error", "code", ...}``."""

    settings: dict[str, Any]
    request: Any

    @property
    def manager(self) -> JobManager:
        return self.settings["beamkit_manager"]

    def send_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)  # type: ignore[attr-defined]
        self.set_header("Content-Type", "application/json; charset=UTF-8")  # type: ignore[attr-defined]
        self.finish(json.dumps(body, ensure_ascii=False))  # type: ignore[attr-defined]

    def json_body(self) -> Any:
        body = self.request.body or b""
        if len(body) > MAX_BODY:
            raise InvalidRequest(f"the request body is larger than {MAX_BODY} bytes")
        if not body.strip():
            raise InvalidRequest("the request body must be a JSON object")
        try:
            return from_wire(body)
        except (ValueError, RecursionError) as exc:
            raise InvalidRequest(f"malformed JSON: {exc}") from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, BeamkitError):
            body = {"error": exc.message, "code": exc.code, **exc.context}
        elif isinstance(exc, web.HTTPError):
            message = exc.get_message() or exc.reason
            body = {"error": message or self._reason, "code": _STATUS_CODE.get(status_code, ErrorCode.INTERNAL_ERROR)}  # type: ignore[attr-defined]
        else:
            body = {"error": "internal server error", "code": ErrorCode.INTERNAL_ERROR}
        if status_code == 405:  # RFC 9110: a 405 says which methods the resource has
            self.set_header("Allow", ", ".join(self._methods()))  # type: ignore[attr-defined]
        self.set_header("Content-Type", "application/json; charset=UTF-8")  # type: ignore[attr-defined]
        self.finish(json.dumps(body, ensure_ascii=False))  # type: ignore[attr-defined]

    def _methods(self) -> list[str]:
        """The HTTP methods this handler implements (not Tornado's 405 defaults)."""
        cls = type(self)
        return [m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
                if getattr(cls, m.lower(), None) is not getattr(web.RequestHandler, m.lower())]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        summary = f"{self.request.method} {scrub(self.request.uri)}"
        if isinstance(value, BeamkitError):
            log.info("%s -> %s %s", summary, value.code, value.message)
        elif isinstance(value, web.HTTPError):
            log.info("%s -> %s", summary, value.status_code)
        else:
            log.error("beamkit: uncaught exception in %s", summary, exc_info=(typ, value, tb))

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, BeamkitError):
            status_code = exc.http_status
        super().send_error(status_code, **kwargs)  # type: ignore[misc]


class HealthRoute(BeamkitHandler):
    def get(self) -> None:
        self.send_json({"status": "ok", "timestamp": ev.timestamp(), "version": __version__,
                        "runningJobs": self.manager.running, "maxJobs": self.manager.max_jobs})


class BeamSearchRoute(BeamkitHandler):
    def post(self) -> None:
        # Only the headers that providers declare for a setting (a per-request key) are read; their
        # values go to the job's roles and are never stored, logged or echoed.
        headers = {h: v.strip() for h in registry.setting_headers() if (v := self.request.headers.get(h, "")).strip()}
        job = self.manager.start(self.json_body(), headers=headers)
        self.send_json({"jobId": job.id, "status": "started", "message": "Beam search job started"})


class JobRoute(BeamkitHandler):
    async def get(self, job_id: str) -> None:
        self.send_json(await self.manager.status(job_id))


class CancelRoute(BeamkitHandler):
    async def post(self, job_id: str) -> None:
        # Here or in another process sharing the output folder, the job stops within a second; the answer is the outcome.
        self.send_json(await self.manager.cancel_and_wait(job_id, CANCEL_WAIT))


class RatingsRoute(BeamkitHandler):
    async def get(self, job_id: str) -> None:
        self.send_json(await self.manager.ratings(job_id))

    async def post(self, job_id: str) -> None:
        self.send_json(await self.manager.rate(job_id, self.json_body()))


class ReviewRoute(BeamkitHandler):
    async def post(self, job_id: str) -> None:
        self.send_json(await self.manager.review(job_id, self.json_body()))


class JobsRoute(BeamkitHandler):
    async def get(self) -> None:
        self.send_json({"jobs": await self.manager.list()})


class ImageRoute(BeamkitHandler):
    async def get(self, image_id: str) -> None:
        size = thumbnails.parse_size(self.get_query_argument("size", None))  # type: ignore[attr-defined]
        path = self.manager.image(image_id)
        if path is None:
            raise NotFound(f"no image '{image_id}'", imageId=image_id)
        data = await asyncio.to_thread(thumbnails.read_image, path, size)
        self.set_header("Cache-Control", "private, max-age=86400")  # type: ignore[attr-defined]
        self.send_png(data)

    def send_png(self, data: bytes) -> None:
        self.set_header("Content-Type", "image/png")  # type: ignore[attr-defined]
        self.finish(data)  # type: ignore[attr-defined]


class ProvidersRoute(BeamkitHandler):
    def get(self) -> None:
        self.send_json({"providers": registry.describe()})


class OpenAPIRoute(BeamkitHandler):
    def get(self) -> None:
        # where this app serves its routes: the path above api/openapi.json (a Jupyter base_url + beamkit/)
        prefix = self.request.path[: -len("api/openapi.json")].rstrip("/")
        self.send_json(openapi.served(f"{self.request.protocol}://{self.request.host}{prefix}"))


class SocketRoute(BeamkitHandler):
    """The WebSocket of SPEC section 4; ``Connection`` does the work."""

    conn: Connection | None = None

    @property
    def max_message_size(self) -> int:
        return MAX_WS_MESSAGE

    async def get(self, *args: Any, **kwargs: Any) -> None:
        # Checked before the upgrade, after authentication. Nothing awaits between here and
        # open(), which counts the socket in, so concurrent upgrades cannot overshoot.
        limit = self.settings.get("beamkit_max_connections", DEFAULT_MAX_CONNECTIONS)
        if len(self.settings.get("beamkit_sockets", ())) >= limit:
            raise BeamkitError(f"{limit} WebSocket connections are open, the most this server allows; "
                               "try again when one closes", ErrorCode.RATE_LIMIT, maxConnections=limit)
        await super().get(*args, **kwargs)  # type: ignore[misc]

    def open(self, *args: Any, **kwargs: Any) -> Any:
        self.conn = Connection(
            self.manager,
            write=self.write_frames,
            close=self.close,  # type: ignore[attr-defined]
            max_queue=self.settings.get("beamkit_max_queue", DEFAULT_MAX_QUEUE),
            max_bytes=self.settings.get("beamkit_max_pending_bytes", DEFAULT_MAX_PENDING_BYTES),
        )
        self.settings.setdefault("beamkit_sockets", set()).add(self)
        return super().open(*args, **kwargs)  # type: ignore[misc]

    def write_frames(self, frames: list[bytes]) -> Any:
        """Write whole text frames, built once for every subscriber, in one write to the socket.

        Tornado's ``write_message`` would re-encode each message, build its frame and write it on
        its own; the bytes are the same, so they go to the stream directly. With permessage-deflate
        agreed (only if a subclass asks for it), each message must be compressed, so Tornado frames them.
        """
        protocol = self.ws_connection  # type: ignore[attr-defined]
        if protocol is None or protocol.is_closing():
            raise WebSocketClosedError()
        if getattr(protocol, "_compressor", None) is not None:
            fut = None
            for frame in frames:
                for payload in payloads(frame):
                    fut = self.write_message(payload)  # type: ignore[attr-defined]
            return fut
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        stream = protocol.stream
        if type(stream) is IOStream and not stream.writing() and not stream.closed():
            # Nothing of Tornado's waits to go out, so order is kept: hand the bytes to the socket
            # at once. Sent whole (the usual case), they cost no future and no callbacks; a rest,
            # or any error, goes through the stream, which buffers it or closes as it should.
            try:
                sent = stream.socket.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                return stream.write(data)
            if sent == len(data):
                return None
            data = data[sent:]
        return stream.write(data)

    async def on_message(self, message: str | bytes) -> None:
        if self.conn is not None:
            await self.conn.handle(message)

    def on_close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.settings.get("beamkit_sockets", set()).discard(self)


#: (path below the app's prefix, route); the WebSocket is at ``ws`` (the standalone app adds ``/``).
ROUTES: list[tuple[str, type]] = [
    ("health", HealthRoute),
    ("api/beam-search", BeamSearchRoute),
    (r"api/job/([^/]+)/cancel", CancelRoute),
    (r"api/job/([^/]+)/ratings", RatingsRoute),
    (r"api/job/([^/]+)/review", ReviewRoute),
    (r"api/job/([^/]+)", JobRoute),
    ("api/jobs", JobsRoute),
    (r"api/images/([^/]+)", ImageRoute),
    ("api/providers", ProvidersRoute),
    ("api/openapi.json", OpenAPIRoute),
    ("ws", SocketRoute),
]


def close_sockets(settings: dict[str, Any]) -> None:
    """Close every WebSocket of an app (on shutdown)."""
    for socket in list(settings.get("beamkit_sockets", ())):
        if socket.conn is not None:
            socket.conn.close()
        socket.close(1001, "server shutting down")
