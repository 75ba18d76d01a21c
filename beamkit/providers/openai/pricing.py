"""Prices, and the usage counter behind each openai role's ``RoleHandle.usage()``.

Prices are US dollars: ``input`` and ``output`` per million tokens, ``image`` per
generated image (a number, or a table by ``quality`` and ``quality/size``). For an
image model with an ``image`` price the per-image price covers the picture, so only
its text ``input`` tokens are charged on top. Users override or add models through
the ``prices`` setting (or ``BEAMKIT_OPENAI_PRICES``, JSON); a model with no price
is counted but reported in ``unpriced`` at a cost of 0.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Mapping
from typing import Any

CURRENCY = "USD"

#: Published list prices (USD) as of November 2026; check https://openai.com/api/pricing before relying on them.
DEFAULT_PRICES: dict[str, dict[str, Any]] = {
    # chat models: per 1M tokens
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40},
    "gpt-4.1": {"input": 2.00, "output": 8.00},
    "gpt-5.4-mini": {"input": 0.75, "output": 4.50},
    "gpt-5.4-nano": {"input": 0.20, "output": 1.25},
    # image models: text input per 1M tokens, and a price per image by quality (1024x1024; "quality/size" for others)
    "gpt-image-1-mini": {
        "input": 2.00,
        "image": {
            "low": 0.005, "medium": 0.011, "high": 0.036, "auto": 0.011,
            "low/1024x1536": 0.006, "medium/1024x1536": 0.015, "high/1024x1536": 0.052,
            "low/1536x1024": 0.006, "medium/1536x1024": 0.015, "high/1536x1024": 0.052,
        },
    },
    "gpt-image-1": {
        "input": 5.00,
        "image": {
            "low": 0.011, "medium": 0.042, "high": 0.167, "auto": 0.042,
            "low/1024x1536": 0.016, "medium/1024x1536": 0.063, "high/1024x1536": 0.25,
            "low/1536x1024": 0.016, "medium/1536x1024": 0.063, "high/1536x1024": 0.25,
        },
    },
}

_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def merge_prices(overrides: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The default table with the user's entries laid over it, model by model."""
    prices = copy.deepcopy(DEFAULT_PRICES)
    for model, entry in (overrides or {}).items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"the price of '{model}' must be an object such as {{\"input\": 0.15, \"output\": 0.6}}")
        for key, value in entry.items():
            if key not in ("input", "output", "image"):
                raise ValueError(f"unknown price field '{key}' for '{model}' (use input, output or image)")
            if key == "image" and isinstance(value, Mapping):
                bad = [v for v in value.values() if not _is_price(v)]
            else:
                bad = [] if _is_price(value) else [value]
            if bad:
                raise ValueError(f"the {key} price of '{model}' must be a non-negative number")
        prices[model] = {**prices.get(model, {}), **copy.deepcopy(dict(entry))}
    return prices


def _is_price(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


def price_of(prices: Mapping[str, Any], model: str) -> dict[str, Any] | None:
    """The entry for a model, also for a dated snapshot of a priced one (gpt-4o-mini-2024-07-18)."""
    return prices.get(model) or prices.get(_SNAPSHOT.sub("", model))


def image_price(entry: Mapping[str, Any] | None, quality: str | None, size: str | None) -> float | None:
    if not entry or "image" not in entry:
        return None
    table = entry["image"]
    if not isinstance(table, Mapping):
        return float(table)
    for key in (f"{quality}/{size}", quality, "auto", "medium", "default"):
        if key in table:
            return float(table[key])
    return None


def cost_of(prices: Mapping[str, Any], model: str, input_tokens: int, output_tokens: int,
            images: int = 0, quality: str | None = None, size: str | None = None) -> float | None:
    """Dollars for one model's usage, or None when the table has no price for it."""
    entry = price_of(prices, model)
    if entry is None:
        return None
    per_image = image_price(entry, quality, size) if images else None
    cost = input_tokens * float(entry.get("input", 0.0)) / 1e6
    if per_image is not None:
        cost += images * per_image
    else:
        if images and "output" not in entry:
            return None
        cost += output_tokens * float(entry.get("output", 0.0)) / 1e6
    return cost


class UsageCounter:
    """Tokens, images, calls and cost per model for one role of one job."""

    def __init__(self, prices: Mapping[str, Any]) -> None:
        self.prices = prices
        self._lock = threading.Lock()
        self._models: dict[str, dict[str, Any]] = {}

    def _row(self, model: str) -> dict[str, Any]:
        return self._models.setdefault(
            model, {"inputTokens": 0, "outputTokens": 0, "images": 0, "calls": 0, "cost": 0.0, "priced": True}
        )

    def add(self, model: str, *, input_tokens: int = 0, output_tokens: int = 0, images: int = 0,
            quality: str | None = None, size: str | None = None) -> None:
        input_tokens, output_tokens = int(input_tokens or 0), int(output_tokens or 0)
        cost = cost_of(self.prices, model, input_tokens, output_tokens, images, quality, size)
        with self._lock:
            row = self._row(model)
            row["inputTokens"] += input_tokens
            row["outputTokens"] += output_tokens
            row["images"] += images
            row["calls"] += 1
            if cost is None:
                row["priced"] = False
            else:
                row["cost"] += cost

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            models = {m: {k: v for k, v in row.items() if k != "priced"} for m, row in self._models.items()}
            unpriced = sorted(m for m, row in self._models.items() if not row["priced"])
        for row in models.values():
            row["cost"] = round(row["cost"], 6)
        return {
            "models": models,
            "totalCost": float(round(sum(r["cost"] for r in models.values()), 6)),
            "currency": CURRENCY,
            "unpriced": unpriced,
        }
