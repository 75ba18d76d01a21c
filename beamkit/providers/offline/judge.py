"""The offline judge: which of two painted pictures better shows what the user asked for.

It reads the same measurements as the offline vision model (``vision.judge``) but weighs them
differently: the request's words and the picture's evidence for them count more, aesthetics
less, crowding by unrequested content is marked down, and a seeded noise term stands for a
judge's changing mind. So it mostly agrees with the absolute scores, not always.
"""

from __future__ import annotations

import random

from ..base import Verdict
from .vision import Judgement, alignment, judge

#: spread of the seeded noise, in points of preference (the preference spans about 0..100)
NOISE = 3.0


def preference(j: Judgement, user_prompt: str) -> tuple[float, str]:
    """How much the judge likes one picture, and the part that weighed most."""
    al = alignment(j.features, user_prompt)
    evidence = al.evidence if al.evidence is not None else al.score
    parts = {
        "the request's words": 0.35 * al.text,
        "what the picture shows of it": 0.35 * evidence,
        "its looks": 2.5 * j.aesthetic,
        "unrequested content": -15.0 * al.crowding,
    }
    return sum(parts.values()), max(parts, key=lambda k: abs(parts[k]))


def compare(png_a: bytes, png_b: bytes, user_prompt: str, seed: int) -> Verdict:
    rng = random.Random(seed)
    pa, why_a = preference(judge(png_a, user_prompt), user_prompt)
    pb, why_b = preference(judge(png_b, user_prompt), user_prompt)
    pa += rng.gauss(0.0, NOISE)
    pb += rng.gauss(0.0, NOISE)
    if pa >= pb:
        return Verdict("a", f"the first picture is preferred ({pa:.1f} against {pb:.1f}), mostly for {why_a}")
    return Verdict("b", f"the second picture is preferred ({pb:.1f} against {pa:.1f}), mostly for {why_b}")
