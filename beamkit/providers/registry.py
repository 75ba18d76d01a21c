"""Providers by name: every one found through the ``beamkit.providers`` entry-point group
(the built-ins ``offline`` and ``openai`` too), plus those registered in-process.

An entry point names a :class:`~beamkit.providers.base.Provider` subclass (or instance).
One that cannot be imported, names something else, or lacks a module it needs is listed
as unavailable with the reason and an install hint; asking for it is an ``INVALID_REQUEST``
naming it, never a crash. A plug-in cannot replace a built-in.

Each provider is one object per process. Its ``open`` hook is awaited once, before the first
job that uses it runs, and shared by later jobs; ``close_all`` (the servers, on shutdown) or
the interpreter's exit closes what was opened.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import logging
import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from ..errors import BeamkitError, ErrorCode, InvalidRequest
from .base import Provider

ENTRY_POINT_GROUP = "beamkit.providers"
#: the distribution whose entry points are the built-ins
DISTRIBUTION = "beamkit"
log = logging.getLogger(__name__)


@dataclass(eq=False)
class Entry:
    """One provider name: where it comes from, and its state in this process."""

    name: str
    origin: str  # "builtin", "plugin" or "registered"
    target: str  # "module:attr" of the entry point, or what was registered
    dist: str | None = None
    extras: tuple[str, ...] = ()
    point: EntryPoint | None = None
    provider: Provider | None = None
    loaded: bool = False
    error: str | None = None  # why it cannot be used here
    opened: bool = False
    opening: asyncio.Task[None] | None = None

    @property
    def hint(self) -> str | None:
        """How to make an unavailable provider available."""
        extras = self.extras or ((self.provider.extra,) if self.provider is not None and self.provider.extra else ())
        if not extras:
            return None
        return f"pip install {self.dist or DISTRIBUTION}[{','.join(extras)}]"


_registered: dict[str, Entry] = {}
_discovered: dict[str, Entry] | None = None


def _normal(dist: str | None) -> str:
    return re.sub(r"[-_.]+", "-", dist or "").lower()


def _discover() -> dict[str, Entry]:
    global _discovered
    if _discovered is None:
        found: dict[str, Entry] = {}
        for point in entry_points(group=ENTRY_POINT_GROUP):
            dist = point.dist.name if point.dist is not None else None
            builtin = _normal(dist) == DISTRIBUTION
            entry = Entry(point.name, "builtin" if builtin else "plugin", point.value, dist, tuple(point.extras), point)
            have = found.get(point.name)
            if have is not None and (have.origin == "builtin" or not builtin):
                log.warning("beamkit provider %r of %s is ignored: %r of %s has that name",
                            point.name, dist, have.name, have.dist)
                continue
            found[point.name] = entry
        _discovered = found
    return _discovered


def refresh() -> None:
    """Forget what was discovered (after installing a plug-in in a running process)."""
    global _discovered
    _discovered = None


def _entries() -> dict[str, Entry]:
    return {**_discover(), **_registered}


def register(name: str, provider: Provider | type[Provider]) -> None:
    """Make a provider available by name in this process (tests, notebooks); it wins over an entry point."""
    instance = provider() if isinstance(provider, type) else provider
    if not isinstance(instance, Provider):
        raise TypeError(f"register() takes a beamkit Provider, not {type(instance).__name__}")
    entry = Entry(name, "registered", type(instance).__qualname__, provider=instance, loaded=True)
    entry.error = _why_unavailable(instance)
    old = _registered.get(name)
    _registered[name] = entry
    if old is not None and old.opened and old.provider is not instance:
        _close_now(old)


def unregister(name: str) -> None:
    entry = _registered.pop(name, None)
    if entry is not None and entry.opened:
        _close_now(entry)


def _why_unavailable(provider: Provider) -> str | None:
    try:
        return provider.unavailable()
    except Exception as exc:  # noqa: BLE001 - a broken check means the provider cannot be trusted here
        return f"{type(exc).__name__}: {exc}"


def _load(entry: Entry) -> Entry:
    if entry.loaded:
        return entry
    entry.loaded = True
    assert entry.point is not None
    try:
        obj = entry.point.load()
        provider = obj() if isinstance(obj, type) and issubclass(obj, Provider) else obj
        if not isinstance(provider, Provider):
            raise TypeError(f"{entry.target} is {type(obj).__name__}, not a beamkit Provider")
    except Exception as exc:  # a broken plug-in must not take the process down
        entry.error = f"{type(exc).__name__}: {exc}"
        log.warning("beamkit provider %r cannot be loaded: %s", entry.name, entry.error)
        return entry
    entry.provider = provider
    entry.error = _why_unavailable(provider)
    return entry


def names() -> list[str]:
    """Every provider name this process knows, available or not."""
    return sorted(_entries())


def available() -> list[str]:
    """The names a job can use here."""
    return sorted(name for name, entry in _entries().items() if _load(entry).error is None)


def plugin_errors() -> dict[str, str]:
    """Providers that cannot be used here, with the reason."""
    out: dict[str, str] = {}
    for name, e in _entries().items():
        error = _load(e).error
        if error is not None:
            out[name] = error
    return out


def entry(name: str) -> Entry:
    """The loaded entry of ``name``; raises InvalidRequest (field ``providers``) when there is none."""
    found = _entries().get(name)
    if found is None:
        raise InvalidRequest(f"unknown provider '{name}' (available: {', '.join(available()) or 'none'})", "providers")
    return _load(found)


def get(name: str) -> Provider:
    """The provider of ``name``; raises InvalidRequest when it is unknown or unavailable here."""
    found = entry(name)
    if found.error is not None or found.provider is None:
        hint = f"; {found.hint}" if found.hint else ""
        raise InvalidRequest(f"provider '{name}' is not available: {found.error}{hint}", "providers")
    return found.provider


def describe() -> list[dict[str, Any]]:
    """Every provider with its roles, settings and availability (``beamkit providers``, ``GET /api/providers``)."""
    rows = []
    for name in names():
        e = _load(_entries()[name])
        p = e.provider
        rows.append({
            "name": name,
            "available": e.error is None,
            "reason": e.error,
            "install": e.hint if e.error is not None else None,
            "origin": e.origin,
            "source": e.dist or e.target,
            "description": p.description if p is not None else "",
            "roles": list(p.roles) if p is not None else [],
            "settings": [s.describe() for s in p.settings] if p is not None else [],
            "aliases": dict(p.aliases) if p is not None else {},
        })
    return rows


def setting_headers() -> list[str]:
    """The request headers that some available provider's settings declare (``X-OpenAI-API-Key``)."""
    headers = {s.header for name in available() for s in get(name).settings if s.header}
    return sorted(headers, key=str.lower)


