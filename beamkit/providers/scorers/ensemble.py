"""The vision role made of learned scorers: some for alignment, some for aesthetics, averaged.

Each scorer gives a calibrated value in 0..1 (see its module for the calibration); a part's
value is the mean over its scorers, times 100 for alignment and times 10 for aesthetics. A
scorer named in both parts runs once. ``analysis`` says what each part measured and how.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ...errors import ProviderError
from ..base import VisionResult
from .measure import Measure, Scorer

#: a part at or above this share of its range is a strength, at or below the other a weakness
STRONG, WEAK = 0.7, 0.4


class ScoreVision:
    def __init__(self, alignment: Sequence[Scorer], aesthetic: Sequence[Scorer]) -> None:
        if not alignment or not aesthetic:
            raise ValueError("each part needs at least one scorer")
        self.alignment = list(alignment)
        self.aesthetic = list(aesthetic)
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()

    def __repr__(self) -> str:
        names = lambda part: "+".join(s.name for s in part)  # noqa: E731
        return f"<ScoreVision alignment={names(self.alignment)} aesthetic={names(self.aesthetic)}>"

    async def analyze(self, image: bytes, user_prompt: str, *, seed: int) -> VisionResult:
        # the scorers are deterministic: the seed has nothing to choose
        return await asyncio.to_thread(self.score, image, user_prompt)

    def score(self, image: bytes, user_prompt: str) -> VisionResult:
        from PIL import Image

        try:
            picture = Image.open(io.BytesIO(image)).convert("RGB")
        except Exception as exc:  # noqa: BLE001 - whatever Pillow raises, the bytes are no picture
            raise ProviderError(f"the scorers could not read the picture: {exc}") from exc
        measured: dict[str, Measure] = {}
        for scorer in [*self.alignment, *self.aesthetic]:
            if scorer.name not in measured:
                measured[scorer.name] = scorer.measure(picture, user_prompt)
        with self._lock:
            self._calls.update(measured.keys())
        align = [measured[s.name] for s in self.alignment]
        looks = [measured[s.name] for s in self.aesthetic]
        a = sum(m.fraction for m in align) / len(align)
        e = sum(m.fraction for m in looks) / len(looks)
        alignment, aesthetic = round(100 * a, 2), round(10 * e, 3)
        analysis = [_part("Alignment", f"{alignment:g}/100", align), _part("Aesthetics", f"{aesthetic:g}/10", looks)]
        if [s.name for s in self.alignment] == [s.name for s in self.aesthetic]:
            analysis.append("The same measure stands for both scores, so the total is that measure whatever alpha is.")
        strengths, weaknesses = [], []
        for label, value in (("alignment with the prompt", a), ("aesthetic quality", e)):
            if value >= STRONG:
                strengths.append(f"high {label} ({100 * value:.0f}% of the scale)")
            elif value <= WEAK:
                weaknesses.append(f"low {label} ({100 * value:.0f}% of the scale)")
        return VisionResult(alignment_score=alignment, aesthetic_score=aesthetic, analysis=" ".join(analysis),
                            strengths=strengths, weaknesses=weaknesses)

    def usage(self) -> dict[str, Any]:
        with self._lock:
            calls = dict(self._calls)
        rows = {name: {"inputTokens": 0, "outputTokens": 0, "images": 0, "calls": n, "cost": 0.0} for name, n in calls.items()}
        return {"models": rows, "totalCost": 0.0, "currency": "USD", "unpriced": []}


def _part(label: str, value: str, measures: list[Measure]) -> str:
    each = "; ".join(f"{m.scorer} = {m.what}: {m.detail} -> {100 * m.fraction:.0f}%" for m in measures)
    how = "the mean of " if len(measures) > 1 else ""
    return f"{label} {value}, {how}{each}."
