"""Settings of the ``openai`` provider set: from ``ProviderOptions.settings``, then environment, then defaults.

The key is held only here and in the client; it is left out of ``repr`` and of
:meth:`OpenAIConfig.public`, which is what may be shown or stored.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ...errors import BeamkitError, ErrorCode, InvalidRequest
from ..base import KINDS, Limit
from .pricing import merge_prices

DEFAULT_LLM_MODEL = "gpt-4o-mini"
DEFAULT_VISION_MODEL = "gpt-4o-mini"
DEFAULT_IMAGE_MODEL = "gpt-image-1-mini"
DEFAULT_IMAGE_SIZE = "1024x1024"
DEFAULT_IMAGE_QUALITY = "low"
DEFAULT_VISION_DETAIL = "low"
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_RETRIES = 3
#: per role: (calls in flight, calls started per minute); OpenAI's usage tier 1 allows about 5 images a minute
DEFAULT_LIMITS: dict[str, Limit] = {
    "llm": Limit(concurrency=8, per_minute=300),
    "image": Limit(concurrency=3, per_minute=5),
    "vision": Limit(concurrency=4, per_minute=300),
}
ROLES = KINDS

#: setting -> environment variable (``None``: settings only)
ENV: dict[str, str | None] = {
    "api_key": "OPENAI_API_KEY",
    "base_url": "OPENAI_BASE_URL",
    "organization": "OPENAI_ORG_ID",
    "project": "OPENAI_PROJECT_ID",
    "llm_model": "BEAMKIT_LLM_MODEL",
    "image_model": "BEAMKIT_IMAGE_MODEL",
    "vision_model": "BEAMKIT_VISION_MODEL",
    "image_size": "BEAMKIT_IMAGE_SIZE",
    "image_quality": "BEAMKIT_IMAGE_QUALITY",
    "vision_detail": "BEAMKIT_VISION_DETAIL",
    "timeout": "BEAMKIT_OPENAI_TIMEOUT",
    "max_retries": "BEAMKIT_OPENAI_MAX_RETRIES",
    "max_tokens": "BEAMKIT_OPENAI_MAX_TOKENS",
    "vision_max_tokens": "BEAMKIT_OPENAI_VISION_MAX_TOKENS",
    "vision_temperature": "BEAMKIT_VISION_TEMPERATURE",
    "json_mode": "BEAMKIT_OPENAI_JSON_MODE",
    "send_image_seed": "BEAMKIT_OPENAI_IMAGE_SEED",
    "prices": "BEAMKIT_OPENAI_PRICES",
    "limits": None,
}
LIMIT_ENV = {role: (f"BEAMKIT_{role.upper()}_CONCURRENCY", f"BEAMKIT_{role.upper()}_PER_MINUTE") for role in ROLES}


@dataclass
class OpenAIConfig:
    api_key: str = field(repr=False)
    base_url: str | None = None
    organization: str | None = None
    project: str | None = None
    llm_model: str = DEFAULT_LLM_MODEL
    image_model: str = DEFAULT_IMAGE_MODEL
    vision_model: str = DEFAULT_VISION_MODEL
    image_size: str | None = DEFAULT_IMAGE_SIZE
    image_quality: str | None = DEFAULT_IMAGE_QUALITY
    vision_detail: str | None = DEFAULT_VISION_DETAIL
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    max_tokens: int | None = 400
    vision_max_tokens: int | None = 600
    vision_temperature: float | None = 0.0
    json_mode: bool = True
    send_image_seed: bool = False
    temperature: float = 0.8
    seed: int = 0
    limits: dict[str, Limit] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    prices: dict[str, Any] = field(default_factory=dict, repr=False)

    def public(self) -> dict[str, Any]:
        """The configuration without secrets, for metadata and display."""
        return {
            "baseUrl": self.base_url,
            "llmModel": self.llm_model,
            "imageModel": self.image_model,
            "visionModel": self.vision_model,
            "imageSize": self.image_size,
            "imageQuality": self.image_quality,
            "visionDetail": self.vision_detail,
            "timeout": self.timeout,
            "maxRetries": self.max_retries,
            "limits": {r: {"concurrency": l.concurrency, "perMinute": l.per_minute} for r, l in self.limits.items()},
        }


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _bad(name: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"openai provider setting '{name}' {why}", name)


def _as_str(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise _bad(name, "must be a string")
    return v.strip()


def _as_opt_str(name: str, v: Any) -> str | None:
    s = _as_str(name, v)
    return None if s.lower() in ("", "none", "default", "omit") else s


def _as_float(name: str, v: Any, lo: float, hi: float) -> float:
    try:
        x = float(v) if not isinstance(v, bool) else math.nan
    except (TypeError, ValueError):
        x = math.nan
    if not (math.isfinite(x) and lo <= x <= hi):
        raise _bad(name, f"must be a number from {lo:g} to {hi:g}, got {v!r}")
    return x


def _as_int(name: str, v: Any, lo: int, hi: int) -> int:
    x = _as_float(name, v, lo, hi)
    if not x.is_integer():
        raise _bad(name, f"must be a whole number, got {v!r}")
    return int(x)


def _as_opt_int(name: str, v: Any, lo: int, hi: int) -> int | None:
    if isinstance(v, str) and v.strip().lower() in ("", "none", "omit"):
        return None
    return None if v is None else _as_int(name, v, lo, hi)


def _as_opt_float(name: str, v: Any, lo: float, hi: float) -> float | None:
    if isinstance(v, str) and v.strip().lower() in ("", "none", "omit"):
        return None
    return None if v is None else _as_float(name, v, lo, hi)


def _as_bool(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(v, str) and v.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise _bad(name, f"must be true or false, got {v!r}")


def _bound(name: str, v: Any) -> int | None:
    """A limit bound: a positive int, or 0 / None / "none" for no bound."""
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "0", "unlimited")):
        return None
    n = _as_int(name, v, 0, 1_000_000)
    return n or None


def _limit(role: str, base: Limit, v: Any) -> Limit:
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


def resolve(settings: Mapping[str, Any] | None, *, temperature: float = 0.8, seed: int = 0,
            environ: Mapping[str, str] | None = None) -> OpenAIConfig:
    """Build the configuration; raise a fatal BeamkitError on a missing key or a bad value."""
    settings = dict(settings or {})
    env = os.environ if environ is None else environ
    unknown = sorted(k for k in settings if k not in ENV)
    if unknown:
        raise InvalidRequest(
            f"unknown openai provider setting '{unknown[0]}' (known: {', '.join(sorted(ENV))})", unknown[0]
        )

    def get(name: str) -> Any:
        value = settings.get(name)
        if _blank(value) and ENV[name]:
            value = env.get(ENV[name])  # type: ignore[arg-type]
        return None if _blank(value) else value

    key = get("api_key")
    if key is None:
        raise BeamkitError(
            "No OpenAI API key: set the OPENAI_API_KEY environment variable or pass api_key in the provider "
            "settings (for a local server that checks no key, any placeholder such as 'local' will do).",
            ErrorCode.AUTH_ERROR,
            fatal=True,
        )
    if not isinstance(key, str):
        raise BeamkitError("The OpenAI API key must be a string.", ErrorCode.AUTH_ERROR, fatal=True)

    conf: dict[str, Any] = {"api_key": key.strip(), "temperature": temperature, "seed": seed}
    parse: dict[str, Callable[[str, Any], Any]] = {
        "base_url": _as_opt_str, "organization": _as_opt_str, "project": _as_opt_str,
        "llm_model": _as_str, "image_model": _as_str, "vision_model": _as_str,
        "image_size": _as_opt_str, "image_quality": _as_opt_str, "vision_detail": _as_opt_str,
        "timeout": lambda n, v: _as_float(n, v, 0.1, 3600),
        "max_retries": lambda n, v: _as_int(n, v, 0, 20),
        "max_tokens": lambda n, v: _as_opt_int(n, v, 1, 1_000_000),
        "vision_max_tokens": lambda n, v: _as_opt_int(n, v, 1, 1_000_000),
        "vision_temperature": lambda n, v: _as_opt_float(n, v, 0, 2),
        "json_mode": _as_bool, "send_image_seed": _as_bool,
    }
    for name, fn in parse.items():
        value = get(name)
        if value is not None:
            conf[name] = fn(name, value)
    for name in ("llm_model", "image_model", "vision_model"):
        if name in conf and not conf[name]:
            raise _bad(name, "must not be empty")

    prices = get("prices")
    if isinstance(prices, str):
        try:
            prices = json.loads(prices)
        except ValueError:
            raise _bad("prices", "must be JSON such as {\"my-model\": {\"input\": 0.1, \"output\": 0.4}}") from None
    if prices is not None and not isinstance(prices, Mapping):
        raise _bad("prices", "must be an object of models")
    try:
        conf["prices"] = merge_prices(prices)
    except ValueError as exc:
        raise _bad("prices", f"is invalid: {exc}") from None

    limits = dict(DEFAULT_LIMITS)
    for role, (c_env, m_env) in LIMIT_ENV.items():
        base = limits[role]
        c = env.get(c_env)
        m = env.get(m_env)
        limits[role] = Limit(
            _bound(c_env, c) if not _blank(c) else base.concurrency,
            _bound(m_env, m) if not _blank(m) else base.per_minute,
        )
    given = settings.get("limits")
    if given is not None:
        if not isinstance(given, Mapping):
            raise _bad("limits", "must be an object with llm, image and/or vision")
        for role, value in given.items():
            if role not in ROLES:
                raise _bad("limits", f"has unknown role '{role}' (use llm, image, vision)")
            limits[role] = _limit(role, limits[role], value)
    conf["limits"] = limits
    return OpenAIConfig(**conf)
