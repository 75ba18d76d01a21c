"""The settings the ``openai`` provider declares, and one role's configuration built from them.

Each role takes its own base URL, key and model (``BEAMKIT_LLM_BASE_URL``, ...,
``BEAMKIT_JUDGE_MODEL``), falling back to ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``, so the LLM
and vision can talk to one server and images to another. The optional ``judge`` role is a
vision client of its own (a tournament's comparisons on another model or server). The key is
held only here and in the client; it is left out of ``repr`` and of
:meth:`OpenAIConfig.public`, which is what may be shown or stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import BeamkitError, ErrorCode, InvalidRequest
from ..base import ALL_ROLES, DEFAULT_TEMPERATURE, Limit, Setting
from .pricing import merge_prices

#: the request header that carries a per-request key to the REST API (a declared setting's header)
API_KEY_HEADER = "X-OpenAI-API-Key"
DEFAULT_MODELS = {"llm": "gpt-4o-mini", "image": "gpt-image-1-mini", "vision": "gpt-4o-mini", "judge": "gpt-4o-mini"}
DEFAULT_LLM_MODEL = DEFAULT_MODELS["llm"]
DEFAULT_IMAGE_MODEL = DEFAULT_MODELS["image"]
DEFAULT_VISION_MODEL = DEFAULT_MODELS["vision"]
DEFAULT_IMAGE_SIZE = "1024x1024"
DEFAULT_IMAGE_QUALITY = "low"
DEFAULT_VISION_DETAIL = "low"
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_RETRIES = 3
#: per role: calls in flight at most, and no per-minute cap: the engine's limiter halves a kind's
#: concurrency on a 429, pauses it for the server's retry-after and reads its x-ratelimit-* headers
#: (docs/providers.md, "Rate limits"); ``per_minute`` stays a setting for an account that wants one
DEFAULT_LIMITS: dict[str, Limit] = {
    "llm": Limit(concurrency=8),
    "image": Limit(concurrency=3),
    "vision": Limit(concurrency=4),
    "judge": Limit(concurrency=4),
}
#: the roles that look at pictures through chat completions: the vision role and the judge role
LOOKING = ("vision", "judge")
OFFICIAL_URL = "https://api.openai.com/v1"


def _per_role() -> list[Setting]:
    out: list[Setting] = []
    for role in ALL_ROLES:
        up = role.upper()
        only = (role,)
        out += [
            Setting("api_key", str, env=(f"BEAMKIT_{up}_API_KEY", "OPENAI_API_KEY"), secret=True, roles=only,
                    header=API_KEY_HEADER, help="API key (required; any placeholder for a server that checks none)"),
            Setting("base_url", str, env=(f"BEAMKIT_{up}_BASE_URL", "OPENAI_BASE_URL"), roles=only, nullable=True,
                    help=f"the server's /v1 URL (default {OFFICIAL_URL})"),
            Setting("model", str, DEFAULT_MODELS[role], env=(f"BEAMKIT_{up}_MODEL",), roles=only,
                    help=f"the {role} model"),
            Setting("concurrency", int, DEFAULT_LIMITS[role].concurrency, env=(f"BEAMKIT_{up}_CONCURRENCY",),
                    roles=only, minimum=0, maximum=1_000_000, nullable=True,
                    help="calls in flight at once (0 or none: no bound)"),
            Setting("per_minute", int, DEFAULT_LIMITS[role].per_minute, env=(f"BEAMKIT_{up}_PER_MINUTE",),
                    roles=only, minimum=0, maximum=1_000_000, nullable=True,
                    help="calls started in any 60 s (default none: the limiter follows the server's 429s and headers)"),
        ]
    return out


def _looking(role: str) -> list[Setting]:
    """The settings of a role that looks at pictures; the vision role's variables keep their 0.1 names."""
    up, only = role.upper(), (role,)
    return [
        Setting("detail", str, DEFAULT_VISION_DETAIL, env=(f"BEAMKIT_{up}_DETAIL",), roles=only, nullable=True,
                help="image detail for the judge (low sends at most 512 px; none: not sent)"),
        Setting("max_tokens", int, 600, env=(f"BEAMKIT_OPENAI_{up}_MAX_TOKENS",), roles=only, minimum=1,
                maximum=1_000_000, nullable=True, help="cap on the judge's output tokens"),
        Setting("temperature", float, 0.0, env=(f"BEAMKIT_{up}_TEMPERATURE",), roles=only, minimum=0,
                maximum=2, nullable=True, help="the judge's temperature (the LLM samples at the job's)"),
    ]


