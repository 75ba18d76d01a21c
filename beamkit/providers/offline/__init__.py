"""The ``offline`` provider set: no network, no weights, no key, deterministic for a seed.

A small world in which beam search can be watched working (SPEC section 7): an LLM that
rewrites prompts from vocabularies (``llm.py``), a painter that draws what the words say
(``painter.py``) and a vision model that measures the picture and reads its embedded
prompt (``vision.py``). docs/offline-world.md explains the rules.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

from ..base import GeneratedImage, Limit, ProviderOptions, ProviderSet, VisionResult
from .llm import OfflineLLM
from .painter import paint
from .vision import judge

__all__ = ["create", "OfflineLLM", "OfflinePainter", "OfflineVision"]


class _Usage:
    """Call counts per role and operation; the offline set costs nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, op: str) -> None:
        with self._lock:
            self._counts[op] += 1

    def snapshot(self) -> dict[str, Any]:
        """The same shape as the openai set's usage (models -> calls, tokens, images, cost), all free."""
        with self._lock:
            c = dict(self._counts)
        ops = {k: c.get(k, 0) for k in ("expand", "refine", "critique", "combine")}

        def row(calls: int, images: int = 0, **extra: Any) -> dict[str, Any]:
            return {"inputTokens": 0, "outputTokens": 0, "images": images, "calls": calls, "cost": 0.0, **extra}

        return {
            "models": {
                "offline-llm": row(sum(ops.values()), operations=ops),
                "offline-painter": row(c.get("image", 0), images=c.get("image", 0)),
                "offline-vision": row(c.get("vision", 0)),
            },
            "totalCost": 0.0,
            "currency": "USD",
            "unpriced": [],
        }


class OfflinePainter:
    def __init__(self, count=None) -> None:
        self._count = count or (lambda op: None)

    async def generate(self, prompt: str, *, seed: int) -> GeneratedImage:
        self._count("image")
        png, meta = await asyncio.to_thread(paint, prompt, int(seed))
        return GeneratedImage(png=png, metadata=meta)


class OfflineVision:
    def __init__(self, count=None) -> None:
        self._count = count or (lambda op: None)

    async def analyze(self, image: bytes, user_prompt: str, *, seed: int) -> VisionResult:
        self._count("vision")
        j = await asyncio.to_thread(judge, image, user_prompt)
        return VisionResult(
            alignment_score=j.alignment,
            aesthetic_score=j.aesthetic,
            analysis=j.analysis,
            strengths=list(j.strengths),
            weaknesses=list(j.weaknesses),
        )


def create(options: ProviderOptions) -> ProviderSet:
    usage = _Usage()
    return ProviderSet(
        name="offline",
        llm=OfflineLLM(options.temperature, usage.count),
        image=OfflinePainter(usage.count),
        vision=OfflineVision(usage.count),
        # Two cores: two pictures (or analyses) at once; the LLM is pure Python and instant.
        limits={"llm": Limit(), "image": Limit(concurrency=2), "vision": Limit(concurrency=2)},
        usage=usage.snapshot,
    )