def builtin_setting_headers() -> dict[str, tuple[str, list[str]]]:
    """Header -> (setting name, built-in providers declaring it): what the OpenAPI document lists."""
    out: dict[str, tuple[str, list[str]]] = {}
    for name, e in sorted(_discover().items()):
        if e.origin != "builtin" or _load(e).provider is None:
            continue
        for s in e.provider.settings:  # type: ignore[union-attr]
            if s.header and name not in out.get(s.header, ("", []))[1]:
                out.setdefault(s.header, (s.name, []))[1].append(name)
    return out


# -- process-level open and close -------------------------------------------------------------


async def open_providers(wanted: list[str] | set[str]) -> None:
    """Await the ``open`` hook of each named provider once per process (jobs starting together share it)."""
    for name in sorted(wanted):
        await _open(entry(name))


async def _open(e: Entry) -> None:
    if e.opened:
        return
    loop = asyncio.get_running_loop()
    task = e.opening
    if task is None or task.get_loop() is not loop or (task.done() and (task.cancelled() or task.exception())):
        task = e.opening = loop.create_task(_run_open(e), name=f"beamkit open {e.name}")
    await asyncio.shield(task)


async def _run_open(e: Entry) -> None:
    assert e.provider is not None
    try:
        opening = e.provider.open()
        if inspect.isawaitable(opening):
            await opening
    except BeamkitError:
        raise
    except Exception as exc:
        raise BeamkitError(f"provider '{e.name}' could not be opened: {type(exc).__name__}: {exc}",
                           ErrorCode.PROVIDER_ERROR, fatal=True) from exc
    e.opened = True
    _watch_exit()


async def close_all() -> None:
    """Close every opened provider (a server's shutdown). The next job opens them again."""
    for e in list(_entries().values()):
        if e.opened and e.provider is not None:
            e.opened, e.opening = False, None
            try:
                closing = e.provider.close()
                if inspect.isawaitable(closing):
                    await closing
            except Exception:  # noqa: BLE001 - one provider's failure must not keep the others open
                log.exception("beamkit provider %r failed to close", e.name)


def _close_now(e: Entry) -> None:
    """Close outside a loop's task: on the running loop if there is one, else in a fresh one."""
    e.opened, e.opening = False, None
    if e.provider is None:
        return
    try:
        closing = e.provider.close()
        if not inspect.isawaitable(closing):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(_awaited(closing))
        else:
            loop.create_task(_awaited(closing))
    except Exception:  # noqa: BLE001 - at exit or on unregister, closing is best effort
        log.debug("beamkit provider %r failed to close", e.name, exc_info=True)


async def _awaited(awaitable: Any) -> None:
    await awaitable


_exit_watched = False


def _watch_exit() -> None:
    """A kernel has no shutdown hook of ours: close what is still open when the interpreter exits."""
    global _exit_watched
    if not _exit_watched:
        _exit_watched = True
        atexit.register(_close_at_exit)


def _close_at_exit() -> None:
    for e in list(_entries().values()):
        if e.opened:
            _close_now(e)

