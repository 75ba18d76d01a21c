"""From a job's ``providers`` and ``provider_settings`` to its :class:`Roles`.

``providers`` is a name (every role from that provider) or a mapping naming each role, and
perhaps a ``judge`` (without one, the vision role's object judges a tournament).
``provider_settings`` is flat (each key goes to every role whose provider declares it) or
per role (``{"image": {"model": ...}}``), or both at once. A role's setting is the first
value found in: the job's per-role settings, the job's flat settings, a request header the
setting declares, the server's settings for that provider (per role, then flat), the
setting's environment variables, its default. Every value is checked against the
declaration; an unknown or mistyped setting is an ``INVALID_REQUEST`` naming it.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import BeamkitError, ErrorCode, InvalidRequest
from . import registry
from .base import ALL_ROLES, DEFAULT_TEMPERATURE, ROLES, Judge, Provider, RoleHandle, RoleOptions, Roles, Setting, check_providers

#: settings of a server (or of the Jupyter extension) for each provider, by provider name
ServerSettings = Mapping[str, Mapping[str, Any]]


@dataclass
class RolePlan:
    """One role of a job before it is built: its provider and its checked settings."""

    role: str
    name: str
    provider: Provider
    options: RoleOptions


def choose(providers: str | Mapping[str, str]) -> dict[str, str]:
    """Role -> provider name, each provider known, available here and offering that role."""
    choice = check_providers(providers)
    by_role = {role: choice for role in ROLES} if isinstance(choice, str) else dict(choice)
    for role, name in by_role.items():
        try:
            provider = registry.get(name)
        except InvalidRequest as exc:
            if isinstance(choice, str):
                raise
            raise InvalidRequest(f"for the {role} role: {exc.message}", "providers") from None
        if role not in provider.roles:
            offers = ", ".join(provider.roles) or "no role"
            raise InvalidRequest(f"provider '{name}' does not offer the {role} role (it offers {offers})", "providers")
    return by_role


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _split(settings: Mapping[str, Any] | None, where: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A settings dict as (flat keys, per-role sections)."""
    if settings is None:
        return {}, {}
    if not isinstance(settings, Mapping):
        raise InvalidRequest(f"{where} must be an object of settings", "provider_settings")
    flat: dict[str, Any] = {}
    per: dict[str, dict[str, Any]] = {}
    for key, value in settings.items():
        if key in ALL_ROLES:
            if not isinstance(value, Mapping):
                raise InvalidRequest(f"{where}['{key}'] must be an object of the {key} role's settings", str(key))
            per[key] = dict(value)
        else:
            flat[str(key)] = value
    return flat, per


def _canonical(provider: Provider, role: str, key: str) -> str | None:
    """The declared name ``key`` stands for in ``role`` (itself, or what an alias names), or None."""
    if any(s.name == key for s in provider.settings_for(role)):
        return key
    target = provider.aliases.get(key)
    if target is not None:
        alias_role, _, name = target.partition(".")
        if alias_role == role:
            return name
    return None


def _known(provider: Provider, role: str) -> str:
    return ", ".join(sorted({s.name for s in provider.settings_for(role)})) or "none"


def _layer(flat: Mapping[str, Any], section: Mapping[str, Any], provider: Provider, role: str,
           prefix: str = "") -> dict[str, tuple[Any, str]]:
    """The values one layer gives ``role``: name -> (raw value, the field to name in an error)."""
    out: dict[str, tuple[Any, str]] = {}
    for source, fieldname in ((flat, lambda k: f"{prefix}{k}"), (section, lambda k: f"{prefix}{role}.{k}")):
        for key, value in source.items():
            name = _canonical(provider, role, key)
            if name is not None and not _blank(value):
                out[name] = (value, fieldname(key))
    return out


