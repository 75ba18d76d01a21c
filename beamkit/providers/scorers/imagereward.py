"""ImageReward (Xu et al., 2023) through its own package, ``image-reward``.

Its model is a BLIP ViT-L with a reward head whose output is standardised (mean 0, standard
deviation 1 over its validation set). beamkit maps a reward ``r`` to ``sigmoid(r)``: 0 is
the middle (alignment 50, aesthetics 5), one deviation up is 73, two are 88.

The package loads a checkpoint file (``ImageReward.pt``) with a ``med_config.json``; given
its model name instead (``ImageReward-v1.0``) it downloads both, and its BLIP always reads
the ``bert-base-uncased`` tokenizer through transformers. Its architecture has no small
configuration, so beamkit's tests stop at this loading boundary (docs/local-models.md).
"""

from __future__ import annotations

import importlib
import math
import os
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidRequest
from ..diffusers.local import pick_device
from .measure import Measure
from .models import MODELS

PACKAGE_NAME = "ImageReward-v1.0"


@dataclass(frozen=True)
class ImageRewardSpec:
    model: str
    med_config: str | None
    device: str

    @property
    def key(self) -> Hashable:
        return ("imagereward", self.model, self.med_config, pick_device(self.device))

    def check(self) -> None:
        """A local checkpoint must exist; the package's own name is left to the package to fetch."""
        if self.model != PACKAGE_NAME and not os.path.isfile(self.model):
            raise InvalidRequest(
                f"setting 'model' must be an ImageReward checkpoint file or {PACKAGE_NAME!r}, "
                f"and {self.model!r} is no file", "model")
        if self.med_config is not None and not os.path.isfile(self.med_config):
            raise InvalidRequest(f"setting 'med_config': {self.med_config!r} is no file", "med_config")


def load(spec: ImageRewardSpec) -> Any:
    # imported by name: the package is optional and publishes no types
    package = importlib.import_module("ImageReward")
    return package.load(spec.model, device=pick_device(spec.device), med_config=spec.med_config)


class ImageRewardScorer:
    def __init__(self, spec: ImageRewardSpec, name: str = "imagereward") -> None:
        self.spec = spec
        self.name = name
        self._lock = threading.Lock()

    def measure(self, image: Any, prompt: str) -> Measure:
        import torch

        model = MODELS.get(self.spec.key, lambda: load(self.spec), f"the ImageReward model {self.spec.model!r}")
        with self._lock, torch.no_grad():
            reward = float(model.score(prompt, image))
        return Measure(
            scorer=self.name, what=f"ImageReward ({os.path.basename(self.spec.model)})", raw=reward,
            fraction=1 / (1 + math.exp(-reward)), detail=f"reward {reward:+.2f} standard deviations",
        )
