"""The local-model providers with tiny random-weight models on the CPU: the diffusers image
provider (sizes, seeds, batching, cancel, sharing, a full job) and the learned scorers
(CLIPScore, the LAION aesthetic head, ImageReward up to its loading boundary, the ensemble).

The models come from tests/tiny_models.py, built once per session and loaded through the same
``from_pretrained`` path a real checkpoint takes. CI installs the extras (scripts/setup.sh),
so there these tests run; elsewhere they are skipped when torch or diffusers is missing.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

# the tiny models are local folders; never ask the Hub about anything
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

if not os.environ.get("CI"):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tiny_models import build_aesthetic_head, build_clip, build_pipeline  # noqa: E402

import beamkit  # noqa: E402
from beamkit.errors import BeamkitError, InvalidRequest  # noqa: E402
from beamkit.providers import registry  # noqa: E402
from beamkit.providers.base import RoleOptions  # noqa: E402
from beamkit.providers.diffusers import DiffusersProvider  # noqa: E402
from beamkit.providers.scorers import AestheticProvider, ClipProvider, EnsembleProvider, ImageRewardProvider  # noqa: E402
from beamkit.providers.scorers.models import MODELS  # noqa: E402

SIZE = {"width": 96, "height": 64}
# one intra-op thread: on a machine whose cores are shared, torch's thread pool spinning
# against other processes made a tiny pipeline call ten times slower
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "pipeline": str(build_pipeline(root / "pipeline")),
        "clip": str(build_clip(root / "clip")),
        "head": str(build_aesthetic_head(root / "aesthetic-head.pth")),
    }


def image_role(provider: DiffusersProvider, tiny: dict[str, str], **settings: Any) -> Any:
    given = {"model": tiny["pipeline"], "device": "cpu", "steps": 2, **SIZE, **settings}
    return provider.create("image", RoleOptions("image", settings=given)).impl


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


class CallCounter:
    """Wraps the real pipeline class's ``__call__`` (Python looks it up on the type) and records each call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from diffusers import StableDiffusionPipeline

        self.batches: list[int] = []
        self.kwargs: list[dict[str, Any]] = []
        self.done = threading.Event()
        real = StableDiffusionPipeline.__call__
        counter = self

        @functools.wraps(real)
        def counted(pipe: Any, *args: Any, **kwargs: Any) -> Any:
            counter.batches.append(len(kwargs["prompt"]))
            counter.kwargs.append(kwargs)
            try:
                return real(pipe, *args, **kwargs)
            finally:
                counter.done.set()

        monkeypatch.setattr(StableDiffusionPipeline, "__call__", counted)


# -- the diffusers image provider ------------------------------------------------------------


@pytest.mark.asyncio
async def test_pictures_have_the_configured_size_and_carry_their_prompt(tiny: dict[str, str]) -> None:
    provider = DiffusersProvider()
    try:
        role = image_role(provider, tiny)
        prompts = ["a red fox", "a blue whale", "a café at night"]
        images = await asyncio.gather(*(role.generate(p, seed=i) for i, p in enumerate(prompts)))
        assert len(images) == 3
        for i, (prompt, image) in enumerate(zip(prompts, images)):
            picture = Image.open(io.BytesIO(image.png))
            assert picture.format == "PNG" and picture.size == (96, 64)
            assert picture.info["prompt"] == prompt and picture.info["seed"] == str(i)
            meta = image.metadata
            assert meta["model"] == tiny["pipeline"] and meta["steps"] == 2 and meta["seed"] == i
            assert meta["size"] == "96x64" and meta["device"] == "cpu"
    finally:
        await provider.close()


@pytest.mark.asyncio
async def test_the_same_seed_gives_the_same_pixels_and_another_seed_others(tiny: dict[str, str]) -> None:
    provider = DiffusersProvider()
    try:
        role = image_role(provider, tiny)
        first = pixels((await role.generate("a red fox", seed=7)).png)
        again = pixels((await role.generate("a red fox", seed=7)).png)
        other = pixels((await role.generate("a red fox", seed=8)).png)
        assert np.array_equal(first, again)
        assert np.abs(first - other).mean() > 5
    finally:
        await provider.close()


