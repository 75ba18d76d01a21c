"""Provider sets by name: the built-in ones, those registered in-process, and plug-ins.

A plug-in package adds a set through the entry-point group ``beamkit.providers``;
the entry point names a factory ``(ProviderOptions) -> ProviderSet``. A plug-in that
fails to import is reported (``plugin_errors()`` and a warning) and skipped, never fatal.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from ..errors import BeamkitError, ErrorCode, InvalidRequest
from .base import ProviderFactory, ProviderOptions, ProviderSet

ENTRY_POINT_GROUP = "beamkit.providers"
log = logging.getLogger(__name__)

# Built-ins are imported lazily, so that `offline` never pays for the openai client.
_BUILTIN: dict[str, str] = {
    "offline": "beamkit.providers.offline:create",
    "openai": "beamkit.providers.openai:create",
}
_registered: dict[str, ProviderFactory] = {}
_plugins: dict[str, object] | None = None
_plugin_errors: dict[str, str] = {}


def register(name: str, factory: ProviderFactory) -> None:
    """Make a provider set available by name in this process (tests, notebooks)."""
    _registered[name] = factory


def unregister(name: str) -> None:
    _registered.pop(name, None)


def _discover() -> dict[str, object]:
    global _plugins
    if _plugins is None:
        _plugins = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in _BUILTIN}
    return _plugins


def available() -> list[str]:
    """Names that can be asked for; a plug-in that already failed to load is left out."""
    plugins = {name for name in _discover() if name not in _plugin_errors}
    return sorted({*_BUILTIN, *_registered, *plugins})


def plugin_errors() -> dict[str, str]:
    """Plug-ins that failed to load, with the reason."""
    return dict(_plugin_errors)


def get_factory(name: str) -> ProviderFactory:
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        module, attr = _BUILTIN[name].split(":")
        return getattr(importlib.import_module(module), attr)
    ep = _discover().get(name)
    if ep is None:
        raise InvalidRequest(f"unknown provider set '{name}' (available: {', '.join(available())})", "providers")
    try:
        factory = ep.load()  # type: ignore[attr-defined]
    except Exception as exc:  # a broken plug-in must not take the process down
        _plugin_errors[name] = f"{type(exc).__name__}: {exc}"
        log.warning("beamkit provider plug-in %r failed to load: %s", name, exc)
        raise InvalidRequest(f"provider set '{name}' failed to load: {exc}", "providers") from exc
    return factory


def create(name: str, options: ProviderOptions) -> ProviderSet:
    factory = get_factory(name)
    try:
        return factory(options)
    except BeamkitError:
        raise
    except Exception as exc:
        raise BeamkitError(f"provider set '{name}' could not be created: {exc}", ErrorCode.INTERNAL_ERROR, fatal=True) from exc
