"""The Jupyter Server extension: the shared handlers under ``{base_url}beamkit/``.

Every route, the WebSocket included, goes through Jupyter's authentication and
authorization (resource ``beamkit``): without a token or login, 403. Jobs run on the
server's own asyncio loop and are cancelled when the server stops.

Settings (``jupyter_server_config.py`` or the command line)::

    c.BeamkitExtension.output_dir = "output"   # relative to the server's root_dir
    c.BeamkitExtension.max_jobs = 4
    c.BeamkitExtension.providers = "offline"
    c.BeamkitExtension.max_queue = 1000
    c.BeamkitExtension.max_connections = 512
    c.BeamkitExtension.provider_settings = {"openai": {"llm_model": "gpt-4o-mini", "base_url": "http://127.0.0.1:8000/v1"}}
"""

from __future__ import annotations

import os
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web, websocket
from traitlets import Dict, Integer, Unicode

from .connection import DEFAULT_MAX_QUEUE
from .handlers import DEFAULT_MAX_CONNECTIONS, ROUTES, SocketRoute, close_sockets
from .manager import JobManager

AUTH_RESOURCE = "beamkit"


class _JupyterHTTP(ExtensionHandlerMixin, APIHandler):
    auth_resource = AUTH_RESOURCE

    def finish(self, *args: Any, **kwargs: Any) -> Any:
        # APIHandler labels every answer JSON; keep the type a route chose (image/png).
        kwargs.setdefault("set_content_type", self._headers.get("Content-Type", "application/json"))
        return super().finish(*args, **kwargs)


class _JupyterSocket(SocketRoute, WebSocketMixin, websocket.WebSocketHandler, ExtensionHandlerMixin, JupyterHandler):
    auth_resource = AUTH_RESOURCE

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        user = self.current_user
        if not await ensure_async(self.authorizer.is_authorized(self, user, "read", AUTH_RESOURCE)):
            raise web.HTTPError(403)
        await super().get(*args, **kwargs)


def _guard(method: Any) -> Any:
    return web.authenticated(authorized(method))


def _bind(route: type) -> type:
    if issubclass(route, SocketRoute):
        return _JupyterSocket
    guarded = {m: _guard(getattr(route, m)) for m in ("get", "post") if hasattr(route, m)}
    return type(route.__name__.replace("Route", "JupyterHandler"), (route, _JupyterHTTP), guarded)


class BeamkitExtension(ExtensionApp):
    name = "beamkit"
    description = "beamkit: beam search over text-to-image prompts, over REST and WebSocket"
    load_other_extensions = True

    output_dir = Unicode("output", help="Folder of sessions; a relative path is taken from the server's root_dir.").tag(config=True)
    max_jobs = Integer(4, help="Jobs that may run at once; more get 429 RATE_LIMIT.").tag(config=True)
    providers = Unicode("offline", help="Provider set for jobs whose request names none.").tag(config=True)
    max_queue = Integer(DEFAULT_MAX_QUEUE, help="Messages a WebSocket client may fall behind before it is dropped.").tag(config=True)
    max_connections = Integer(DEFAULT_MAX_CONNECTIONS, help="beamkit WebSockets open at once; more are refused (429).").tag(config=True)

    provider_settings = Dict(
        help="Settings for each provider set, by its name, e.g. {'openai': {'llm_model': ..., 'base_url': ..., "
        "'limits': {'image': {'per_minute': 5}}}}. A key given per request (X-OpenAI-API-Key) wins over one set here.",
    ).tag(config=True)

    manager: JobManager | None = None

    def resolved_output(self) -> str:
        if os.path.isabs(self.output_dir) or self.serverapp is None:
            return self.output_dir
        return os.path.join(self.serverapp.root_dir, self.output_dir)

    def initialize_settings(self) -> None:
        self.manager = JobManager(self.resolved_output(), max_jobs=self.max_jobs, providers=self.providers,
                                  provider_settings=self.provider_settings)
        self.settings.update(beamkit_manager=self.manager, beamkit_max_queue=self.max_queue,
                             beamkit_max_connections=self.max_connections)
        self.log.info("beamkit: sessions in %s, at most %d jobs at once", self.manager.output, self.max_jobs)

    def initialize_handlers(self) -> None:
        self.handlers.extend((f"/{self.name}/{path}", _bind(route)) for path, route in ROUTES)

    async def stop_extension(self) -> None:
        if self.manager is not None:
            await self.manager.shutdown()
        if self.serverapp is not None and self.serverapp.web_app is not None:
            close_sockets(self.serverapp.web_app.settings)
