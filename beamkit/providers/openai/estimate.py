"""What a job will cost before it runs: the calls SPEC section 2 implies, priced.

Calls are exact for a job in which every candidate succeeds (retries, re-asks
and rephrasings come on top); dollars are an estimate from assumed token counts
per kind of call, listed in the result under ``assumptions``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

from ...errors import InvalidRequest
from ...params import JobParams, validate
from ..base import KINDS
from .config import (
    DEFAULT_IMAGE_MODEL, DEFAULT_IMAGE_QUALITY, DEFAULT_IMAGE_SIZE, DEFAULT_LLM_MODEL, DEFAULT_VISION_DETAIL,
    DEFAULT_VISION_MODEL, ENV,
)
from .pricing import CURRENCY, cost_of, merge_prices

#: assumed tokens per call, besides the user's prompt: (input, output)
TOKENS: dict[str, tuple[int, int]] = {
    "expand": (330, 110),
    "refine": (560, 110),
    "combine": (420, 150),
    "critique": (760, 220),
    "vision": (420, 180),
    "image": (150, 0),
}
#: tokens one image costs as vision input, by model and detail (gpt-4o-mini bills images at 33x the text rate)
IMAGE_INPUT_TOKENS: dict[str, dict[str, int]] = {
    "gpt-4o-mini": {"low": 2833, "high": 25501, "auto": 25501},
}
DEFAULT_IMAGE_INPUT_TOKENS = {"low": 85, "high": 765, "auto": 765}
LLM_KINDS = ("expand", "refine", "combine", "critique")
IGNORED = ("output", "job_id")


def calls(N: int, M: int, iterations: int) -> dict[str, int]:
    """Calls per kind for a job in which every candidate succeeds (SPEC section 2)."""
    later = iterations - 1
    beam = min(M, N)
    counts = {
        "expand": 2 * N,
        "critique": later * beam,
        "refine": later * N,
        "combine": iterations * N,
        "image": iterations * N,
        "vision": iterations * N,
    }
    counts["llm"] = sum(counts[k] for k in LLM_KINDS)
    counts["total"] = counts["llm"] + counts["image"] + counts["vision"]
    return counts


def _params(params: Any, kwargs: dict[str, Any]) -> JobParams:
    if isinstance(params, str):
        data: dict[str, Any] = {"prompt": params}
    elif isinstance(params, JobParams):
        data = params.to_dict()
    elif dataclasses.is_dataclass(params):
        data = dataclasses.asdict(params)  # type: ignore[arg-type]
    elif isinstance(params, Mapping):
        data = dict(params)
    elif params is None:
        data = {}
    else:
        raise TypeError("estimate() takes a prompt, a JobParams or a dict of job parameters")
    data.update(kwargs)
    for key in IGNORED:  # arguments of beamkit.start() that do not change the calls
        data.pop(key, None)
    data.setdefault("prompt", "x")
    return validate(data)


def estimate(params: Any = None, /, *, provider_settings: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Calls per kind and dollars for a job, without calling anything.

    ``estimate("a fox", N=9, M=3, iterations=3, providers="openai")``, or a dict / JobParams.
    ``provider_settings`` takes the models, image size and quality, and ``prices`` as the provider does.
    """
    job = _params(params, kwargs)
    counts = calls(job.N, job.M, job.iterations)
    settings = dict(provider_settings or {})

    def setting(name: str, default: Any) -> Any:
        value = settings.get(name)
        env = ENV.get(name)
        if value in (None, "") and env:
            value = os.environ.get(env)
        return default if value in (None, "") else value

    result: dict[str, Any] = {
        "providers": job.providers,
        "params": {"N": job.N, "M": job.M, "iterations": job.iterations},
        "calls": counts,
        "currency": CURRENCY,
    }
    if job.providers != "openai":
        result.update(cost={k: 0.0 for k in KINDS}, totalCost=0.0,
                      note=f"provider set '{job.providers}' is not priced; only 'openai' is")
        return result

    llm = str(setting("llm_model", DEFAULT_LLM_MODEL))
    image = str(setting("image_model", DEFAULT_IMAGE_MODEL))
    vision = str(setting("vision_model", DEFAULT_VISION_MODEL))
    quality = setting("image_quality", DEFAULT_IMAGE_QUALITY)
    size = setting("image_size", DEFAULT_IMAGE_SIZE)
    detail = str(setting("vision_detail", DEFAULT_VISION_DETAIL) or "auto")
    prices_setting = settings.get("prices")
    try:
        if prices_setting is None and os.environ.get("BEAMKIT_OPENAI_PRICES"):
            prices_setting = json.loads(os.environ["BEAMKIT_OPENAI_PRICES"])
        prices = merge_prices(prices_setting)
    except ValueError as exc:
        raise InvalidRequest(f"openai provider setting 'prices' is invalid: {exc}", "prices") from None

    prompt_tokens = max(1, len(job.prompt) // 4)
    image_tokens = IMAGE_INPUT_TOKENS.get(vision, DEFAULT_IMAGE_INPUT_TOKENS).get(detail, 765)
    per_call: dict[str, tuple[int, int]] = {}
    for kind, (tin, tout) in TOKENS.items():
        extra = prompt_tokens if kind in ("expand", "refine", "critique", "vision") else 0
        if kind == "vision":
            extra += image_tokens
        per_call[kind] = (tin + extra, tout)

    cost: dict[str, float] = {}
    unpriced: set[str] = set()
    for kind in (*LLM_KINDS, "image", "vision"):
        model = {"image": image, "vision": vision}.get(kind, llm)
        n = counts[kind]
        tin, tout = per_call[kind]
        c = cost_of(prices, model, tin * n, tout * n, images=n if kind == "image" else 0,
                    quality=quality, size=size)
        if c is None:
            unpriced.add(model)
            c = 0.0
        cost[kind] = round(c, 6)
    cost["llm"] = round(sum(cost[k] for k in LLM_KINDS), 6)
    result.update(
        models={"llm": llm, "image": image, "vision": vision},
        cost=cost,
        totalCost=round(cost["llm"] + cost["image"] + cost["vision"], 4),
        unpriced=sorted(unpriced),
        assumptions={
            "tokensPerCall": {k: {"input": a, "output": b} for k, (a, b) in per_call.items()},
            "imageQuality": quality,
            "imageSize": size,
            "visionDetail": detail,
            "note": "every candidate succeeds; retries and re-asks are extra; token counts are typical, not measured",
        },
    )
    return result
