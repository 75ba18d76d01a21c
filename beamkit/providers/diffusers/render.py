"""One loaded text-to-image pipeline, the worker thread that runs it, and the batcher in front.

Every ``generate`` call becomes a :class:`Request`. Requests made in the same turn of an
event loop are handed to the worker together, and the worker renders up to ``batch_size``
waiting requests of the same parameters in one pipeline call: a list of prompts with one
seeded generator each, so a candidate's latents depend on its own seed only. The pipeline
runs on that one thread, so the event loop never waits for it and calls on one pipeline
never overlap (its scheduler holds per-call state).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import io
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ...errors import BeamkitError, ErrorCode, InvalidRequest, ProviderError
from ..base import GeneratedImage
from .local import free_memory, pick_device, pick_dtype

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineKey:
    """What decides which weights are loaded where: jobs that agree on it share one pipeline."""

    model: str
    device: str
    dtype: str
    variant: str | None = None
    offload: str = "none"


@dataclass(frozen=True)
class CallParams:
    """What one pipeline call is made with; only requests with equal params are batched."""

    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str = ""
    scheduler: str | None = None
    batch_size: int = 1


@dataclass(eq=False)
class Request:
    prompt: str
    seed: int
    params: CallParams
    future: concurrent.futures.Future[GeneratedImage] = field(default_factory=concurrent.futures.Future)
    #: set from the event loop when the caller was cancelled; read by the worker between steps
    abandoned: bool = False


class Renderer:
    """A pipeline loaded on first use, rendered by one worker thread, closed by :meth:`close`."""

    def __init__(self, key: PipelineKey) -> None:
        self.key = key
        self.pipe: Any = None
        self.device = self.key.device  # resolved ("auto" -> cuda, mps or cpu) when the pipeline loads
        self.calls = 0  # pipeline calls made (one per batch)
        self._load_error: BeamkitError | None = None
        self._base_scheduler: Any = None
        self._schedulers: dict[str | None, Any] = {}
        self._takes: set[str] = set()  # the parameter names of the pipeline's __call__ ("*": any)
        self._queue: list[Request] = []
        self._cond = threading.Condition()
        self._closed = False
        self._staged: dict[asyncio.AbstractEventLoop, list[Request]] = {}
        self._thread = threading.Thread(target=self._work, name=f"beamkit diffusers {key.model}", daemon=True)
        self._thread.start()

    # -- the event-loop side --------------------------------------------------------------------

    async def generate(self, prompt: str, seed: int, params: CallParams) -> GeneratedImage:
        request = Request(prompt, seed, params)
        self._stage(request)
        try:
            return await asyncio.wrap_future(request.future)
        except asyncio.CancelledError:
            request.abandoned = True
            with self._cond:
                if request in self._queue:
                    self._queue.remove(request)
            raise

    def _stage(self, request: Request) -> None:
        """Hold the request until this loop turn ends, so calls started together wait together."""
        if self._closed:
            raise ProviderError("the diffusers pipeline was closed", ErrorCode.PROVIDER_ERROR)
        loop = asyncio.get_running_loop()
        staged = self._staged.setdefault(loop, [])
        if not staged:
            loop.call_soon(self._flush, loop)
        staged.append(request)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        requests = [r for r in self._staged.pop(loop, []) if not r.abandoned]
        with self._cond:
            if not self._closed:
                self._queue.extend(requests)
                self._cond.notify()
                return
        for r in requests:  # closed between staging and now: no worker will take them
            if r.future.set_running_or_notify_cancel():
                r.future.set_exception(ProviderError("the diffusers pipeline was closed"))

    @property
    def failed(self) -> bool:
        """Whether its pipeline could not be loaded (every call to it fails at once)."""
        return self._load_error is not None

    def close(self, wait: bool = True) -> None:
        """Stop the worker (after the batch it is rendering), fail what still waits, drop the weights."""
        with self._cond:
            self._closed = True
            waiting, self._queue = self._queue, []
            self._cond.notify()
        for request in waiting:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(ProviderError("the diffusers pipeline was closed"))
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()
        self.pipe = self._base_scheduler = None
        self._schedulers.clear()
        if wait:  # a renderer dropped without waiting never loaded anything worth collecting
            free_memory()

    # -- the worker thread -------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                batch = self._take()
            if batch:
                self._render(batch)

    def _take(self) -> list[Request]:
        """The oldest request and up to ``batch_size - 1`` later ones with the same params."""
        first = self._queue[0]
        size = first.params.batch_size
        batch = [r for r in self._queue if r.params == first.params][:size]
        for r in batch:
            self._queue.remove(r)
        return [r for r in batch if r.future.set_running_or_notify_cancel()]

    def _render(self, batch: list[Request]) -> None:
        started = time.monotonic()
        try:
            pipe = self._pipeline()
            images, steps = self._call(pipe, batch)
        except (Exception, asyncio.CancelledError) as exc:  # every waiting caller must hear about it
            error = exc if isinstance(exc, BeamkitError) else _as_provider_error(exc, self.key.model)
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(error)
            return
        seconds = round(time.monotonic() - started, 3)
        for r, image in zip(batch, images):
            meta = {
                "model": self.key.model, "steps": steps, "width": image.width, "height": image.height,
                "size": f"{image.width}x{image.height}", "seed": r.seed, "scheduler": type(pipe.scheduler).__name__,
                "batch": len(batch), "device": self.device, "seconds": seconds,
            }
            if r.params.guidance is not None:
                meta["guidance"] = r.params.guidance
            try:
                r.future.set_result(GeneratedImage(png=_png(image, r.prompt, r.seed, self.key.model, steps), metadata=meta))
            except Exception as exc:  # noqa: BLE001 - a picture that cannot be encoded fails its candidate only
                r.future.set_exception(ProviderError(f"could not encode the picture: {exc}"))

    def _pipeline(self) -> Any:
        if self.pipe is not None:
            return self.pipe
        if self._load_error is not None:
            raise self._load_error
        try:
            self.pipe = load_pipeline(self.key)
        except BeamkitError as exc:
            self._load_error = exc
            raise
        except Exception as exc:
            # a model that cannot be loaded will not load for the next candidate either: end the job
            self._load_error = BeamkitError(
                f"could not load the diffusers pipeline {self.key.model!r}: {type(exc).__name__}: {exc}",
                ErrorCode.PROVIDER_ERROR, fatal=True,
            )
            raise self._load_error from exc
        self._base_scheduler = self.pipe.scheduler
        params = inspect.signature(self.pipe.__call__).parameters.values()
        self._takes = {p.name for p in params} | ({"*"} if any(p.kind is p.VAR_KEYWORD for p in params) else set())
        self.device = pick_device(self.key.device)
        return self.pipe

    def _scheduler(self, pipe: Any, name: str | None) -> Any:
        if name not in self._schedulers:
            if name is None:
                self._schedulers[name] = self._base_scheduler
            else:
                import diffusers

                cls = getattr(diffusers, name, None)
                if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
                    raise InvalidRequest(f"setting 'scheduler': diffusers has no scheduler class {name!r}", "scheduler")
                self._schedulers[name] = cls.from_config(self._base_scheduler.config)
        return self._schedulers[name]

    def _accepts(self, name: str) -> bool:
        return name in self._takes or "*" in self._takes

    def _call(self, pipe: Any, batch: list[Request]) -> tuple[list[Any], int]:
        import torch

        p = batch[0].params
        pipe.scheduler = self._scheduler(pipe, p.scheduler)
        steps_done = 0

        def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal steps_done
            steps_done = step + 1
            if all(r.abandoned for r in batch):
                pipeline._interrupt = True  # the pipeline skips its remaining steps
            return tensors

        if p.negative_prompt and not self._accepts("negative_prompt"):
            raise InvalidRequest(f"setting 'negative_prompt': {type(pipe).__name__} takes no negative prompt",
                                 "negative_prompt")
        kwargs: dict[str, Any] = {
            "prompt": [r.prompt for r in batch],
            "num_images_per_prompt": 1,
            # CPU generators give the same latents whatever device the pipeline runs on
            "generator": [torch.Generator("cpu").manual_seed(r.seed) for r in batch],
        }
        optional = {
            "num_inference_steps": p.steps, "guidance_scale": p.guidance, "width": p.width, "height": p.height,
            "negative_prompt": [p.negative_prompt] * len(batch) if p.negative_prompt else None,
            # the few pipelines without it cannot stop between steps; they finish the batch instead
            "callback_on_step_end": on_step_end if self._accepts("callback_on_step_end") else None,
        }
        kwargs.update({k: v for k, v in optional.items() if v is not None})
        self.calls += 1
        with torch.inference_mode():
            out = pipe(**kwargs)
        if all(r.abandoned for r in batch):
            raise asyncio.CancelledError()
        return list(out.images), p.steps or steps_done


def load_pipeline(key: PipelineKey) -> Any:
    """``AutoPipelineForText2Image.from_pretrained`` on a model id or a local folder, placed on its device."""
    import torch
    from diffusers import AutoPipelineForText2Image

    device = pick_device(key.device)
    dtype = pick_dtype(key.dtype, device)
    kwargs: dict[str, Any] = dtype_kwargs(dtype)
    if key.variant:
        kwargs["variant"] = key.variant
    log.info("loading diffusers pipeline %s on %s (%s)", key.model, device, dtype)
    pipe = AutoPipelineForText2Image.from_pretrained(key.model, **kwargs)
    if key.offload == "model":
        pipe.enable_model_cpu_offload(device=torch.device(device))
    elif key.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=torch.device(device))
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def dtype_kwargs(dtype: Any) -> dict[str, Any]:
    """``from_pretrained``'s dtype argument: diffusers took ``torch_dtype`` and now takes ``dtype``."""
    from diffusers.pipelines import pipeline_utils

    # _resolve_dtype came with the ``dtype`` argument; older releases know only ``torch_dtype``
    return {"dtype": dtype} if hasattr(pipeline_utils, "_resolve_dtype") else {"torch_dtype": dtype}


def _png(image: Any, prompt: str, seed: int, model: str, steps: int) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    # iTXt: a prompt may hold any character, which tEXt (Latin-1) cannot
    info.add_itxt("prompt", prompt)
    info.add_text("seed", str(seed))
    info.add_text("model", model)
    info.add_text("steps", str(steps))
    info.add_text("Software", "beamkit diffusers")
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _as_provider_error(exc: BaseException, model: str) -> BaseException:
    if isinstance(exc, asyncio.CancelledError):
        return exc
    name = type(exc).__name__
    if "OutOfMemory" in name:
        return ProviderError(f"the diffusers pipeline {model!r} ran out of accelerator memory: {exc} "
                             "(lower batch_size, width/height, or use offload=model)")
    return ProviderError(f"the diffusers pipeline {model!r} failed: {name}: {exc}")
