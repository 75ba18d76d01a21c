"""Learned scorers for the vision role: ``clip``, ``pickscore``, ``laion-aesthetic``, ``imagereward``
and the ``ensemble`` that combines them.

``pip install beamkit[scorers]`` (ImageReward: ``beamkit[imagereward]``). Each scorer alone is
a vision provider whose one measure gives both scores; the ensemble takes scorers for
alignment and for aesthetics (``{"alignment": "clip", "aesthetic": "laion-aesthetic"}``, or
lists, averaged). Models load from a Hugging Face id or a local folder on the first picture,
once per process, shared by jobs and scorers (one CLIP serves CLIPScore and the aesthetic
head), and are freed by the provider's ``close``. docs/local-models.md has the calibrations.

This module imports neither torch nor transformers, so the registry can list the scorers and
say what to install in a process that has neither.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from ...errors import InvalidRequest
from ..base import Limit, Provider, RoleHandle, RoleOptions, Setting
from ..diffusers.local import DTYPES, check_device, fill
from .measure import Scorer

__all__ = [
    "ClipProvider", "PickScoreProvider", "AestheticProvider", "ImageRewardProvider", "EnsembleProvider", "SCORERS",
]

CLIP_MODEL = "openai/clip-vit-large-patch14"


def _device_settings(prefix: str) -> tuple[Setting, ...]:
    return (
        Setting("device", str, "auto", env=tuple(dict.fromkeys((f"BEAMKIT_{prefix}_DEVICE", "BEAMKIT_SCORERS_DEVICE"))),
                help="auto (cuda, then mps, then cpu), cpu, mps, cuda or cuda:N"),
        Setting("dtype", str, "auto", choices=DTYPES, help="auto: float16 on an accelerator, float32 on the CPU"),
    )


class ScorerProvider(Provider):
    """A vision provider of one scorer, whose measure gives both scores."""

    roles = ("vision",)
    extra = "scorers"
    requires = ("torch", "transformers")
    #: how the ensemble's analysis names what this scorer measures
    measures: ClassVar[str] = ""

    def scorer(self, s: Mapping[str, Any]) -> Scorer:
        """The scorer for filled-in settings ``s`` (light: models load on the first picture)."""
        raise NotImplementedError

    def create(self, role: str, options: RoleOptions) -> RoleHandle:
        if role != "vision":
            raise InvalidRequest(f"provider '{self.name}' offers the vision role only, not '{role}'", "providers")
        from .ensemble import ScoreVision
        from .models import MODELS

        MODELS.forget_failures()
        scorer = self.scorer(fill(self.settings, options.settings, self.name))
        return self.handle(ScoreVision([scorer], [scorer]), {"scorer": self.name})

    def handle(self, vision: Any, info: dict[str, Any]) -> RoleHandle:
        return RoleHandle(
            impl=vision, limit=Limit(concurrency=8), limit_key=f"scorers:{self.name}", usage=vision.usage,
            # the first picture loads the models
            call_timeout=None, info=info,
        )

    async def close(self) -> None:
        """Free every scorer model of the process (they are shared, so another scorer that still
        runs loads its own again on its next picture)."""
        from .models import MODELS

        MODELS.clear()


def _clip_spec(s: Mapping[str, Any], model_setting: str = "model") -> Any:
    from .clip import ClipSpec

    return ClipSpec(s[model_setting], s.get("processor"), check_device(s["device"]), s["dtype"])


class ClipProvider(ScorerProvider):
    name = "clip"
    description = "CLIPScore: cosine of CLIP picture and prompt embeddings, w * max(cos, 0) with w = 2.5, as 0-100 alignment."
    measures = "alignment"
    settings = (
        Setting("model", str, CLIP_MODEL, env=("BEAMKIT_CLIP_MODEL",), help="a CLIP checkpoint id or local folder"),
        Setting("processor", str, None, nullable=True, help="where the processor is, when the checkpoint has none (unset: the model)"),
        Setting("weight", float, 2.5, minimum=0.0, help="CLIPScore's w: alignment = 100 * min(1, w * max(cosine, 0))"),
        *_device_settings("CLIP"),
    )

    def scorer(self, s: Mapping[str, Any]) -> Scorer:
        from .clip import ClipScorer

        label = "PickScore" if self.name == "pickscore" else "CLIPScore"
        return ClipScorer(_clip_spec(s), s["weight"], name=self.name, label=label)


class PickScoreProvider(ClipProvider):
    """PickScore (Kirstain et al., 2023) is a CLIP-H fine-tuned on human picks: CLIPScore's code, its checkpoint."""

    name = "pickscore"
    description = "PickScore: CLIPScore's code with the PickScore_v1 checkpoint (a CLIP-H fine-tuned on human preferences)."
    settings = (
        Setting("model", str, "yuvalkirstain/PickScore_v1", env=("BEAMKIT_PICKSCORE_MODEL",), help="the PickScore checkpoint"),
        Setting("processor", str, "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", nullable=True,
                help="PickScore ships no processor: that of the CLIP-H it was tuned from"),
        Setting("weight", float, 2.5, minimum=0.0, help="alignment = 100 * min(1, w * max(cosine, 0))"),
        *_device_settings("PICKSCORE"),
    )