SETTINGS: tuple[Setting, ...] = (
    *_per_role(),
    Setting("organization", str, env=("OPENAI_ORG_ID",), nullable=True, help="OpenAI organization id"),
    Setting("project", str, env=("OPENAI_PROJECT_ID",), nullable=True, help="OpenAI project id"),
    Setting("timeout", float, DEFAULT_TIMEOUT, env=("BEAMKIT_OPENAI_TIMEOUT",), minimum=0.1, maximum=3600,
            help="seconds one HTTP request may take"),
    Setting("max_retries", int, DEFAULT_MAX_RETRIES, env=("BEAMKIT_OPENAI_MAX_RETRIES",), minimum=0, maximum=20,
            help="the client's retries of 408, 409, 5xx and timeouts (429s in a job are the limiter's)"),
    Setting("prices", dict, env=("BEAMKIT_OPENAI_PRICES",),
            help='prices laid over the built-in table: {"model": {"input": 0.15, "output": 0.6, "image": ...}}'),
    Setting("limits", dict, help='older form of the limits: {"image": {"concurrency": 3, "per_minute": 5}, ...}'),
    Setting("max_tokens", int, 400, env=("BEAMKIT_OPENAI_MAX_TOKENS",), roles=("llm",), minimum=1,
            maximum=1_000_000, nullable=True, help="cap on the LLM's output tokens"),
    Setting("size", str, DEFAULT_IMAGE_SIZE, env=("BEAMKIT_IMAGE_SIZE",), roles=("image",), nullable=True,
            help="image size (none: not sent)"),
    Setting("quality", str, DEFAULT_IMAGE_QUALITY, env=("BEAMKIT_IMAGE_QUALITY",), roles=("image",), nullable=True,
            help="image quality (none: not sent)"),
    Setting("send_seed", bool, False, env=("BEAMKIT_OPENAI_IMAGE_SEED",), roles=("image",),
            help="add the call's seed to image requests, for servers that take one"),
    Setting("rephrase_model", str, DEFAULT_LLM_MODEL, env=("BEAMKIT_IMAGE_REPHRASE_MODEL",), roles=("image",),
            nullable=True, help="chat model, on the image server, that rewords a refused prompt (none: swap words)"),
    *(s for role in LOOKING for s in _looking(role)),
    Setting("json_mode", bool, True, env=("BEAMKIT_OPENAI_JSON_MODE",), roles=LOOKING,
            help="ask the judge for structured JSON (json_schema, else json_object, else plain text)"),
)

#: the flat names of beamkit 0.1, still taken
ALIASES: dict[str, str] = {
    "llm_model": "llm.model",
    "image_model": "image.model",
    "vision_model": "vision.model",
    "image_size": "image.size",
    "image_quality": "image.quality",
    "send_image_seed": "image.send_seed",
    "vision_detail": "vision.detail",
    "vision_max_tokens": "vision.max_tokens",
    "vision_temperature": "vision.temperature",
}


@dataclass
class OpenAIConfig:
    """One role's configuration, for one job."""

    role: str
    api_key: str = field(repr=False)
    model: str
    base_url: str | None = None
    organization: str | None = None
    project: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    #: the LLM's: the job's temperature; the judge's: its setting; None: not sent
    temperature: float | None = DEFAULT_TEMPERATURE
    seed: int = 0
    max_tokens: int | None = None
    size: str | None = DEFAULT_IMAGE_SIZE
    quality: str | None = DEFAULT_IMAGE_QUALITY
    send_seed: bool = False
    rephrase_model: str | None = DEFAULT_LLM_MODEL
    detail: str | None = DEFAULT_VISION_DETAIL
    json_mode: bool = True
    limit: Limit = field(default_factory=Limit)
    prices: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def server(self) -> str:
        return self.base_url or OFFICIAL_URL

    def public(self) -> dict[str, Any]:
        """The configuration without secrets, for metadata and display."""
        out: dict[str, Any] = {"baseUrl": self.base_url, "model": self.model, "timeout": self.timeout,
                               "maxRetries": self.max_retries,
                               "limit": {"concurrency": self.limit.concurrency, "perMinute": self.limit.per_minute}}
        if self.role == "image":
            out.update(size=self.size, quality=self.quality)
        elif self.role in LOOKING:
            out.update(detail=self.detail)
        return out


