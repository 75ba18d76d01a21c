"""What the local-model providers (diffusers and the scorers) share: their settings filled in,
and the torch device and dtype a model runs on.

:func:`fill` and :func:`check_device` are light; the others import torch, so call them off the
event loop.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import InvalidRequest
from ..base import Setting

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|(cuda|xpu)(:\d+)?)$")
DTYPES = ("auto", "float32", "float16", "bfloat16")


def fill(declared: Iterable[Setting], given: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Each declared setting: the given value (parsed, so a string from the environment works), else its default.

    A nullable setting given as None stays None ("no processor of its own"); any other None is the default.
    """
    values = {}
    for s in declared:
        value = given.get(s.name)
        if value is None and not (s.nullable and s.name in given):
            value = s.default
        values[s.name] = s.parse(value, owner=owner)
    return values


def check_device(name: str, field: str = "device") -> str:
    if not DEVICE_PATTERN.match(name):
        raise InvalidRequest(f"setting '{field}' must be auto, cpu, mps, cuda or cuda:N, got {name!r}", field)
    return name


def pick_device(name: str) -> str:
    """``auto``: the first of cuda, mps and cpu that this process can use."""
    if name != "auto":
        return name
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(name: str, device: str) -> Any:
    """``auto``: half precision on an accelerator, full precision on the CPU (where half is slow or missing)."""
    import torch

    if name == "auto":
        return torch.float32 if device == "cpu" else torch.float16
    return getattr(torch, name)


def free_memory() -> None:
    """Give what dropped models held back to the allocator, and an accelerator's cache to the driver."""
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
