"""The provider roles of SPEC section 7, as plain async interfaces.

Every call takes a keyword-only ``seed``: the engine derives one per call from the
job seed, the iteration, the candidate and the operation, so a provider that
honours it is reproducible even though calls finish in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

from ..candidate import Candidate, Dimension


@dataclass
class GeneratedImage:
    png: bytes
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class VisionResult:
    alignment_score: float  # 0..100, against the user's own prompt
    aesthetic_score: float  # 0..10
    analysis: str = ""
    strengths: list[str] = field(default_factory=list)
    weaknesses: list[str] = field(default_factory=list)


@runtime_checkable
class LLM(Protocol):
    async def expand(self, prompt: str, dimension: Dimension, *, seed: int) -> str: ...

    async def refine(self, prompt: str, dimension: Dimension, critique: str, user_prompt: str, *, seed: int) -> str: ...

    async def combine(self, what: str, how: str, *, seed: int) -> str: ...

    async def critique(self, candidate: Candidate, dimension: Dimension, user_prompt: str, *, seed: int) -> str: ...


@runtime_checkable
class ImageModel(Protocol):
    async def generate(self, prompt: str, *, seed: int) -> GeneratedImage: ...


@runtime_checkable
class Vision(Protocol):
    async def analyze(self, image: bytes, user_prompt: str, *, seed: int) -> VisionResult: ...


#: the kinds of provider call; limits, timeouts and usage are kept per kind
KINDS = ("llm", "image", "vision")


@dataclass(frozen=True)
class Limit:
    """How many calls of one kind may be in flight, and how many may start a minute (None: no bound)."""

    concurrency: int | None = None
    per_minute: int | None = None


@dataclass
class ProviderOptions:
    """What a job hands to a provider-set factory."""

    temperature: float = 0.8
    seed: int = 0
    #: extra settings (model names, base URL, a per-request key); never stored or logged
    settings: dict[str, Any] = field(default_factory=dict)


#: Seconds one provider call may take before the engine gives up on it (code TIMEOUT). Generous:
#: a real service that is slow answers well within it; one that hangs costs a candidate, not the job.
DEFAULT_CALL_TIMEOUT = 300.0


@dataclass
class ProviderSet:
    """The three roles a job needs, plus their per-kind limits and a usage counter."""

    name: str
    llm: LLM
    image: ImageModel
    vision: Vision
    limits: dict[str, Limit] = field(default_factory=dict)  # keys: those of KINDS
    usage: Callable[[], dict[str, Any]] = dict  # token/image counts and cost, per model
    aclose: Callable[[], Any] | None = None
    #: the longest one call may run (seconds, waiting for a limit's slot not counted); None: no bound
    call_timeout: float | None = DEFAULT_CALL_TIMEOUT


#: A factory builds a fresh ProviderSet for one job.
ProviderFactory = Callable[[ProviderOptions], ProviderSet]
