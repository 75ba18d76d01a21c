"""``beamkit serve``: the shared handlers on a plain Tornado app, REST at ``/health`` and
``/api/...``, the WebSocket at ``/`` and ``/ws``.

It binds 127.0.0.1 unless told otherwise; any other address needs a token, which every
request must then carry (``Authorization: Bearer T`` or ``?token=T``), or get 401.

Web pages of other origins may neither open its WebSocket nor POST to it (403), unless their
origin is listed (``--allow-origin``); listed origins also get CORS headers for the REST API.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import signal
import sys
from typing import Any
from urllib.parse import urlsplit

from tornado import httpserver, log as tornado_log, netutil, web, websocket

from ..errors import BeamkitError, ErrorCode, NotFound
from .connection import DEFAULT_MAX_QUEUE
from .handlers import API_KEY_HEADER, DEFAULT_MAX_CONNECTIONS, MAX_BODY, ROUTES, BeamkitHandler, SocketRoute, close_sockets, scrub
from .manager import JobManager

log = logging.getLogger(__name__)

TOKEN_ENV = "BEAMKIT_TOKEN"
PING_INTERVAL = 20.0  # seconds between protocol-level pings
PING_TIMEOUT = 20.0  # a peer that has not answered a ping this long is closed (at most the interval)


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listed(settings: dict[str, Any], origin: str) -> bool:
    allowed = settings.get("beamkit_allow_origins", ())
    return "*" in allowed or origin in allowed


def _same_origin(origin: str, host_header: str) -> bool:
    try:
        return urlsplit(origin).netloc.lower() == host_header.lower()
    except ValueError:
        return False


class TokenAuth:
    """Checks the token (when the server has one) before any route runs, the WebSocket's included,
    and refuses state-changing requests from web pages of origins that are not allowed."""

    settings: dict[str, Any]
    request: Any

    def set_default_headers(self) -> None:
        origin = self.request.headers.get("Origin")
        if origin and _listed(self.settings, origin):  # CORS, for the origins allowed by --allow-origin
            self.set_header("Access-Control-Allow-Origin", origin)  # type: ignore[attr-defined]
            self.set_header("Vary", "Origin")  # type: ignore[attr-defined]

    def options(self, *args: Any) -> None:
        """A CORS preflight: browsers send it without credentials, and it reveals nothing."""
        origin = self.request.headers.get("Origin")
        if origin and _listed(self.settings, origin):
            self.set_header("Access-Control-Allow-Methods", "GET, POST")  # type: ignore[attr-defined]
            self.set_header("Access-Control-Allow-Headers", f"Authorization, Content-Type, {API_KEY_HEADER}")  # type: ignore[attr-defined]
            self.set_header("Access-Control-Max-Age", "600")  # type: ignore[attr-defined]
        self.set_status(204)  # type: ignore[attr-defined]
        self.finish()  # type: ignore[attr-defined]

    def prepare(self) -> Any:
        if self.request.method == "OPTIONS":
            return super().prepare()  # type: ignore[misc]
        token = self.settings.get("beamkit_token")
        if token:
            given = self.get_query_argument("token", None) or _header_token(self.request.headers.get("Authorization", ""))  # type: ignore[attr-defined]
            if not given or not hmac.compare_digest(given.encode(), token.encode()):
                raise BeamkitError("a valid token is required: send 'Authorization: Bearer TOKEN' or '?token=TOKEN'", ErrorCode.AUTH_ERROR)
        elif not _host_is_loopback(self.request.host):
            # Without a token the server is bound to loopback: a foreign Host header means a
            # rebound DNS name pointing a web page at this server.
            raise web.HTTPError(403, "this server answers only to localhost names; host %s is not one", self.request.host)
        origin = self.request.headers.get("Origin")
        if (self.request.method not in ("GET", "HEAD") and origin is not None
                and not _same_origin(origin, self.request.host) and not _listed(self.settings, origin)):
            # A page of another site may send a "simple" POST without asking first: refuse it here.
            # (The WebSocket upgrade is a GET; check_origin guards it.)
            raise web.HTTPError(403, "requests from pages of %s are refused; start the server with --allow-origin %s "
                                "to allow them", origin, origin)
        return super().prepare()  # type: ignore[misc]


def _header_token(value: str) -> str | None:
    scheme, _, rest = value.strip().partition(" ")
    return rest.strip() if scheme.lower() in ("bearer", "token") and rest.strip() else None


def _host_is_loopback(host_header: str) -> bool:
    host = host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
    if host.startswith("["):
        host = host[1 : host.index("]")] if "]" in host else host
    return is_loopback(host)


class _Socket(SocketRoute, TokenAuth, websocket.WebSocketHandler):
    def check_origin(self, origin: str) -> bool:
        return _listed(self.settings, origin) or _same_origin(origin, self.request.host)


class _NotFound(BeamkitHandler, web.RequestHandler):
    def prepare(self) -> None:
        raise NotFound(f"no route {self.request.method} {self.request.path}")


def _bind(route: type) -> type:
    if issubclass(route, SocketRoute):
        return _Socket
    return type(route.__name__.replace("Route", "Handler"), (route, TokenAuth, web.RequestHandler), {})


def _log_request(handler: web.RequestHandler) -> None:
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    ms = 1000.0 * handler.request.request_time()
    tornado_log.access_log.log(level, "%d %s %s (%s) %.1fms", status, handler.request.method,
                               scrub(handler.request.uri or ""), handler.request.remote_ip, ms)


def make_app(
    manager: JobManager,
    *,
    token: str | None = None,
    ping_interval: float = PING_INTERVAL,
    ping_timeout: float = PING_TIMEOUT,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    allow_origins: tuple[str, ...] | list[str] = (),
) -> web.Application:
    """The standalone Tornado application around ``manager``."""
    handlers: list[tuple[str, type]] = [(f"/{path}", _bind(route)) for path, route in ROUTES]
    handlers.append(("/", _Socket))
    return web.Application(
        handlers,
        beamkit_manager=manager,
        beamkit_token=token,
        beamkit_max_queue=max_queue,
        beamkit_max_connections=max_connections,
        beamkit_allow_origins=tuple(o.rstrip("/") for o in allow_origins),  # browsers send no trailing slash
        websocket_ping_interval=ping_interval,
        websocket_ping_timeout=ping_timeout,
        default_handler_class=_NotFound,
        log_function=_log_request,
    )


class Server:
    """A standalone server on a running loop: ``await Server(...).start()``, then ``await stop()``."""

    def __init__(self, manager: JobManager, host: str = "127.0.0.1", port: int = 3000, **app_options: Any) -> None:
        self.manager = manager
        self.host = host
        self.app = make_app(manager, **app_options)
        self.http = httpserver.HTTPServer(self.app, max_body_size=16 * MAX_BODY, xheaders=False)
        self.port = port

    async def start(self) -> "Server":
        sockets = netutil.bind_sockets(self.port, self.host)
        self.port = sockets[0].getsockname()[1]
        self.http.add_sockets(sockets)
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop listening, cancel running jobs (they record how they ended), close the sockets."""
        self.http.stop()
        await self.manager.shutdown()
        close_sockets(self.app.settings)
        await self.http.close_all_connections()