def _bad(name: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"openai setting '{name}' {why}", name)


def _bound(name: str, v: Any) -> int | None:
    """A limit bound from the older ``limits`` form: a positive int, or 0 / None / "none" for no bound."""
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "0", "unlimited")):
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise _bad(name, f"must be a whole number, got {v!r}")
    try:
        n = float(v)
    except ValueError:
        raise _bad(name, f"must be a whole number, got {v!r}") from None
    if not n.is_integer() or not 0 <= n <= 1_000_000:
        raise _bad(name, f"must be a whole number from 0 to 1000000, got {v!r}")
    return int(n) or None


def _older_limit(role: str, base: Limit, v: Any) -> Limit:
    name = f"limits.{role}"
    if isinstance(v, Limit):
        return v
    if isinstance(v, Mapping):
        unknown = set(v) - {"concurrency", "per_minute", "perMinute"}
        if unknown:
            raise _bad(name, f"has unknown field '{sorted(unknown)[0]}' (use concurrency, per_minute)")
        concurrency = _bound(f"{name}.concurrency", v["concurrency"]) if "concurrency" in v else base.concurrency
        key = "per_minute" if "per_minute" in v else "perMinute"
        per_minute = _bound(f"{name}.per_minute", v[key]) if key in v else base.per_minute
        return Limit(concurrency, per_minute)
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return Limit(_bound(f"{name}.concurrency", v[0]), _bound(f"{name}.per_minute", v[1]))
    raise _bad(name, "must be {concurrency, per_minute}")


def limit_of(role: str, settings: Mapping[str, Any]) -> Limit:
    limit = Limit(settings.get("concurrency") or None, settings.get("per_minute") or None)
    older = settings.get("limits")
    if older is not None:
        unknown = [r for r in older if r not in ALL_ROLES]
        if unknown:
            raise _bad("limits", f"has unknown role '{unknown[0]}' (use {', '.join(ALL_ROLES)})")
        if role in older:
            limit = _older_limit(role, limit, older[role])
    return limit


def prices_of(settings: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return merge_prices(settings.get("prices"))
    except ValueError as exc:
        raise _bad("prices", f"is invalid: {exc}") from None


def config_for(role: str, settings: Mapping[str, Any], *, temperature: float = DEFAULT_TEMPERATURE, seed: int = 0,
               need_key: bool = True) -> OpenAIConfig:
    """One role's configuration from its resolved settings; a missing key is a fatal AUTH_ERROR."""
    key = settings.get("api_key")
    if need_key and not key:
        up = role.upper()
        raise BeamkitError(
            f"No OpenAI API key for the {role} role: set OPENAI_API_KEY (or BEAMKIT_{up}_API_KEY) or pass api_key "
            "in the provider settings (for a local server that checks no key, any placeholder such as 'local' "
            "will do).",
            ErrorCode.AUTH_ERROR,
            fatal=True,
        )
    model = settings.get("model")
    if not model:
        raise _bad(f"{role}.model", "must not be empty")
    conf = OpenAIConfig(
        role=role, api_key=key or "", model=model, base_url=settings.get("base_url"),
        organization=settings.get("organization"), project=settings.get("project"),
        timeout=settings.get("timeout") or DEFAULT_TIMEOUT,
        max_retries=DEFAULT_MAX_RETRIES if settings.get("max_retries") is None else settings["max_retries"],
        temperature=temperature if role == "llm" else settings.get("temperature"),
        seed=seed, max_tokens=settings.get("max_tokens"),
        limit=limit_of(role, settings), prices=prices_of(settings),
    )
    if role == "image":
        conf.size, conf.quality = settings.get("size"), settings.get("quality")
        conf.send_seed = bool(settings.get("send_seed"))
        conf.rephrase_model = settings.get("rephrase_model")
    elif role in LOOKING:
        conf.detail, conf.json_mode = settings.get("detail"), settings.get("json_mode") is not False
    return conf

