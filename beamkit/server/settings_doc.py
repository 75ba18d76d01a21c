"""The settings tables of docs/server.md and docs/jupyter.md, made from ``BeamkitSettings``.

``python -m beamkit.server.settings_doc`` rewrites them; a test checks they are current.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from traitlets import TraitType

from ..settings import STANDALONE_ONLY, TOKEN_ENV, BeamkitSettings, Providers

_BEGIN, _END = "<!-- settings table: python -m beamkit.server.settings_doc -->", "<!-- end of settings table -->"


def _default_text(name: str) -> str:
    if name == "token":
        return f"`${TOKEN_ENV}`"
    value = BeamkitSettings.class_traits()[name].default()
    return "none" if value in ([], {}) else f"`{json.dumps(value)}`"


def _type_text(trait: TraitType[Any, Any]) -> str:
    if isinstance(trait, Providers):
        return "str or dict"
    return {"Unicode": "str", "Int": "int", "List": "list of str", "ProviderSettings": "dict"}[type(trait).__name__]


def markdown_table(jupyter: bool) -> str:
    """The settings table of docs/jupyter.md (``jupyter=True``: without the standalone-only ones) or docs/server.md."""
    head = "| setting | type | default | |" if jupyter else "| setting | option | type | default | |"
    rows = [head, "|---" * head.count(" | ") + "|---|"]
    for name, trait in BeamkitSettings.class_traits(config=True).items():
        if jupyter and name in STANDALONE_ONLY:
            continue
        help_text = re.sub(r"\s+", " ", trait.help).replace("|", "\\|")
        cells = [f"`c.BeamkitSettings.{name}`" if jupyter else f"`{name}`", _type_text(trait), _default_text(name), help_text]
        if not jupyter:
            cells.insert(1, f"`--{trait.metadata['flag']}`")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def rewrite_docs(path: str, jupyter: bool) -> bool:
    """Put the current table between the markers of ``path``; whether the file changed."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    start, end = text.index(_BEGIN) + len(_BEGIN), text.index(_END)
    new = text[:start] + "\n" + markdown_table(jupyter) + "\n" + text[end:]
    if new != text:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(new)
    return new != text


def documented_table(path: str) -> str:
    """The table between the markers of ``path``, as written there."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return text[text.index(_BEGIN) + len(_BEGIN) : text.index(_END)].strip("\n")


if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for doc, in_jupyter in (("server.md", False), ("jupyter.md", True)):
        changed = rewrite_docs(os.path.join(root, "docs", doc), in_jupyter)
        print(f"docs/{doc}: {'rewritten' if changed else 'up to date'}", file=sys.stderr)