@pytest.mark.asyncio
async def test_candidates_that_wait_together_render_in_one_pipeline_call(
        tiny: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    counter = CallCounter(monkeypatch)
    provider = DiffusersProvider()
    try:
        role = image_role(provider, tiny, batch_size=4)
        ab = await asyncio.gather(role.generate("a red fox", seed=1), role.generate("a blue whale", seed=2))
        ba = await asyncio.gather(role.generate("a blue whale", seed=2), role.generate("a red fox", seed=1))
        assert counter.batches == [2, 2]
        # each candidate has its own generator: its pixels do not depend on its place in the batch
        assert np.array_equal(pixels(ab[0].png), pixels(ba[1].png))
        assert np.array_equal(pixels(ab[1].png), pixels(ba[0].png))

        counter.batches.clear()
        four = await asyncio.gather(*(role.generate(f"fox number {i}", seed=i) for i in range(4)))
        assert counter.batches == [4] and all(im.metadata["batch"] == 4 for im in four)

        counter.batches.clear()
        small = image_role(provider, tiny, batch_size=2)
        five = await asyncio.gather(*(small.generate(f"fox number {i}", seed=i) for i in range(5)))
        assert counter.batches == [2, 2, 1] and len(five) == 5
        # both jobs' roles share one pipeline: batch size and steps are per call, not per load
        assert len(provider.loaded()) == 1
    finally:
        await provider.close()


@pytest.mark.asyncio
async def test_a_cancelled_call_stops_the_pipeline_between_steps(
        tiny: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    counter = CallCounter(monkeypatch)
    provider = DiffusersProvider()
    gate = threading.Event()
    try:
        role = image_role(provider, tiny, steps=10)
        await role.generate("warm up", seed=0)  # loads the pipeline
        pipe = provider.renderer(role._key).pipe
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        unet_calls = 0
        forward = pipe.unet.forward

        def held_forward(*args: Any, **kwargs: Any) -> Any:
            nonlocal unet_calls
            unet_calls += 1
            if unet_calls == 1:
                loop.call_soon_threadsafe(started.set)
                gate.wait(60)  # the first step waits until the test has cancelled the call
            return forward(*args, **kwargs)

        monkeypatch.setattr(pipe.unet, "forward", held_forward)
        counter.done.clear()
        task = asyncio.create_task(role.generate("a red fox", seed=1))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        assert await asyncio.to_thread(counter.done.wait, 60)
        assert unet_calls == 1  # the step in flight finished; the other 9 never ran

        unet_calls = 0
        after = await role.generate("a red fox", seed=1)  # the interrupt flag does not outlive its call
        assert unet_calls == 10 and after.metadata["steps"] == 10
    finally:
        gate.set()
        await provider.close()


@pytest.mark.asyncio
async def test_close_frees_the_pipeline_and_stops_its_worker(tiny: dict[str, str]) -> None:
    provider = DiffusersProvider()
    role = image_role(provider, tiny)
    await role.generate("a red fox", seed=1)
    renderer = provider.renderer(role._key)
    assert renderer.pipe is not None and renderer._thread.is_alive()
    await provider.close()
    assert provider.loaded() == [] and renderer.pipe is None and not renderer._thread.is_alive()
    # a later job loads it again
    again = await role.generate("a red fox", seed=1)
    assert again.metadata["size"] == "96x64"
    await provider.close()


@pytest.mark.asyncio
async def test_scheduler_guidance_and_negative_prompt_reach_the_pipeline(
        tiny: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    counter = CallCounter(monkeypatch)
    provider = DiffusersProvider()
    try:
        euler = image_role(provider, tiny, scheduler="EulerDiscreteScheduler", guidance=3.0, negative_prompt="blurry")
        plain = image_role(provider, tiny)
        meta = (await euler.generate("a fox", seed=1)).metadata
        assert meta["scheduler"] == "EulerDiscreteScheduler" and meta["guidance"] == 3.0
        assert counter.kwargs[-1]["negative_prompt"] == ["blurry"] and counter.kwargs[-1]["guidance_scale"] == 3.0
        assert (await plain.generate("a fox", seed=1)).metadata["scheduler"] == "DDIMScheduler"
        assert "negative_prompt" not in counter.kwargs[-1] and "guidance_scale" not in counter.kwargs[-1]
        unknown = image_role(provider, tiny, scheduler="NoSuchScheduler")
        with pytest.raises(InvalidRequest, match="NoSuchScheduler"):
            await unknown.generate("a fox", seed=1)
    finally:
        await provider.close()


@pytest.mark.parametrize("settings, field", [
    ({"width": 100}, "width"),
    ({"device": "gpu"}, "device"),
    ({"batch_size": 0}, "batch_size"),
    ({"dtype": "float8"}, "dtype"),
    ({"scheduler": "euler"}, "scheduler"),
])
def test_bad_image_settings_are_invalid_requests(tiny: dict[str, str], settings: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        image_role(DiffusersProvider(), tiny, **settings)
    assert caught.value.field == field


@pytest.mark.asyncio
async def test_a_model_that_cannot_load_ends_the_job_and_the_next_job_tries_again(
        tiny: dict[str, str], tmp_path: Path) -> None:
    provider = DiffusersProvider()
    folder = tmp_path / "model"
    settings = {"model": str(folder), "device": "cpu", "steps": 2, **SIZE}
    try:
        role = provider.create("image", RoleOptions("image", settings=settings)).impl
        with pytest.raises(BeamkitError) as first:
            await role.generate("a fox", seed=1)
        assert first.value.fatal and first.value.code == "PROVIDER_ERROR" and str(folder) in first.value.message
        with pytest.raises(BeamkitError) as second:  # the same job's candidates do not each load it again
            await role.generate("a fox", seed=2)
        assert second.value is first.value

        shutil.copytree(tiny["pipeline"], folder)  # the model is there now
        later = provider.create("image", RoleOptions("image", settings=settings)).impl
        assert (await later.generate("a fox", seed=1)).metadata["size"] == "96x64"
    finally:
        await provider.close()


# -- scorers -------------------------------------------------------------------------------------


def png_of(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 64), color).save(buf, "PNG")
    return buf.getvalue()


def reference_cosine(folder: str, png: bytes, text: str) -> float:
    """CLIP's own forward pass (logits / logit scale), independent of the scorer's code path."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    inputs = processor(text=[text], images=[Image.open(io.BytesIO(png)).convert("RGB")], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
        return float(out.logits_per_image[0, 0] / model.logit_scale.exp())


@pytest.mark.asyncio
async def test_clipscore_is_the_calibrated_cosine(tiny: dict[str, str]) -> None:
    provider = ClipProvider()
    try:
        vision = provider.create("vision", RoleOptions("vision", settings={"model": tiny["clip"], "weight": 20.0})).impl
        png = png_of((200, 40, 30))
        seen = set()
        for text in ("a red square", "the cat of the night"):
            result = await vision.analyze(png, text, seed=0)
            cos = reference_cosine(tiny["clip"], png, text)
            seen.add(round(cos, 4))
            assert result.alignment_score == pytest.approx(100 * min(1.0, 20.0 * max(cos, 0.0)), abs=0.02)
            assert 0 <= result.alignment_score <= 100
            assert result.aesthetic_score == pytest.approx(result.alignment_score / 10, abs=0.002)
            assert "CLIPScore" in result.analysis and f"cosine {cos:.3f}" in result.analysis
        assert len(seen) == 2  # the prompt matters
    finally:
        await provider.close()


@pytest.mark.asyncio
async def test_the_laion_head_rates_unit_clip_embeddings(tiny: dict[str, str]) -> None:
    from transformers import CLIPImageProcessor, CLIPModel

    provider = AestheticProvider()
    try:
        settings = {"clip_model": tiny["clip"], "head": tiny["head"]}
        vision = provider.create("vision", RoleOptions("vision", settings=settings)).impl
        png = png_of((30, 90, 200))
        result = await vision.analyze(png, "anything", seed=0)

        model = CLIPModel.from_pretrained(tiny["clip"]).eval()
        pixels_in = CLIPImageProcessor.from_pretrained(tiny["clip"])(images=[Image.open(io.BytesIO(png)).convert("RGB")],
                                                                      return_tensors="pt")
        state = torch.load(tiny["head"], weights_only=True)
        with torch.no_grad():
            out = model.get_image_features(**pixels_in)
            emb = out if isinstance(out, torch.Tensor) else out.pooler_output
            x = emb / emb.norm(dim=-1, keepdim=True)
            for i in (0, 2, 4, 6, 7):  # the head has no activations: Linear layers in a row
                x = x @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
        expected = max(0.0, min(10.0, float(x[0, 0])))
        assert 0 <= result.aesthetic_score <= 10
        assert result.aesthetic_score == pytest.approx(expected, abs=0.002)
        assert "LAION aesthetic" in result.analysis
    finally:
        await provider.close()


def ensemble_settings(tiny: dict[str, str], **parts: Any) -> dict[str, Any]:
    return {
        **parts,
        "device": "cpu",
        "scorers": {
            "clip": {"model": tiny["clip"], "weight": 10.0},
            "pickscore": {"model": tiny["clip"], "processor": None, "weight": 40.0},
            "laion-aesthetic": {"clip_model": tiny["clip"], "head": tiny["head"]},
        },
    }


@pytest.mark.asyncio
async def test_the_ensemble_averages_its_parts_and_names_them(tiny: dict[str, str]) -> None:
    provider = EnsembleProvider()
    try:
        settings = ensemble_settings(tiny, alignment=["clip", "pickscore"], aesthetic="laion-aesthetic")
        vision = provider.create("vision", RoleOptions("vision", settings=settings)).impl
        png, text = png_of((250, 200, 20)), "a yellow field"
        result = await vision.analyze(png, text, seed=0)

        cos = reference_cosine(tiny["clip"], png, text)
        clip_part, pick_part = min(1.0, 10 * max(cos, 0.0)), min(1.0, 40 * max(cos, 0.0))
        assert result.alignment_score == pytest.approx(100 * (clip_part + pick_part) / 2, abs=0.02)
        alone = AestheticProvider().create("vision", RoleOptions("vision", settings=settings["scorers"]["laion-aesthetic"]))
        assert result.aesthetic_score == pytest.approx((await alone.impl.analyze(png, text, seed=0)).aesthetic_score, abs=0.002)
        for words in ("Alignment", "the mean of", "clip = CLIPScore", "pickscore = PickScore", "Aesthetics",
                      "laion-aesthetic = LAION aesthetic predictor"):
            assert words in result.analysis
        # one CLIP in memory serves CLIPScore, PickScore's preset (pointed at the same folder) and the head
        clips = [k for k in MODELS.keys() if isinstance(k, tuple) and k[0] == "clip" and k[1] == tiny["clip"]]
        assert len(clips) == 1
    finally:
        await provider.close()


@pytest.mark.parametrize("settings, field", [
    ({"alignment": ["nope"]}, "alignment"),
    ({"aesthetic": []}, "aesthetic"),
    ({"scorers": {"nope": {}}}, "scorers"),
    ({"scorers": {"clip": {"modle": "x"}}}, "scorers"),
    ({"scorers": {"clip": {"weight": "heavy"}}}, "weight"),
])
def test_bad_ensemble_settings_are_invalid_requests(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        EnsembleProvider().create("vision", RoleOptions("vision", settings=settings))
    assert caught.value.field == field


STAND_IN = '''
"""A stand-in for the image-reward package: its load() and score() signatures, nothing else."""
calls = []

class Model:
    def score(self, prompt, image):
        calls.append(("score", prompt, image.size))
        return 1.0

def load(name="ImageReward-v1.0", device="cpu", download_root=None, med_config=None):
    calls.append(("load", name, device, med_config))
    return Model()
'''


@pytest.mark.asyncio
async def test_imagereward_up_to_its_loading_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ImageReward's BLIP ViT-L has no small configuration and reads bert-base-uncased from the Hub,
    so a stand-in package takes its place: this checks what beamkit hands it and makes of its reward."""
    provider = ImageRewardProvider()
    assert "ImageReward" in (provider.unavailable() or "")
    with pytest.raises(InvalidRequest) as caught:
        provider.create("vision", RoleOptions("vision", settings={"model": str(tmp_path / "missing.pt")}))
    assert caught.value.field == "model"

    (tmp_path / "pkg" / "ImageReward").mkdir(parents=True)
    (tmp_path / "pkg" / "ImageReward" / "__init__.py").write_text(STAND_IN)
    checkpoint, med = tmp_path / "ImageReward.pt", tmp_path / "med_config.json"
    checkpoint.write_bytes(b"weights")
    med.write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    try:
        assert provider.unavailable() is None
        settings = {"model": str(checkpoint), "med_config": str(med), "device": "cpu"}
        vision = provider.create("vision", RoleOptions("vision", settings=settings)).impl
        result = await vision.analyze(png_of((10, 10, 10)), "a dark room", seed=0)
        stand_in = importlib.import_module("ImageReward")
        assert stand_in.calls == [("load", str(checkpoint), "cpu", str(med)), ("score", "a dark room", (96, 64))]
        assert result.alignment_score == pytest.approx(100 / (1 + math.exp(-1)), abs=0.01)
        assert "ImageReward" in result.analysis and "+1.00" in result.analysis
    finally:
        await provider.close()
        sys.modules.pop("ImageReward", None)


def test_a_missing_extra_leaves_the_providers_listed_with_their_hint() -> None:
    code = '''
import json, sys
sys.modules["torch"] = None  # as if the extras were not installed
from beamkit.providers import registry
rows = {r["name"]: r for r in registry.describe()}
print(json.dumps({n: [rows[n]["available"], rows[n]["install"]] for n in
                  ("diffusers", "clip", "pickscore", "laion-aesthetic", "ensemble", "imagereward", "offline")}))
'''
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    assert rows["diffusers"] == [False, "pip install beamkit[diffusers]"]
    for name in ("clip", "pickscore", "laion-aesthetic", "ensemble"):
        assert rows[name] == [False, "pip install beamkit[scorers]"]
    assert rows["imagereward"] == [False, "pip install beamkit[imagereward]"]
    assert rows["offline"] == [True, None]


# -- a whole job ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_job_with_diffusers_images_and_ensemble_scores(
        tiny: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = CallCounter(monkeypatch)
    try:
        result = await beamkit.search(
            "a red fox in the snow", N=3, M=1, iterations=2, seed=11, output=tmp_path,
            providers={"llm": "offline", "image": "diffusers", "vision": "ensemble"},
            provider_settings={
                "image": {"model": tiny["pipeline"], "device": "cpu", "steps": 2, **SIZE, "batch_size": 3},
                "vision": ensemble_settings(tiny, alignment=["clip"], aesthetic=["laion-aesthetic"]),
            },
        )
    finally:
        await registry.close_all()
    assert result.status == "completed"
    done = [c for c in result.candidates if c.ok]
    assert len(done) == 6
    assert sum(counter.batches) == 6 and max(counter.batches) <= 3
    for c in done:
        assert c.image_path is not None and c.alignment_score is not None and c.aesthetic_score is not None
        path = Path(c.image_path)
        path = path if path.is_absolute() else Path(result.folder or tmp_path) / path
        assert Image.open(path).size == (96, 64)
        assert c.image_metadata["model"] == tiny["pipeline"] and c.image_metadata["steps"] == 2
        assert 0 <= c.alignment_score <= 100 and 0 <= c.aesthetic_score <= 10
        assert "clip = CLIPScore" in c.analysis and "laion-aesthetic" in c.analysis