def check_bind(host: str, token: str | None) -> str | None:
    """Why the server must not start with these settings, or None."""
    if not is_loopback(host) and not token:
        return (
            f"refusing to serve on {host!r} without a token: anyone who can reach that address could start jobs "
            f"(and spend an API key). Pass --token TOKEN (or set {TOKEN_ENV}), or keep the default --host 127.0.0.1."
        )
    return None


def serve(
    host: str = "127.0.0.1",
    port: int = 3000,
    output: str = "output",
    providers: str = "offline",
    max_jobs: int = 4,
    token: str | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    allow_origins: tuple[str, ...] | list[str] = (),
) -> int:
    """Run until SIGINT/SIGTERM; returns the exit status. Called by ``beamkit serve``."""
    token = token or os.environ.get(TOKEN_ENV) or None
    problem = check_bind(host, token)
    if problem is None and max_jobs < 1:
        problem = "--max-jobs must be at least 1"
    if problem is None and max_connections < 1:
        problem = "--max-connections must be at least 1"
    if problem:
        print(f"beamkit serve: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app_options = {"token": token, "max_connections": max_connections, "allow_origins": tuple(allow_origins)}
    return asyncio.run(_main(host, port, output, providers, max_jobs, app_options))


async def _main(host: str, port: int, output: str, providers: str, max_jobs: int, app_options: dict[str, Any]) -> int:
    manager = JobManager(output, max_jobs=max_jobs, providers=providers)
    server = Server(manager, host, port, **app_options)
    token = app_options.get("token")
    try:
        await server.start()
    except OSError as exc:
        print(f"beamkit serve: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ws = server.url.replace("http", "ws", 1)
    print(f"beamkit serving {server.url}/api (WebSocket {ws}/ws), sessions in {os.path.abspath(output)}", flush=True)
    if token:
        print("requests must carry the token: Authorization: Bearer TOKEN, or ?token=TOKEN", flush=True)
    await stop.wait()
    print("beamkit: stopping", flush=True)
    await server.stop()
    return 0
