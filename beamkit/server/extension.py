"""The Jupyter Server extension: the shared handlers under ``{base_url}beamkit/``.

Every route, the WebSocket included, goes through Jupyter's authentication and
authorization (resource ``beamkit``): without a token or login, 403. Jobs run on the
server's own asyncio loop and are cancelled when the server stops.

Settings are those of ``beamkit serve``, as ``c.BeamkitSettings.<name>`` in
``jupyter_server_config.py`` or ``--BeamkitSettings.<name>=...`` on the command line::

    c.BeamkitSettings.output = "output"   # relative to the server's root_dir
    c.BeamkitSettings.max_jobs = 4
    c.BeamkitSettings.provider_settings = {"openai": {"llm_model": "gpt-4o-mini", "base_url": "http://127.0.0.1:8000/v1"}}

The names this extension took before (``c.BeamkitExtension.output_dir``, ``max_jobs``,
``providers``, ``max_queue``, ``max_connections``, ``provider_settings``) still work, with a
warning; where both are set, ``BeamkitSettings`` wins.
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
from traitlets import Any as AnyTrait
from traitlets.config import Config

from ..settings import STANDALONE_ONLY, BeamkitSettings
from .handlers import ROUTES, SocketRoute, close_sockets
from .manager import JobManager

AUTH_RESOURCE = "beamkit"

#: the extension's own names from before BeamkitSettings, and the setting each one now is
LEGACY_NAMES = {"output_dir": "output", "max_jobs": "max_jobs", "providers": "providers", "max_queue": "max_queue",
                "max_connections": "max_connections", "provider_settings": "provider_settings"}
#: what Jupyter has instead of the settings that only `beamkit serve` reads
_JUPYTER_OWN = {"host": "ServerApp.ip", "port": "ServerApp.port", "token": "IdentityProvider.token",
                "allow_origins": "ServerApp.allow_origin"}


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


def _legacy(name: str) -> AnyTrait:
    # Read back from the raw config (see settings_from_config), so the value's type is BeamkitSettings' to check.
    return AnyTrait(None, allow_none=True, help=f"Deprecated: use c.BeamkitSettings.{LEGACY_NAMES[name]}.").tag(config=True)


class BeamkitExtension(ExtensionApp):
    name = "beamkit"
    description = "beamkit: beam search over text-to-image prompts, over REST and WebSocket"
    load_other_extensions = True
    classes = [*ExtensionApp.classes, BeamkitSettings]

    output_dir = _legacy("output_dir")
    max_jobs = _legacy("max_jobs")
    providers = _legacy("providers")
    max_queue = _legacy("max_queue")
    max_connections = _legacy("max_connections")
    provider_settings = _legacy("provider_settings")

    manager: JobManager | None = None
    #: this server's settings, read when the extension starts
    beamkit: BeamkitSettings | None = None

    def settings_from_config(self) -> BeamkitSettings:
        """``c.BeamkitSettings``, with the extension's old names filling in what it does not set."""
        old = self.config.get("BeamkitExtension") or {}
        merged = Config({new: old[name] for name, new in LEGACY_NAMES.items() if name in old})
        for name, new in LEGACY_NAMES.items():
            if name in old:
                self.log.warning("beamkit: c.BeamkitExtension.%s is deprecated; use c.BeamkitSettings.%s", name, new)
        own = self.config.get("BeamkitSettings") or Config()
        merged.merge(own)
        for name in STANDALONE_ONLY:
            if name in own:
                self.log.warning("beamkit: c.BeamkitSettings.%s does not apply inside Jupyter (%s does)",
                                 name, _JUPYTER_OWN[name])
        config = Config(self.config)
        config["BeamkitSettings"] = merged
        return BeamkitSettings(parent=self, config=config)

    def resolved_output(self) -> str:
        output = (self.beamkit or self.settings_from_config()).output
        if os.path.isabs(output) or self.serverapp is None:
            return output
        return os.path.join(self.serverapp.root_dir, output)

    def initialize_settings(self) -> None:
        self.beamkit = settings = self.settings_from_config()
        self.manager = JobManager.from_settings(settings, output=self.resolved_output())
        self.settings.update(beamkit_manager=self.manager, beamkit_max_queue=settings.max_queue,
                             beamkit_max_pending_bytes=settings.max_pending_bytes,
                             beamkit_max_connections=settings.max_connections)
        self.log.info("beamkit: sessions in %s, at most %d jobs at once", self.manager.output, settings.max_jobs)

    def initialize_handlers(self) -> None:
        self.handlers.extend((f"/{self.name}/{path}", _bind(route)) for path, route in ROUTES)

    async def stop_extension(self) -> None:
        if self.manager is not None:
            await self.manager.shutdown()
        if self.serverapp is not None and self.serverapp.web_app is not None:
            close_sockets(self.serverapp.web_app.settings)
