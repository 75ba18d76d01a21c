"""CLIP embeddings through transformers, and CLIPScore over them (PickScore is the same code).

CLIPScore (Hessel et al., 2021) is ``w * max(cos, 0)`` with ``w = 2.5``, where ``cos`` is
the cosine similarity of the picture's and the caption's CLIP embeddings; the weight
stretches the cosines CLIP gives real image-caption pairs (about 0.2 to 0.4) over most of
0..1. beamkit's alignment is that number times 100, capped at 100: a cosine of 0.3 is 75,
one of 0.4 or more is 100, an unrelated picture (cosine near 0) is near 0.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from ..diffusers.local import pick_device, pick_dtype
from .measure import Measure, clamp01
from .models import MODELS, dtype_kwargs

CLIPSCORE_WEIGHT = 2.5


@dataclass(frozen=True)
class ClipSpec:
    model: str
    processor: str | None  # a checkpoint without its own processor (PickScore) names one
    device: str
    dtype: str

    @property
    def key(self) -> Hashable:
        """What was loaded where; "auto" resolved, so that auto and cpu on a CPU machine share (imports torch)."""
        device = pick_device(self.device)
        return ("clip", self.model, self.processor or self.model, device, str(pick_dtype(self.dtype, device)))


class Clip:
    """A loaded CLIP model and its processor; gives unit-length embeddings."""

    def __init__(self, spec: ClipSpec) -> None:
        from transformers import AutoProcessor, CLIPModel

        self.device = pick_device(spec.device)
        dtype = pick_dtype(spec.dtype, self.device)
        model: Any = CLIPModel.from_pretrained(spec.model, **dtype_kwargs(dtype))
        self.model = model.to(self.device).eval()
        processor = AutoProcessor.from_pretrained(spec.processor or spec.model)
        self.image_processor = processor.image_processor
        self.tokenizer = processor.tokenizer
        self.dtype = dtype
        self.width = int(self.model.config.projection_dim)
        # one forward pass at a time per model: scorers run on worker threads
        self._lock = threading.Lock()

    def image_embeds(self, images: list[Any]) -> Any:
        import torch

        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        with self._lock, torch.inference_mode():
            out = self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))
        return _unit(out)

    def text_embeds(self, texts: list[str]) -> Any:
        import torch

        # CLIP reads 77 tokens; a long combined prompt is cut, as CLIPScore does
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.tokenizer.model_max_length,
                                return_tensors="pt")
        with self._lock, torch.inference_mode():
            out = self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                               attention_mask=tokens["attention_mask"].to(self.device))
        return _unit(out)


def _unit(out: Any) -> Any:
    # transformers 5 answers with an output object, 4.x with the tensor itself
    emb = out if hasattr(out, "norm") else out.pooler_output
    emb = emb.float()
    return emb / emb.norm(dim=-1, keepdim=True)


def clip_model(spec: ClipSpec) -> Clip:
    return MODELS.get(spec.key, lambda: Clip(spec), f"the CLIP model {spec.model!r}")


class ClipScorer:
    """CLIPScore of the picture against the user's prompt, as alignment."""

    def __init__(self, spec: ClipSpec, weight: float = CLIPSCORE_WEIGHT, name: str = "clip", label: str = "CLIPScore") -> None:
        self.spec = spec
        self.weight = weight
        self.name = name
        self.label = label

    def cosine(self, image: Any, prompt: str) -> float:
        clip = clip_model(self.spec)
        return float((clip.image_embeds([image]) @ clip.text_embeds([prompt]).T)[0, 0])

    def measure(self, image: Any, prompt: str) -> Measure:
        cos = self.cosine(image, prompt)
        return Measure(
            scorer=self.name, what=f"{self.label} ({self.spec.model})", raw=cos,
            fraction=clamp01(self.weight * max(cos, 0.0)), detail=f"cosine {cos:.3f} x {self.weight:g}",
        )