def plan(
    providers: str | Mapping[str, str],
    settings: Mapping[str, Any] | None = None,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = 0,
    prompt: str = "",
    server: ServerSettings | None = None,
    headers: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, RolePlan]:
    """Each role's provider and checked settings; builds nothing and calls nothing."""
    by_role = choose(providers)
    provider_of = {role: registry.get(name) for role, name in by_role.items()}
    env = os.environ if environ is None else environ
    given = {k.lower(): v for k, v in (headers or {}).items()}

    job_flat, job_per = _split(settings, "provider_settings")
    for key in job_flat:
        if not any(_canonical(provider_of[r], r, key) for r in by_role):
            known = "; ".join(f"{r} ({by_role[r]}): {_known(provider_of[r], r)}" for r in by_role)
            raise InvalidRequest(f"unknown provider setting '{key}' (settings by role: {known})", key)
    for role, section in job_per.items():
        if role not in by_role:
            # Only the optional judge can be missing; its settings would go nowhere, silently.
            raise InvalidRequest(f"provider_settings has settings for the {role} role, but 'providers' names no "
                                 f"{role} (without one the vision role judges: set its settings under 'vision', "
                                 f"or name a {role} provider)", role)
        for key in section:
            if _canonical(provider_of[role], role, key) is None:
                raise InvalidRequest(
                    f"the {by_role[role]} provider's {role} role has no setting '{key}' "
                    f"(it has: {_known(provider_of[role], role)})", f"{role}.{key}")

    server_layers: dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]] = {}
    for name in set(by_role.values()):
        provider = registry.get(name)
        flat, per = _split((server or {}).get(name), f"the server's settings for '{name}'")
        for key in flat:
            if not any(_canonical(provider, r, key) for r in provider.roles):
                raise InvalidRequest(f"the server's settings for '{name}' have an unknown setting '{key}'", key)
        for role, section in per.items():
            for key in section:
                if role not in provider.roles or _canonical(provider, role, key) is None:
                    raise InvalidRequest(f"the server's settings for '{name}' have an unknown setting "
                                         f"'{role}.{key}'", f"{role}.{key}")
        server_layers[name] = (flat, per)

    plans: dict[str, RolePlan] = {}
    for role, name in by_role.items():
        provider = provider_of[role]
        s_flat, s_per = server_layers[name]
        layers = [
            _layer(job_flat, job_per.get(role, {}), provider, role),
            {s.name: (given[s.header.lower()], s.name) for s in provider.settings_for(role)
             if s.header and not _blank(given.get(s.header.lower()))},
            _layer(s_flat, s_per.get(role, {}), provider, role),
        ]
        values = {s.name: _value(s, layers, env, name) for s in provider.settings_for(role)}
        options = RoleOptions(role, temperature=temperature, seed=seed, prompt=prompt, settings=values)
        plans[role] = RolePlan(role, name, provider, options)
    return plans


def _value(setting: Setting, layers: list[dict[str, tuple[Any, str]]], env: Mapping[str, str], owner: str) -> Any:
    for layer in layers:
        if setting.name in layer:
            raw, fieldname = layer[setting.name]
            return setting.parse(raw, field=fieldname, owner=owner)
    for var in setting.env:
        raw = env.get(var)
        if not _blank(raw):
            return setting.parse(raw, field=var, owner=owner)
    return setting.default


def resolve(
    providers: str | Mapping[str, str],
    settings: Mapping[str, Any] | None = None,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = 0,
    prompt: str = "",
    server: ServerSettings | None = None,
    headers: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Roles:
    """A job's :class:`Roles`: each role created by its provider (``open`` is awaited later, by ``Roles.open``)."""
    plans = plan(providers, settings, temperature=temperature, seed=seed, prompt=prompt, server=server,
                 headers=headers, environ=environ)
    handles: dict[str, RoleHandle] = {}
    try:
        for role, p in plans.items():
            handles[role] = _create(p)
    except BaseException:
        _discard(handles)
        raise
    names = {p.name for p in plans.values()}
    return Roles.of(handles, {r: p.name for r, p in plans.items()}, opener=lambda: registry.open_providers(names))


def _create(p: RolePlan) -> RoleHandle:
    try:
        handle = p.provider.create(p.role, p.options)
    except BeamkitError:
        raise
    except Exception as exc:
        raise BeamkitError(f"provider '{p.name}' could not create its {p.role} role: {type(exc).__name__}: {exc}",
                           ErrorCode.INTERNAL_ERROR, fatal=True) from exc
    if not isinstance(handle, RoleHandle):
        raise BeamkitError(f"provider '{p.name}' answered create('{p.role}') with {type(handle).__name__}, "
                           "not a RoleHandle", ErrorCode.INTERNAL_ERROR, fatal=True)
    if p.role == "judge" and not isinstance(handle.impl, Judge):
        _discard({p.role: handle})
        raise InvalidRequest(f"provider '{p.name}' offers the judge role but its object cannot compare two "
                             "pictures (it has no compare(image_a, image_b, user_prompt, *, seed))", "providers")
    return handle


def _discard(handles: Mapping[str, RoleHandle]) -> None:
    """Close the roles already made when a later one fails (their clients must not leak)."""
    for handle in handles.values():
        if handle.aclose is None:
            continue
        try:
            closing = handle.aclose()
            if inspect.isawaitable(closing):
                try:
                    asyncio.get_running_loop().create_task(_awaited(closing))
                except RuntimeError:  # no loop: nothing holds a connection open yet
                    if inspect.iscoroutine(closing):
                        closing.close()
        except Exception:  # noqa: BLE001 - best effort; the error that got us here is the one to report
            pass


async def _awaited(awaitable: Any) -> None:
    await awaitable
