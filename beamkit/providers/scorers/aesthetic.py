"""The LAION aesthetic predictor: an MLP head over unit CLIP image embeddings, rating 1..10.

The head (christophschuhmann/improved-aesthetic-predictor, ``sac+logos+ava1-l14-linearMSE.pth``
for CLIP ViT-L/14) was fitted to human ratings on a 1..10 scale, so its output is already
beamkit's aesthetic score; it is clamped to 0..10 because a linear head can overshoot.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidRequest
from .clip import ClipSpec, clip_model
from .measure import Measure, clamp01
from .models import MODELS

DEFAULT_HEAD = "camenduru/improved-aesthetic-predictor/sac+logos+ava1-l14-linearMSE.pth"


def head_file(ref: str) -> str:
    """A local file, or ``owner/repo/path/in/repo`` on the Hugging Face Hub (downloaded, then cached)."""
    if os.path.isfile(ref):
        return ref
    parts = ref.split("/")
    if len(parts) < 3 or not all(parts):
        raise InvalidRequest(
            f"setting 'head' must be a local file or owner/repo/filename on the Hugging Face Hub, got {ref!r}", "head")
    from huggingface_hub import hf_hub_download

    return hf_hub_download("/".join(parts[:2]), "/".join(parts[2:]))


def load_head(ref: str) -> Any:
    """The MLP of the original predictor, with the weights of ``ref`` (a .pth state dict or .safetensors)."""
    import torch
    from torch import nn

    path = head_file(ref)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k.removeprefix("layers."): v for k, v in state.items()}
    if "0.weight" not in state:
        raise InvalidRequest(f"setting 'head': {ref!r} is not a LAION aesthetic head (no layers.0.weight)", "head")
    width = int(state["0.weight"].shape[1])
    # the original layout, dropouts included, so the state dict's indices line up
    layers = nn.Sequential(
        nn.Linear(width, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
        nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
    )
    layers.load_state_dict(state)
    return layers.eval()


@dataclass(frozen=True)
class HeadSpec:
    ref: str

    @property
    def key(self) -> Hashable:
        return ("aesthetic-head", self.ref)


class AestheticScorer:
    def __init__(self, clip: ClipSpec, head: HeadSpec, name: str = "laion-aesthetic") -> None:
        self.clip = clip
        self.head = head
        self.name = name
        self._lock = threading.Lock()

    def rating(self, image: Any) -> float:
        import torch

        clip = clip_model(self.clip)
        head = MODELS.get(self.head.key, lambda: load_head(self.head.ref), f"the aesthetic head {self.head.ref!r}")
        width = head[0].in_features
        if width != clip.width:
            raise InvalidRequest(
                f"the aesthetic head {self.head.ref!r} takes {width}-wide embeddings, but CLIP "
                f"{self.clip.model!r} gives {clip.width}-wide ones (pair the head with the CLIP it was fitted on)",
                "clip_model")
        emb = clip.image_embeds([image]).cpu()
        with self._lock, torch.inference_mode():
            return float(head(emb)[0, 0])

    def measure(self, image: Any, prompt: str) -> Measure:
        rating = self.rating(image)
        value = 10 * clamp01(rating / 10)
        return Measure(
            scorer=self.name, what=f"LAION aesthetic predictor ({os.path.basename(self.head.ref)} over {self.clip.model})",
            raw=rating, fraction=value / 10, detail=f"rated {rating:.2f} of 10",
        )
