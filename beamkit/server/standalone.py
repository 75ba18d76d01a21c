"""``beamkit serve``: the shared handlers on a plain Tornado app, REST at ``/health`` and
``/api/...``, the WebSocket at ``/`` and ``/ws``.

It binds 127.0.0.1 unless told otherwise; any other address needs a token, which every
request must then carry (``Authorization: Bearer T`` or ``?token=T``), or get 401.

Web pages of other origins may neither open its WebSocket nor POST to it (403), unless their
origin is listed (``--allow-origin``); listed origins also get CORS headers for the REST API.

Its settings are :class:`beamkit.settings.BeamkitSettings`: options on the command line
(``beamkit serve --help-all``), a config file (``--config FILE``), or keywords of :func:`serve`.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from tornado import log as tornado_log
from tornado import netutil, web, websocket
from traitlets import TraitError, Unicode
from traitlets.config import Application, Config, JSONFileConfigLoader, PyFileConfigLoader

from .. import __version__, storage
from ..errors import AuthError, NotFound
from ..providers import registry
from ..settings import (
    DEFAULT_HOST,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_MAX_QUEUE,
    DEFAULT_PORT,
    TOKEN_ENV,
    BeamkitSettings,
)
from . import accept
from .handlers import MAX_BODY, ROUTES, BeamkitHandler, SocketRoute, close_sockets, scrub
from .manager import JobManager

log = logging.getLogger(__name__)

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


def _note_refused(settings: dict[str, Any], origin: str, what: str) -> None:
    """Say once per origin, at WARNING, that its pages are refused and how to allow them: the
    browser itself only says "Failed to fetch", and the access log only shows the preflight."""
    seen: set[str] = settings.setdefault("beamkit_refused_origins", set())
    if origin in seen or len(seen) >= 256:  # a page cycling through made-up origins must not fill the log
        return
    seen.add(origin)
    log.warning("refused %s from a web page of %s (not an allowed origin); to let that page use this server, "
                "start it with --allow-origin %s", what, origin, origin)


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
        elif origin and self.request.method != "OPTIONS" and not _same_origin(origin, self.request.host):
            # answered without CORS headers: the browser keeps the answer from the page
            _note_refused(self.settings, origin, f"{self.request.method} {self.request.path}")

    def options(self, *args: Any) -> None:
        """A CORS preflight: browsers send it without credentials, and it reveals nothing."""
        origin = self.request.headers.get("Origin")
        if origin and not _listed(self.settings, origin) and not _same_origin(origin, self.request.host):
            _note_refused(self.settings, origin, f"a cross-origin request (preflight OPTIONS {self.request.path})")
        if origin and _listed(self.settings, origin):
            self.set_header("Access-Control-Allow-Methods", "GET, POST")  # type: ignore[attr-defined]
            allowed = ", ".join(["Authorization", "Content-Type", *registry.setting_headers()])  # providers' own headers
            self.set_header("Access-Control-Allow-Headers", allowed)  # type: ignore[attr-defined]
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
                raise AuthError("a valid token is required: send 'Authorization: Bearer TOKEN' or '?token=TOKEN'")
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
        if _listed(self.settings, origin) or _same_origin(origin, self.request.host):
            return True
        _note_refused(self.settings, origin, "a WebSocket")
        return False


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
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
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
        beamkit_max_pending_bytes=max_pending_bytes,
        beamkit_max_connections=max_connections,
        beamkit_allow_origins=tuple(o.rstrip("/") for o in allow_origins),  # browsers send no trailing slash
        websocket_ping_interval=ping_interval,
        websocket_ping_timeout=ping_timeout,
        default_handler_class=_NotFound,
        log_function=_log_request,
    )


class Server:
    """A standalone server on a running loop: ``await Server(...).start()``, then ``await stop()``."""

    def __init__(self, manager: JobManager, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, **app_options: Any) -> None:
        self.manager = manager
        self.host = host
        self.app = make_app(manager, **app_options)
        self.http = accept.HTTPServer(self.app, max_body_size=16 * MAX_BODY, xheaders=False)
        self.port = port

    @classmethod
    def from_settings(cls, settings: BeamkitSettings, manager: JobManager | None = None) -> Server:
        """A server with these settings (and a manager made from them, unless given one)."""
        return cls(manager or JobManager.from_settings(settings), settings.host, settings.port, token=settings.token,
                   max_queue=settings.max_queue, max_pending_bytes=settings.max_pending_bytes,
                   max_connections=settings.max_connections,
                   allow_origins=tuple(settings.allow_origins))

    async def start(self) -> Server:
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


def serve(settings: BeamkitSettings | None = None, **values: Any) -> int:
    """Run ``beamkit serve`` until SIGINT/SIGTERM; returns the exit status.

    ``values`` are settings by their ``BeamkitSettings`` name (``serve(port=3001, max_jobs=2)``);
    one that is None counts as not given. They are laid over ``settings`` when given.
    """
    try:
        settings = _settings_with(settings, values)
    except (TraitError, TypeError) as exc:
        print(f"beamkit serve: {exc}", file=sys.stderr)
        return 2
    problem = check_bind(settings.host, settings.token) or storage.output_problem(settings.output)
    if problem:
        print(f"beamkit serve: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_main(settings))


def _settings_with(settings: BeamkitSettings | None, values: dict[str, Any]) -> BeamkitSettings:
    given = {k: v for k, v in values.items() if v is not None}
    unknown = sorted(set(given) - set(BeamkitSettings.class_trait_names(config=True)))
    if unknown:
        raise TypeError(f"no setting named {', '.join(map(repr, unknown))} (see beamkit serve --help-all)")
    if settings is None:
        return BeamkitSettings(**given)
    for name, value in given.items():
        setattr(settings, name, value)
    return settings


async def _main(settings: BeamkitSettings) -> int:
    server = Server.from_settings(settings)
    try:
        await server.start()
    except OSError as exc:
        print(f"beamkit serve: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ws = server.url.replace("http", "ws", 1)
    print(f"beamkit serving {server.url}/api (WebSocket {ws}/ws), sessions in {os.path.abspath(settings.output)}",
          flush=True)
    if settings.token:
        print("requests must carry the token: Authorization: Bearer TOKEN, or ?token=TOKEN", flush=True)
    await stop.wait()
    print("beamkit: stopping", flush=True)
    await server.stop()
    return 0


# -- the command line ------------------------------------------------------------------------------


class ServeApp(Application):
    """``beamkit serve [options]``: the options are the settings' flags, plus ``--config FILE``."""

    name = "beamkit-serve"
    version = __version__
    description = ("Serve the beamkit REST API and WebSocket. Every option is a setting of BeamkitSettings; "
                   "--config FILE reads them from a traitlets config file (c.BeamkitSettings.max_jobs = 2, "
                   "or JSON: {\"BeamkitSettings\": {\"max_jobs\": 2}}). The command line wins over the file.")
    examples = """
beamkit serve                                   # http://127.0.0.1:3000, sessions in ./output
beamkit serve --port 3001 --output ~/sessions --max-jobs 2
beamkit serve --host 0.0.0.0 --token "$(openssl rand -hex 16)"
beamkit serve --providers llm=openai,image=offline,vision=openai --provider-setting openai.llm_model=gpt-4o-mini
beamkit serve --config beamkit_config.py        # c.BeamkitSettings.max_jobs = 2 ...
"""
    classes = [BeamkitSettings]
    flags: dict[str, Any] = {}  # Application's own (--show-config, --debug) would be parsed and then ignored
    aliases = {
        **{t.metadata["flag"]: f"BeamkitSettings.{name}" for name, t in BeamkitSettings.class_traits(config=True).items()},
        "config": "ServeApp.config_file",
    }
    config_file = Unicode("", help="A traitlets config file to read the settings from: Python (.py) or JSON (.json).").tag(
        config=True)

    def settings_from(self, argv: Sequence[str]) -> BeamkitSettings:
        """The settings that ``argv`` gives (raises TraitError, or SystemExit for --help and bad options)."""
        for arg in argv:
            if arg.startswith("--") and not self._known(arg[2:].split("=", 1)[0]):
                # traitlets only warns about an option it does not know; a mistyped one must not be ignored
                raise TraitError(f"unknown option {arg.split('=', 1)[0]} (beamkit serve --help-all lists them)")
        self.parse_command_line(list(argv))
        if self.extra_args:
            raise TraitError(f"beamkit serve takes no arguments, only options: {' '.join(self.extra_args)}")
        if self.config_file:
            self.update_config(_read_config(self.config_file, self.cli_config))
        return BeamkitSettings(parent=self)

    def _known(self, name: str) -> bool:
        if name in self.aliases or name in self.flags or name in ("help", "help-all", "version", ""):
            return True
        classes = {"BeamkitSettings": BeamkitSettings, "ServeApp": ServeApp}  # Application's own are not read
        owner, _, trait = name.partition(".")
        return owner in classes and trait in classes[owner].class_trait_names(config=True)


def _read_config(path: str, cli: Config) -> Config:
    loaders = {".py": PyFileConfigLoader, ".json": JSONFileConfigLoader}
    loader = loaders.get(os.path.splitext(path)[1].lower())
    if loader is None:
        raise TraitError(f"--config takes a .py or .json file, not {path!r}")
    if not os.path.isfile(path):
        raise TraitError(f"no config file {path!r}")
    try:
        config = loader(os.path.basename(path), os.path.dirname(os.path.abspath(path))).load_config()
    except Exception as exc:  # a config file is user code: any error in it is the user's to see
        raise TraitError(f"cannot read the config file {path!r}: {type(exc).__name__}: {exc}") from None
    config.merge(cli)  # the command line wins over the file
    return config


def main(argv: Sequence[str]) -> int:
    """``beamkit serve ARGV``: read the settings, then :func:`serve` them; returns the exit status."""
    try:
        settings = ServeApp().settings_from(argv)
    except SystemExit as exc:  # --help, --help-all; or a bad option, already reported
        return 0 if exc.code in (0, None) else 2
    except TraitError as exc:
        print(f"beamkit serve: {exc}", file=sys.stderr)
        return 2
    return serve(**settings.values())
