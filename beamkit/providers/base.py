"""Provider roles (SPEC section 7), the provider declaration, and the bundle a job's engine gets.

A *provider* offers one or more *roles* (``llm``, ``image``, ``vision``, and the optional
``judge``); a job takes each role from the provider it names, so "LLM and vision from one
server, images from another" is one mapping. A provider declares its settings once
(:class:`Setting`); that declaration drives validation, environment variables, ``beamkit
providers``, ``GET /api/providers`` and the docs.

Every role call takes a keyword-only ``seed``: the engine derives one per call from the
job seed, the iteration, the candidate and the operation, so a provider that honours it
is reproducible even though calls finish in any order.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from ..candidate import Candidate, Dimension
from ..errors import InvalidRequest

log = logging.getLogger(__name__)

Role = Literal["llm", "image", "vision", "judge"]
#: the roles a job needs, in the order they are listed and resolved
ROLES: tuple[str, ...] = ("llm", "image", "vision")
#: roles a mapping may name besides: without a ``judge`` the vision role's object compares pictures
OPTIONAL_ROLES: tuple[str, ...] = ("judge",)
#: every role a mapping may name, in the order they are listed and resolved
ALL_ROLES: tuple[str, ...] = ROLES + OPTIONAL_ROLES
#: the kinds of provider call; limits, timeouts and usage are kept per kind (one kind per role)
KINDS = ALL_ROLES


#: the longest provider name a job may give
MAX_NAME = 100


def check_providers(value: Any) -> str | dict[str, str]:
    """A job's ``providers`` as given: a name, or a mapping naming the provider of each role.

    A mapping names each of ``ROLES`` and may name a ``judge`` (the tournament's; absent, the
    vision role's object judges). Raises ``InvalidRequest`` (field ``providers``) for anything
    else, naming a missing or unknown role. Whether the names exist is the registry's business.
    """

    def name(v: Any, what: str) -> str:
        label = f"'providers' {what}".strip()
        if not isinstance(v, str):
            raise InvalidRequest(f"{label} must be a provider name (a string)", "providers")
        v = v.strip()
        if not v or len(v) > MAX_NAME:
            raise InvalidRequest(f"{label} must be 1 to {MAX_NAME} characters", "providers")
        return v

    if isinstance(value, str):
        return name(value, "")
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in ALL_ROLES]
        if unknown:
            raise InvalidRequest(f"'providers' names an unknown role '{unknown[0]}' (the roles are "
                                 f"{listed_roles()})", "providers")
        missing = [r for r in ROLES if r not in value]
        if missing:
            raise InvalidRequest(f"'providers' gives no provider for the {missing[0]} role (name one for each of "
                                 f"{', '.join(ROLES)}, or give one name for all)", "providers")
        return {r: name(value[r], f"for the {r} role") for r in ALL_ROLES if r in value}
    raise InvalidRequest(f"'providers' must be a provider name or an object naming the provider of each role "
                         f"({listed_roles()})", "providers")


def listed_roles() -> str:
    """The roles a mapping names, as messages list them: ``llm, image, vision, judge (optional)``."""
    return ", ".join(ROLES) + "".join(f", {r} (optional)" for r in OPTIONAL_ROLES)


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


@dataclass
class Verdict:
    """A judge's answer: which picture is better for the user's prompt, ``"a"`` (the first) or ``"b"``."""

    winner: Literal["a", "b"]
    reason: str = ""


@runtime_checkable
class Judge(Protocol):
    """Compares two pictures for the user's prompt (``ranking="tournament"``); raises when it cannot tell."""

    async def compare(self, image_a: bytes, image_b: bytes, user_prompt: str, *, seed: int) -> Verdict: ...


@dataclass(frozen=True)
class Limit:
    """How many calls of one kind may be in flight, and how many may start a minute (None: no bound)."""

    concurrency: int | None = None
    per_minute: int | None = None


#: Seconds one provider call may take before the engine gives up on it (code TIMEOUT). Generous:
#: a real service that is slow answers well within it; one that hangs costs a candidate, not the job.
DEFAULT_CALL_TIMEOUT = 300.0


_NONE_WORDS = frozenset({"none", "omit", "null"})
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_KIND_WORDS = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
               dict: "an object", list: "a list"}


