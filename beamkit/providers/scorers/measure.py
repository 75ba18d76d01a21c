"""What a scorer reports for one picture, and the shape every scorer has."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Measure:
    scorer: str  # its name in an ensemble: "clip", "laion-aesthetic", ...
    what: str  # what it measures, in words: "CLIPScore (openai/clip-vit-large-patch14)"
    raw: float  # the model's own number (a cosine, a 1-10 rating, a standardised reward)
    #: the calibrated value, 0..1: alignment is 100 times it, aesthetics 10 times it
    fraction: float
    detail: str  # how raw became fraction: "cosine 0.291 x 2.5"


class Scorer(Protocol):
    name: str

    def measure(self, image: Any, prompt: str) -> Measure:
        """Score a PIL image against the user's prompt; runs on a worker thread."""
        ...


def clamp01(x: float) -> float:
    return max(0.0, min(1.0, float(x)))
