"""Provider roles (SPEC section 7), the provider declaration, and the bundle a job's engine gets.

A *provider* offers one or more *roles* (``llm``, ``image``, ``vision``); a job takes each
role from the provider it names, so "LLM and vision from one server, images from another"
is one mapping. A provider declares its settings once (:class:`Setting`); that declaration
drives validation, environment variables, ``beamkit providers``, ``GET /api/providers``
and the docs.

Every role call takes a keyword-only ``seed``: the engine derives one per call from the
job seed, the iteration, the candidate and the operation, so a provider that honours it
is reproducible even though calls finish in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, ClassVar, Literal, Protocol, runtime_checkable

from ..candidate import Candidate, Dimension

Role = Literal["llm", "image", "vision"]
#: the roles a job needs, in the order they are listed and resolved
ROLES: tuple[str, ...] = ("llm", "image", "vision")
#: the kinds of provider call; limits, timeouts and usage are kept per kind (one kind per role)
KINDS = ROLES


@dataclass
class GeneratedImage:
    png: bytes
    #: what the provider says beside the picture (a revised prompt, the model, a seed); kept on the candidate
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


@dataclass(frozen=True)
class Limit:
    """How many calls of one kind may be in flight, and how many may start a minute (None: no bound)."""

    concurrency: int | None = None
    per_minute: int | None = None


#: Seconds one provider call may take before the engine gives up on it (code TIMEOUT). Generous:
#: a real service that is slow answers well within it; one that hangs costs a candidate, not the job.
DEFAULT_CALL_TIMEOUT = 300.0


@dataclass(frozen=True)
class Setting:
    """One declared setting of a provider.

    ``type`` is ``str``, ``int``, ``float``, ``bool``, ``dict`` or ``list``. ``env`` lists
    environment variables read when the job does not give the setting (first set wins).
    A ``secret`` is never stored, logged or shown. ``roles`` limits it to some of the
    provider's roles (empty: every role it offers).
    """

    name: str
    type: type
    default: Any = None
    env: tuple[str, ...] = ()
    secret: bool = False
    help: str = ""
    roles: tuple[str, ...] = ()
    choices: tuple[Any, ...] = ()


@dataclass
class RoleOptions:
    """What a provider gets to build one role for one job."""

    role: str
    temperature: float = 0.8
    seed: int = 0
    #: the provider's declared settings for this role: the job's values, else the environment's, else defaults
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class RoleHandle:
    """One role object for one job, with what the engine needs to drive it."""

    impl: Any  # an LLM, ImageModel or Vision
    limit: Limit = field(default_factory=Limit)
    #: role handles with the same key share one process-wide limiter (default: provider name and role)
    limit_key: str = ""
    #: token/image counts and cost, as {"models": {name: row}, "totalCost", "currency", "unpriced"}
    usage: Callable[[], dict[str, Any]] | None = None
    aclose: Callable[[], Any] | None = None
    #: the longest one call may run (seconds, waiting for a slot not counted); None: no bound
    call_timeout: float | None = DEFAULT_CALL_TIMEOUT
    #: the role's configuration without secrets (models, base URL), for metadata and display
    info: dict[str, Any] = field(default_factory=dict)


class Provider:
    """A provider of one or more roles. Subclass it and register it in the ``beamkit.providers``
    entry-point group (the built-ins are registered the same way).

    ``create`` is called once per job and role, and returns a fresh :class:`RoleHandle`.
    ``open`` runs once per process before the first job uses the provider (load a model
    there, once, shared by jobs); ``close`` runs when the process (server, kernel) closes.
    ``estimate`` may price a role's calls without making them.
    """

    name: ClassVar[str] = ""
    roles: ClassVar[tuple[str, ...]] = ()
    settings: ClassVar[tuple[Setting, ...]] = ()
    description: ClassVar[str] = ""
    #: the optional extra that brings this provider's dependencies: ``pip install beamkit[extra]``
    extra: ClassVar[str | None] = None

    def open(self) -> Awaitable[None] | None:
        return None

    def close(self) -> Awaitable[None] | None:
        return None

    def create(self, role: str, options: RoleOptions) -> RoleHandle:
        raise NotImplementedError

    def estimate(self, role: str, calls: dict[str, int], options: RoleOptions) -> dict[str, Any] | None:
        """Cost of ``calls`` (operation -> count) for ``role``: ``{"cost": dollars, ...}``; None: not priced."""
        return None


# -- the all-three-roles provider set of 0.1, until the registry resolves roles (issue 9) --


@dataclass
class ProviderOptions:
    """What a job hands to a provider-set factory."""

    temperature: float = 0.8
    seed: int = 0
    #: extra settings (model names, base URL, a per-request key); never stored or logged
    settings: dict[str, Any] = field(default_factory=dict)


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