@dataclass(frozen=True)
class Setting:
    """One declared setting of a provider.

    ``type`` is ``str``, ``int``, ``float``, ``bool``, ``dict`` or ``list``. ``env`` lists
    environment variables read when the job does not give the setting (first set wins).
    A ``secret`` is never stored, logged or shown. ``roles`` limits it to some of the
    provider's roles (empty: every role it offers). ``header`` names an HTTP request header
    that may carry it (a per-request API key, say): the REST server reads the headers that
    providers declare, and nothing else. ``nullable``: the words ``none``/``omit`` mean "no
    value" (the provider leaves that parameter out) rather than "use the default".
    """

    name: str
    type: type
    default: Any = None
    env: tuple[str, ...] = ()
    secret: bool = False
    help: str = ""
    roles: tuple[str, ...] = ()
    choices: tuple[Any, ...] = ()
    header: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False

    def applies_to(self, role: str) -> bool:
        return not self.roles or role in self.roles

    def parse(self, value: Any, *, field: str | None = None, owner: str = "provider") -> Any:
        """``value`` as this setting's type, or a fatal ``InvalidRequest`` naming it.

        Strings are read as the type (environment variables and ``--set`` give strings):
        ``"30"`` is 30, ``"true"`` is True, ``'{"a": 1}'`` an object. A secret's value is
        never quoted in an error.
        """
        field = field or self.name

        def bad(why: str) -> InvalidRequest:
            shown = "" if self.secret else f", got {value!r}"
            return InvalidRequest(f"{owner} setting '{field}' {why}{shown}", field)

        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            if self.nullable and text.lower() in _NONE_WORDS:
                return None
            if self.type is not str:
                value = _read_text(self.type, text, bad)
            else:
                value = text
        out = _as_type(self.type, value, bad)
        if self.type in (int, float):
            lo, hi = self.minimum, self.maximum
            if lo is not None and out < lo or hi is not None and out > hi:
                span = f"from {_num(lo)} to {_num(hi)}" if lo is not None and hi is not None else (
                    f"at least {_num(lo)}" if lo is not None else f"at most {_num(hi)}")
                raise bad(f"must be {span}")
        if self.choices and out not in self.choices:
            raise bad(f"must be one of {', '.join(map(str, self.choices))}")
        return out

    def describe(self) -> dict[str, Any]:
        """The declaration as JSON values (for ``beamkit providers`` and ``GET /api/providers``)."""
        return {
            "name": self.name,
            "type": self.type.__name__,
            "default": None if self.secret else self.default,
            "env": list(self.env),
            "secret": self.secret,
            "help": self.help,
            "roles": list(self.roles),
            "choices": list(self.choices),
            "header": self.header,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "nullable": self.nullable,
        }


def _num(x: float | None) -> str:
    return f"{x:g}" if x is not None else ""


def _read_text(kind: type, text: str, bad: Callable[[str], Exception]) -> Any:
    if kind is bool:
        if text.lower() in _TRUE_WORDS:
            return True
        if text.lower() in _FALSE_WORDS:
            return False
        raise bad("must be true or false")
    if kind in (int, float):
        try:
            return float(text) if kind is float or not text.lstrip("+-").isdigit() else int(text)
        except ValueError:
            raise bad(f"must be {_KIND_WORDS[kind]}") from None
    if kind in (dict, list):
        try:
            return json.loads(text)
        except ValueError:
            if kind is list:  # "a,b,c" on a command line
                return [part.strip() for part in text.split(",") if part.strip()]
            raise bad("must be a JSON object") from None
    return text


def _as_type(kind: type, value: Any, bad: Callable[[str], Exception]) -> Any:
    if kind is str:
        if not isinstance(value, str):
            raise bad("must be a string")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise bad("must be true or false")
        return value
    if kind in (int, float):
        # bool is an int in Python; a setting's number is never a boolean
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad(f"must be {_KIND_WORDS[kind]}")
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise bad("must be a whole number")
            return int(value)
        return float(value)
    if kind is dict:
        if not isinstance(value, Mapping):
            raise bad("must be an object")
        return dict(value)
    if kind is list:
        if not isinstance(value, (list, tuple)):
            raise bad("must be a list")
        return list(value)
    return value


#: the LLM's sampling temperature when a job names none (``params`` and every role take it from here)
DEFAULT_TEMPERATURE = 0.8