class AestheticProvider(ScorerProvider):
    name = "laion-aesthetic"
    description = "The LAION aesthetic predictor: an MLP head over CLIP ViT-L/14 picture embeddings, rating 0-10."
    measures = "aesthetic"
    settings = (
        Setting("head", str, "camenduru/improved-aesthetic-predictor/sac+logos+ava1-l14-linearMSE.pth",
                env=("BEAMKIT_AESTHETIC_HEAD",), help="the head's weights: a local .pth/.safetensors file or owner/repo/filename"),
        Setting("clip_model", str, CLIP_MODEL, env=("BEAMKIT_AESTHETIC_CLIP_MODEL",),
                help="the CLIP whose picture embeddings the head was fitted on"),
        Setting("processor", str, None, nullable=True, help="where the processor is (unset: clip_model)"),
        *_device_settings("AESTHETIC"),
    )

    def scorer(self, s: Mapping[str, Any]) -> Scorer:
        from .aesthetic import AestheticScorer, HeadSpec

        return AestheticScorer(_clip_spec(s, "clip_model"), HeadSpec(s["head"]), name=self.name)


class ImageRewardProvider(ScorerProvider):
    name = "imagereward"
    description = "ImageReward: a BLIP reward model of human preference (its own package; needs a local checkpoint)."
    measures = "preference"
    extra = "imagereward"
    requires = ("torch", "ImageReward")
    settings = (
        Setting("model", str, "ImageReward-v1.0", env=("BEAMKIT_IMAGEREWARD_MODEL",),
                help="a local ImageReward.pt, or ImageReward-v1.0 for the package to download"),
        Setting("med_config", str, None, nullable=True, env=("BEAMKIT_IMAGEREWARD_MED_CONFIG",),
                help="the local med_config.json beside the checkpoint (unset: the package downloads it)"),
        Setting("device", str, "auto", env=("BEAMKIT_IMAGEREWARD_DEVICE", "BEAMKIT_SCORERS_DEVICE"),
                help="auto (cuda, then mps, then cpu), cpu, mps, cuda or cuda:N"),
    )

    def scorer(self, s: Mapping[str, Any]) -> Scorer:
        from .imagereward import ImageRewardScorer, ImageRewardSpec

        spec = ImageRewardSpec(s["model"], s["med_config"], check_device(s["device"]))
        spec.check()
        return ImageRewardScorer(spec, name=self.name)


#: the scorers an ensemble can name
SCORERS: dict[str, type[ScorerProvider]] = {
    p.name: p for p in (ClipProvider, PickScoreProvider, AestheticProvider, ImageRewardProvider)
}


class EnsembleProvider(ScorerProvider):
    name = "ensemble"
    description = "Learned scorers combined: some for alignment, some for aesthetics, each part averaged."
    settings = (
        Setting("alignment", list, ["clip"], help=f"scorers averaged for alignment: {', '.join(SCORERS)}"),
        Setting("aesthetic", list, ["laion-aesthetic"], help="scorers averaged for aesthetics"),
        Setting("scorers", dict, {}, help='settings per scorer, e.g. {"clip": {"model": "openai/clip-vit-base-patch32"}}'),
        *_device_settings("SCORERS"),
    )

    def create(self, role: str, options: RoleOptions) -> RoleHandle:
        if role != "vision":
            raise InvalidRequest(f"provider 'ensemble' offers the vision role only, not '{role}'", "providers")
        from .ensemble import ScoreVision
        from .models import MODELS

        MODELS.forget_failures()
        s = fill(self.settings, options.settings, self.name)
        extra = s["scorers"]
        for name in extra:
            if name not in SCORERS:
                raise InvalidRequest(f"setting 'scorers' names an unknown scorer '{name}' (known: {', '.join(SCORERS)})", "scorers")
        built: dict[str, Scorer] = {}
        parts: dict[str, list[Scorer]] = {}
        for part in ("alignment", "aesthetic"):
            names = [str(n) for n in s[part]]
            if not names:
                raise InvalidRequest(f"setting '{part}' must name at least one scorer", part)
            for name in names:
                if name not in SCORERS:
                    raise InvalidRequest(f"setting '{part}' names an unknown scorer '{name}' (known: {', '.join(SCORERS)})", part)
                if name not in built:
                    built[name] = self._part(name, s, extra.get(name) or {})
            parts[part] = [built[n] for n in names]
        vision = ScoreVision(parts["alignment"], parts["aesthetic"])
        return self.handle(vision, {"alignment": [x.name for x in parts["alignment"]], "aesthetic": [x.name for x in parts["aesthetic"]]})

    def _part(self, name: str, s: Mapping[str, Any], own: Any) -> Scorer:
        cls = SCORERS[name]
        provider = cls()
        if not isinstance(own, Mapping):
            raise InvalidRequest(f"setting 'scorers.{name}' must be an object", "scorers")
        declared = {d.name for d in cls.settings}
        for key in own:
            if key not in declared:
                raise InvalidRequest(f"setting 'scorers.{name}.{key}' is not a setting of {name} "
                                     f"(its settings: {', '.join(sorted(declared))})", "scorers")
        missing = provider.unavailable()
        if missing:
            raise InvalidRequest(f"scorer '{name}' is not available: {missing}; pip install beamkit[{cls.extra}]", "scorers")
        given: dict[str, Any] = {}
        for d in cls.settings:
            env = next((os.environ[v] for v in d.env if os.environ.get(v)), None)
            if d.name in own:
                given[d.name] = own[d.name]
            elif d.name in ("device", "dtype") and s.get(d.name) not in (None, "auto"):
                given[d.name] = s[d.name]
            elif env is not None:
                given[d.name] = env
        return provider.scorer(fill(cls.settings, given, f"ensemble scorer '{name}'"))
