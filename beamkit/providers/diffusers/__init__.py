"""The ``diffusers`` image provider: any text-to-image pipeline, by model id or local folder.

``pip install beamkit[diffusers]``. The pipeline is loaded on the first picture a job asks
for (``AutoPipelineForText2Image.from_pretrained``), once per process for each model,
device, dtype, variant and offload; jobs that agree on those share it, and ``close`` frees
it. Candidates that wait together are rendered in one pipeline call, up to ``batch_size``,
each with its own generator seeded from the per-call seed the engine passes. A cancelled
call stops the pipeline between two denoising steps. docs/local-models.md has recipes.

This module imports neither torch nor diffusers: the registry can list the provider, and
say what to install, in a process that has neither.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

from ...errors import InvalidRequest
from ..base import GeneratedImage, Limit, Provider, RoleHandle, RoleOptions, Setting
from .local import DTYPES, check_device, fill

__all__ = ["DiffusersProvider", "DiffusersImage", "SETTINGS"]

DEFAULT_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"

SETTINGS: tuple[Setting, ...] = (
    Setting("model", str, DEFAULT_MODEL, env=("BEAMKIT_DIFFUSERS_MODEL",),
            help="a text-to-image model id on the Hugging Face Hub, or a local folder saved with save_pretrained"),
    Setting("device", str, "auto", env=("BEAMKIT_DIFFUSERS_DEVICE",),
            help="auto (cuda, then mps, then cpu), cpu, mps, cuda or cuda:N"),
    Setting("dtype", str, "auto", choices=DTYPES,
            help="auto: float16 on an accelerator, float32 on the CPU; bfloat16 suits FLUX"),
    Setting("variant", str, None, nullable=True, help="the weights variant to load, e.g. fp16 (unset: the default weights)"),
    Setting("steps", int, None, minimum=1, maximum=1000, nullable=True,
            help="denoising steps (unset: the pipeline's default)"),
    Setting("guidance", float, None, minimum=0.0, nullable=True,
            help="classifier-free guidance scale (unset: the pipeline's default; 0 for turbo models)"),
    Setting("width", int, None, minimum=8, maximum=8192, nullable=True,
            help="picture width in pixels, a multiple of 8 (unset: the model's default)"),
    Setting("height", int, None, minimum=8, maximum=8192, nullable=True,
            help="picture height in pixels, a multiple of 8 (unset: the model's default)"),
    Setting("negative_prompt", str, "", help="what the pictures should not show (for pipelines that take one)"),
    Setting("scheduler", str, None, nullable=True,
            help="a diffusers scheduler class, e.g. EulerAncestralDiscreteScheduler, made from the model's scheduler config"),
    Setting("batch_size", int, 4, minimum=1, maximum=64,
            help="how many waiting candidates are rendered in one pipeline call"),
    Setting("offload", str, "none", choices=("none", "model", "sequential"),
            help="model: keep only the running part on the accelerator (less memory, a little slower); "
                 "sequential: layer by layer (least memory, slow)"),
)


class DiffusersImage:
    """The image role of one job: its call parameters in front of a shared renderer."""

    def __init__(self, provider: DiffusersProvider, key: Any, params: Any) -> None:
        self._provider = provider
        self._key = key
        self._params = params
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"<DiffusersImage {self._key.model}>"

    async def generate(self, prompt: str, *, seed: int) -> GeneratedImage:
        renderer = self._provider.renderer(self._key)
        image = await renderer.generate(prompt, int(seed), self._params)
        with self._lock:
            self._counts["images"] += 1
        return image

    def usage(self) -> dict[str, Any]:
        with self._lock:
            n = self._counts["images"]
        row = {"inputTokens": 0, "outputTokens": 0, "images": n, "calls": n, "cost": 0.0}
        return {"models": {self._key.model: row}, "totalCost": 0.0, "currency": "USD", "unpriced": []}


class DiffusersProvider(Provider):
    name = "diffusers"
    roles = ("image",)
    settings = SETTINGS
    description = "Text-to-image pipelines run locally through Hugging Face diffusers (SD, SDXL, FLUX, ...)."
    extra = "diffusers"
    requires = ("torch", "diffusers", "transformers")

    def __init__(self) -> None:
        self._renderers: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def create(self, role: str, options: RoleOptions) -> RoleHandle:
        if role != "image":
            raise InvalidRequest(f"provider 'diffusers' offers the image role only, not '{role}'", "providers")
        from .render import CallParams, PipelineKey  # light: torch is imported by the worker

        s = fill(SETTINGS, options.settings, "diffusers")
        for side in ("width", "height"):
            if s[side] is not None and s[side] % 8:
                raise InvalidRequest(f"setting '{side}' must be a multiple of 8, got {s[side]}", side)
        scheduler = s["scheduler"]
        if scheduler is not None and not (scheduler.isidentifier() and scheduler.endswith("Scheduler")):
            raise InvalidRequest(f"setting 'scheduler' must name a diffusers scheduler class, got {scheduler!r}", "scheduler")
        if not s["model"]:
            raise InvalidRequest("setting 'model' must name a model id or a local folder", "model")
        key = PipelineKey(s["model"], check_device(s["device"]), s["dtype"], s["variant"], s["offload"])
        params = CallParams(s["steps"], s["guidance"], s["width"], s["height"], s["negative_prompt"],
                            scheduler, s["batch_size"])
        self._forget_failure(key)
        image = DiffusersImage(self, key, params)
        return RoleHandle(
            impl=image,
            # twice the batch: the next batch gathers while one renders
            limit=Limit(concurrency=2 * s["batch_size"]),
            limit_key=f"diffusers:{key.model}:{key.device}",
            usage=image.usage,
            # the first call loads the weights (minutes for a large model read from a slow disk)
            call_timeout=None,
            info={"model": key.model, "device": key.device, "dtype": key.dtype, "steps": params.steps,
                  "width": params.width, "height": params.height, "batchSize": params.batch_size},
        )

    def renderer(self, key: Any) -> Any:
        """The process's renderer for ``key``, made on first use (its worker loads the weights)."""
        with self._lock:
            found = self._renderers.get(key)
            if found is None:
                from .render import Renderer

                found = self._renderers[key] = Renderer(key)
            return found

    def _forget_failure(self, key: Any) -> None:
        """A new job tries a pipeline that failed to load again (the network or the disk may be back);
        within one job the failure is remembered, so its candidates do not each load it."""
        with self._lock:
            found = self._renderers.get(key)
            if found is None or not found.failed:
                return
            del self._renderers[key]
        found.close(wait=False)  # its worker is idle or failing what is queued: nothing to wait for

    def loaded(self) -> list[Any]:
        """The keys of the pipelines this process holds."""
        with self._lock:
            return list(self._renderers)

    async def close(self) -> None:
        """Stop every worker and free every pipeline; a later job loads again."""
        with self._lock:
            renderers, self._renderers = list(self._renderers.values()), {}
        for renderer in renderers:
            # joining waits for the batch in flight: off the loop
            await asyncio.to_thread(renderer.close)
