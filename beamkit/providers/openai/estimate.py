"""What the openai roles' calls cost, before they are made: the provider's ``estimate`` hook.

Dollars are an estimate from assumed token counts per kind of call, listed in the answer
under ``assumptions``; the generic part (which calls a job makes) is ``beamkit.estimate``.
"""

from __future__ import annotations

from typing import Any

from ..base import RoleOptions
from .config import prices_of
from .pricing import CURRENCY, cost_of

#: assumed tokens per call, besides the user's prompt: (input, output)
TOKENS: dict[str, tuple[int, int]] = {
    "expand": (330, 110),
    "refine": (560, 110),
    "combine": (420, 150),
    "critique": (760, 220),
    "vision": (420, 180),
    # a comparison: the instructions and two labels in, a verdict and a sentence of reason out
    "compare": (300, 50),
    "image": (150, 0),
}
#: pictures each operation's request carries as vision input
PICTURES = {"vision": 1, "compare": 2}
#: tokens one image costs as vision input, by model and detail (gpt-4o-mini bills images at 33x the text rate)
IMAGE_INPUT_TOKENS: dict[str, dict[str, int]] = {
    "gpt-4o-mini": {"low": 2833, "high": 25501, "auto": 25501},
}
DEFAULT_IMAGE_INPUT_TOKENS = {"low": 85, "high": 765, "auto": 765}
#: operations whose request carries the user's prompt
WITH_PROMPT = ("expand", "refine", "critique", "vision", "compare")


def estimate_role(role: str, calls: dict[str, int], options: RoleOptions) -> dict[str, Any]:
    s = options.settings
    model = str(s["model"])
    prices = prices_of(s)
    quality, size = s.get("quality"), s.get("size")
    detail = str(s.get("detail") or "auto")
    prompt_tokens = max(1, len(options.prompt) // 4)
    cost: dict[str, float] = {}
    per_call: dict[str, dict[str, int]] = {}
    unpriced = False
    for op, n in calls.items():
        tin, tout = TOKENS[op]
        if op in WITH_PROMPT:
            tin += prompt_tokens
        if op in PICTURES:
            tin += PICTURES[op] * IMAGE_INPUT_TOKENS.get(model, DEFAULT_IMAGE_INPUT_TOKENS).get(detail, 765)
        per_call[op] = {"input": tin, "output": tout}
        dollars = cost_of(prices, model, tin * n, tout * n, images=n if op == "image" else 0, quality=quality, size=size)
        unpriced = unpriced or dollars is None
        cost[op] = round(dollars or 0.0, 6)
    assumptions: dict[str, Any] = {"tokensPerCall": per_call}
    if role == "image":
        assumptions.update(imageQuality=quality, imageSize=size)
    elif role == "vision":
        assumptions.update(visionDetail=detail)
    elif role == "judge":
        assumptions.update(judgeDetail=detail)
    return {"cost": cost, "model": model, "currency": CURRENCY, "unpriced": [model] if unpriced else [],
            "assumptions": assumptions}
