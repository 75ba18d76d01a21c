"""Providers on the command line: ``--providers``, ``--set`` and the ``beamkit providers`` listing."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .base import ALL_ROLES, listed_roles


def parse_providers(text: str) -> str | dict[str, str]:
    """``openai`` (every role), or ``llm=openai,image=offline,vision=openai`` (one per role), perhaps
    with ``judge=NAME`` (the tournament's judge; without one the vision role's provider judges)."""
    if "=" not in text:
        return text
    out: dict[str, str] = {}
    for part in text.split(","):
        role, sep, name = part.partition("=")
        role, name = role.strip(), name.strip()
        if not sep or not role or not name:
            raise argparse.ArgumentTypeError(f"--providers takes NAME or ROLE=NAME,... (roles {listed_roles()}), "
                                             f"not {text!r}")
        if role in out:
            raise argparse.ArgumentTypeError(f"--providers names the {role} role twice")
        out[role] = name
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set image.model=NAME`` (one role) and ``--set model=NAME`` (every role that has it).

    Values stay text: each provider reads them as its declared type (``30``, ``true``, JSON).
    """
    settings: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--set takes NAME=VALUE or ROLE.NAME=VALUE, not {item!r}")
        role, dot, name = key.partition(".")
        if dot and role in ALL_ROLES:
            if not name:
                raise argparse.ArgumentTypeError(f"--set {item!r} names no setting after '{role}.'")
            settings.setdefault(role, {})[name] = value
        else:
            settings[key] = value
    return settings


def _default(s: dict[str, Any]) -> str:
    if s["secret"]:
        return "(secret)"
    return "-" if s["default"] is None else json.dumps(s["default"]) if not isinstance(s["default"], str) else s["default"]


def table(rows: list[dict[str, Any]]) -> str:
    """The listing as text: each provider, its roles, and each role's settings."""
    out: list[str] = []
    for row in rows:
        state = "available" if row["available"] else f"unavailable: {row['reason']}"
        out.append(f"{row['name']}  [{row['origin']}, {state}]")
        if row.get("install"):
            out.append(f"  install: {row['install']}")
        if row["description"]:
            out.append(f"  {row['description']}")
        for role in row["roles"]:
            out.append(f"  {role}:")
            settings = [s for s in row["settings"] if not s["roles"] or role in s["roles"]]
            for s in settings:
                env = f"  env {', '.join(s['env'])}" if s["env"] else ""
                header = f"  header {s['header']}" if s["header"] else ""
                out.append(f"    {s['name']:<15} {s['type']:<6} {_default(s):<20}{env}{header}".rstrip())
            if not settings:
                out.append("    (no settings)")
        if row["aliases"]:
            out.append("  older names: " + ", ".join(f"{k} = {v}" for k, v in row["aliases"].items()))
        out.append("")
    return "\n".join(out).rstrip() + "\n"
