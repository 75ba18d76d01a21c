"""The ``offline`` provider (every role): no network, no weights, no key, deterministic for a seed.

A small world in which beam search can be watched working (SPEC section 7): an LLM that
rewrites prompts from vocabularies (``llm.py``), a painter that draws what the words say
(``painter.py``) and a vision model that measures the picture and reads its embedded
prompt (``vision.py``). docs/offline-world.md explains the rules.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..base import ALL_ROLES, GeneratedImage, Limit, Provider, RoleHandle, RoleOptions, Verdict, VisionResult
from .judge import compare
from .llm import OfflineLLM
from .painter import paint
from .vision import judge

__all__ = ["OfflineProvider", "OfflineLLM", "OfflinePainter", "OfflineVision"]

#: the model name each role reports its usage under
MODELS = {"llm": "offline-llm", "image": "offline-painter", "vision": "offline-vision", "judge": "offline-vision"}
LLM_OPERATIONS = ("expand", "refine", "critique", "combine")


class _Usage:
    """One role's call counts (per operation for the LLM); the offline provider costs nothing."""

    def __init__(self, role: str) -> None:
        self.role = role
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, op: str) -> None:
        with self._lock:
            self._counts[op] += 1

    def snapshot(self) -> dict[str, Any]:
        """The shape of the openai provider's usage (models -> calls, tokens, images, cost), all free."""
        with self._lock:
            c = dict(self._counts)
        row: dict[str, Any] = {"inputTokens": 0, "outputTokens": 0, "images": 0, "calls": sum(c.values()), "cost": 0.0}
        if self.role == "llm":
            row["operations"] = {k: c.get(k, 0) for k in LLM_OPERATIONS}
        elif self.role == "image":
            row["images"] = row["calls"]
        return {"models": {MODELS[self.role]: row}, "totalCost": 0.0, "currency": "USD", "unpriced": []}


class OfflinePainter:
    def __init__(self, count: Callable[[str], None] | None = None) -> None:
        self._count = count or (lambda op: None)

    async def generate(self, prompt: str, *, seed: int) -> GeneratedImage:
        self._count("image")
        png, meta = await asyncio.to_thread(paint, prompt, int(seed))
        return GeneratedImage(png=png, metadata=meta)  # model, size, seed and what was painted


class OfflineVision:
    def __init__(self, count: Callable[[str], None] | None = None) -> None:
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

    async def compare(self, image_a: bytes, image_b: bytes, user_prompt: str, *, seed: int) -> Verdict:
        """The judge of tournament ranking (``judge.py``): counted as a vision call."""
        self._count("vision")
        return await asyncio.to_thread(compare, image_a, image_b, user_prompt, int(seed))


class OfflineProvider(Provider):
    name = "offline"
    roles = ALL_ROLES  # the judge role is a vision object of its own (its compare, its own limit)
    description = "no network, no weights, no key; deterministic for a seed (docs/offline-world.md)"

    def create(self, role: str, options: RoleOptions) -> RoleHandle:
        usage = _Usage(role)
        impl: Any
        if role == "llm":
            impl, limit = OfflineLLM(options.temperature, usage.count), Limit()  # pure Python and instant
        elif role == "image":
            impl, limit = OfflinePainter(usage.count), Limit(concurrency=2)  # two cores: two pictures at once
        else:
            impl, limit = OfflineVision(usage.count), Limit(concurrency=2)
        return RoleHandle(impl, limit=limit, usage=usage.snapshot, info={"model": MODELS[role]})

    def estimate(self, role: str, calls: dict[str, int], options: RoleOptions) -> dict[str, Any]:
        return {"cost": {op: 0.0 for op in calls}, "model": MODELS[role], "currency": "USD"}
