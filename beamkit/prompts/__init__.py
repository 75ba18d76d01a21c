"""Prompt sets for sweeps: PartiPrompts, shipped with the package, and the user's own files.

    beamkit.prompts.load("parti", category="Animals", challenge="Basic", n=20, seed=0)
    beamkit.prompts.load("my-prompts.csv")      # TSV, CSV, JSONL or plain text

PartiPrompts (Yu et al., 2022) is Google Research's, under the Apache License 2.0: its
licence and source note lie beside the data in ``beamkit/prompts/data/partiprompts/``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest

#: names of the prompt sets shipped in the package, and the file each is read from
BUILTIN = {"parti": "partiprompts/PartiPrompts.tsv", "partiprompts": "partiprompts/PartiPrompts.tsv"}
#: column names that hold the prompt text in a user's table, first match wins (case-insensitive)
TEXT_COLUMNS = ("prompt", "text", "caption")


@dataclass(frozen=True)
class Prompt:
    """One prompt of a set; ``str(prompt)`` is its text. ``index`` is its row in the source."""

    text: str
    index: int
    category: str | None = None
    challenge: str | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        return self.text


def load(
    source: str | os.PathLike[str] = "parti",
    *,
    category: str | Iterable[str] | None = None,
    challenge: str | Iterable[str] | None = None,
    n: int | None = None,
    seed: int | None = None,
) -> list[Prompt]:
    """A prompt set, filtered by category and challenge, then ``n`` of them.

    With ``seed`` the ``n`` are drawn at random (the same seed, the same draw); without, the
    first ``n`` in file order. An unknown category or challenge is an ``InvalidRequest``
    that lists the valid ones, so a typo never yields an empty sweep.
    """
    prompts = _read(source)
    prompts = _filter(prompts, "category", category)
    prompts = _filter(prompts, "challenge", challenge)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidRequest(f"'n' must be a positive integer, got {n!r}", "n")
        if seed is not None:
            prompts = sorted(random.Random(seed).sample(prompts, min(n, len(prompts))), key=lambda p: p.index)
        else:
            prompts = prompts[:n]
    return prompts


def categories(source: str | os.PathLike[str] = "parti") -> list[str]:
    return sorted({p.category for p in _read(source) if p.category})


def challenges(source: str | os.PathLike[str] = "parti") -> list[str]:
    return sorted({p.challenge for p in _read(source) if p.challenge})


def _filter(prompts: list[Prompt], attr: str, wanted: str | Iterable[str] | None) -> list[Prompt]:
    if wanted is None:
        return prompts
    names = {wanted} if isinstance(wanted, str) else set(wanted)
    known = {getattr(p, attr) for p in prompts if getattr(p, attr)}
    # Case-insensitive, since "world knowledge" and "World Knowledge" mean the same to a user.
    by_lower = {k.lower(): k for k in known}
    unknown = sorted(name for name in names if name.lower() not in by_lower)
    if unknown:
        raise InvalidRequest(f"unknown {attr} {', '.join(map(repr, unknown))} (known: {', '.join(sorted(known))})", attr)
    chosen = {by_lower[name.lower()] for name in names}
    return [p for p in prompts if getattr(p, attr) in chosen]


def _read(source: str | os.PathLike[str]) -> list[Prompt]:
    if isinstance(source, str) and source.lower() in BUILTIN:
        text = resources.files(__package__).joinpath("data", BUILTIN[source.lower()]).read_text(encoding="utf-8")
        return _table(text, "\t")
    path = Path(source)
    if not path.is_file():
        raise InvalidRequest(f"no prompt set '{source}': name one of {', '.join(sorted(BUILTIN))} or a file", "prompts")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return _table(text, "\t")
    if suffix == ".csv":
        return _table(text, ",")
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl(text, path)
    return [Prompt(line.strip(), i) for i, line in enumerate(text.splitlines()) if line.strip()]


def _table(text: str, delimiter: str) -> list[Prompt]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = {name.lower(): name for name in reader.fieldnames or ()}
    column = next((columns[c] for c in TEXT_COLUMNS if c in columns), None)
    if column is None:
        raise InvalidRequest(f"a prompt table needs a column named one of {', '.join(TEXT_COLUMNS)}", "prompts")
    return [_prompt(row, column, i) for i, row in enumerate(reader) if (row.get(column) or "").strip()]


def _jsonl(text: str, path: Path) -> list[Prompt]:
    out = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{path}:{i + 1}: not JSON ({exc.msg})", "prompts") from None
        if isinstance(row, str):
            row = {"prompt": row}
        if not isinstance(row, dict):
            raise InvalidRequest(f"{path}:{i + 1}: each line must be a string or an object", "prompts")
        columns = {str(k).lower(): k for k in row}
        column = next((columns[c] for c in TEXT_COLUMNS if c in columns), None)
        if column is None or not str(row[column]).strip():
            raise InvalidRequest(f"{path}:{i + 1}: no {'/'.join(TEXT_COLUMNS)} field", "prompts")
        out.append(_prompt(row, column, i))
    return out


def _prompt(row: dict[str, Any], column: str, index: int) -> Prompt:
    lower = {str(k).lower(): v for k, v in row.items()}
    known = {column.lower(), "category", "challenge", "note"}
    return Prompt(
        text=str(row[column]).strip(),
        index=index,
        category=lower.get("category") or None,
        challenge=lower.get("challenge") or None,
        note=lower.get("note") or None,
        extra={k: v for k, v in row.items() if str(k).lower() not in known},
    )


__all__ = ["BUILTIN", "Prompt", "categories", "challenges", "load"]