@dataclass
class RoleOptions:
    """What a provider gets to build one role for one job."""

    role: str
    temperature: float = DEFAULT_TEMPERATURE
    seed: int = 0
    #: the user's prompt (an estimate counts its tokens)
    prompt: str = ""
    #: every declared setting of this role: the job's value, else a request header's, else the
    #: server's, else the environment's, else the default (None when there is none)
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

    ``create`` is called once per job and role, when the job is made (check the settings there
    and build light objects), and returns a fresh :class:`RoleHandle`. ``open`` is awaited once
    per process before the first job that uses the provider runs (load a model there, once,
    shared by jobs); ``close`` runs when the process (server, kernel) closes. ``estimate`` may
    price a role's calls without making them.
    """

    name: ClassVar[str] = ""
    roles: ClassVar[tuple[str, ...]] = ()
    settings: ClassVar[tuple[Setting, ...]] = ()
    description: ClassVar[str] = ""
    #: the optional extra that brings this provider's dependencies: ``pip install beamkit[extra]``
    extra: ClassVar[str | None] = None
    #: modules this provider needs; when one is missing it is listed as unavailable, with the extra's hint
    requires: ClassVar[tuple[str, ...]] = ()
    #: older flat setting names and the ``role.name`` they stand for (``{"llm_model": "llm.model"}``)
    aliases: ClassVar[dict[str, str]] = {}

    def unavailable(self) -> str | None:
        """Why this provider cannot run in this process (a missing module), or None."""
        import importlib.util

        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return f"the module '{module}' is not installed"
        return None

    def settings_for(self, role: str) -> tuple[Setting, ...]:
        return tuple(s for s in self.settings if s.applies_to(role))

    def open(self) -> Awaitable[None] | None:
        return None

    def close(self) -> Awaitable[None] | None:
        return None

    def create(self, role: str, options: RoleOptions) -> RoleHandle:
        raise NotImplementedError

    def estimate(self, role: str, calls: dict[str, int], options: RoleOptions) -> dict[str, Any] | None:
        """Cost of ``calls`` (operation -> count) for ``role``, or None: not priced.

        The answer is ``{"cost": {operation: dollars}, "model": name, "currency": "USD",
        "unpriced": [models], "assumptions": {...}}``; only ``cost`` is required.
        """
        return None


@dataclass
class Roles:
    """What one job's engine gets: one object per role, and how to drive each."""

    llm: LLM
    image: ImageModel
    vision: Vision
    #: the judge of ``ranking="tournament"``: the ``judge`` role's, else the vision object when it compares
    judge: Judge | None = None
    #: the provider each role came from
    providers: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Limit] = field(default_factory=dict)
    #: which process-wide limiter each role shares
    limit_keys: dict[str, str] = field(default_factory=dict)
    #: per role: the longest one call may run (seconds); None: no bound
    call_timeouts: dict[str, float | None] = field(default_factory=dict)
    #: per role: its configuration without secrets
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    handles: dict[str, RoleHandle] = field(default_factory=dict, repr=False)
    #: awaited before the first call: the process-level open hooks of the providers used
    opener: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, handles: Mapping[str, RoleHandle], providers: Mapping[str, str],
           opener: Callable[[], Awaitable[None]] | None = None) -> Roles:
        return cls(
            llm=handles["llm"].impl, image=handles["image"].impl, vision=handles["vision"].impl,
            judge=_judge_of(handles),
            providers=dict(providers),
            limits={r: h.limit for r, h in handles.items()},
            limit_keys={r: h.limit_key or f"{providers[r]}:{r}" for r, h in handles.items()},
            call_timeouts={r: h.call_timeout for r, h in handles.items()},
            info={r: {"provider": providers[r], **h.info} for r, h in handles.items()},
            handles=dict(handles),
            opener=opener,
        )

    async def open(self) -> None:
        if self.opener is not None:
            await self.opener()

    def usage(self) -> dict[str, Any]:
        """Every role's usage merged: rows of the same model summed, costs added."""
        parts = [h.usage() for h in self.handles.values() if h.usage is not None]
        return merge_usage(parts)

    async def aclose(self) -> None:
        """Per-job cleanup of every role object; one failing does not stop the others."""
        seen: set[int] = set()
        for handle in self.handles.values():
            if handle.aclose is None or id(handle.aclose) in seen:
                continue
            seen.add(id(handle.aclose))
            try:
                closing = handle.aclose()
                if inspect.isawaitable(closing):
                    await closing
            except Exception:  # noqa: BLE001 - cleanup is best effort; the job's outcome stands
                log.debug("closing a role failed", exc_info=True)


def judging_role(roles: Collection[str]) -> str:
    """The role whose object judges a tournament: the ``judge`` role when a job names one, else ``vision``."""
    return "judge" if "judge" in roles else "vision"


def _judge_of(handles: Mapping[str, RoleHandle]) -> Judge | None:
    impl = handles[judging_role(handles)].impl
    return impl if isinstance(impl, Judge) else None


def merge_usage(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Usage dicts added together: numbers summed, lists united, objects merged key by key."""
    out: dict[str, Any] = {}
    for part in parts:
        _add(out, part)
    for key in ("totalCost",):
        if isinstance(out.get(key), float):
            out[key] = round(out[key], 6)
    return out


def _add(into: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key, value in part.items():
        have = into.get(key)
        if key not in into:
            into[key] = copy.deepcopy(value)
        elif isinstance(have, bool) or isinstance(value, bool):
            into[key] = have and value
        elif isinstance(have, (int, float)) and isinstance(value, (int, float)):
            into[key] = round(have + value, 6) if isinstance(have, float) or isinstance(value, float) else have + value
        elif isinstance(have, dict) and isinstance(value, Mapping):
            _add(have, value)
        elif isinstance(have, list) and isinstance(value, list):
            into[key] = sorted({*have, *value}, key=str)
