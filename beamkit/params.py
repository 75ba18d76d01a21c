"""Job parameters (SPEC section 1): one table drives validation, the CLI and the OpenAPI schema."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from .errors import InvalidRequest
from .providers.base import ALL_ROLES, DEFAULT_TEMPERATURE, MAX_NAME, OPTIONAL_ROLES, ROLES, check_providers
from .settings import DEFAULT_PROVIDERS

MAX_PROMPT_CHARS = 4000
#: as high as N's limit, so that one prompt rendered k times can match any search's image budget up to 64
MAX_SEEDS_PER_PROMPT = 64
#: the rules of ``stop_when`` and what each takes: (kind, minimum, maximum, minimum excluded)
STOP_RULES: dict[str, tuple[type, float, float | None, bool]] = {
    "plateau": (int, 1, 20, False),
    "score": (float, 0, 100, False),
    "images": (int, 1, None, False),
    "usd": (float, 0, None, True),
}


@dataclass(frozen=True)
class Field:
    name: str
    kind: type  # str, int or float
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    help: str = ""
    #: checks a value this table cannot describe (returns it normalised, raises InvalidRequest)
    parse: Callable[[Any], Any] | None = None
    #: its JSON Schema, where the kind alone does not say it
    schema: dict[str, Any] | None = None


#: the ways a beam is chosen, and the most votes a tournament asks per pair
RANKINGS = ("score", "tournament")
MAX_VOTES = 5

FIELDS: tuple[Field, ...] = (
    Field("prompt", str, None, 1, MAX_PROMPT_CHARS, help="what the user wants to see"),
    Field("N", int, 9, 1, 64, help="candidates generated per iteration"),
    Field("M", int, 3, 1, 64, help="beam width: candidates kept (at most N)"),
    Field("iterations", int, 3, 1, 20, help="iterations, counting iteration 0"),
    Field("alpha", float, 0.7, 0.0, 1.0, help="weight of alignment against aesthetics"),
    Field("temperature", float, DEFAULT_TEMPERATURE, 0.0, 2.0, help="LLM sampling temperature"),
    # A signed 64-bit integer: what providers that take a seed accept (and an int, unlike 10**4400, that prints).
    Field("seed", int, None, -(2**63), 2**63 - 1, nullable=True,
          help="makes a run repeatable; drawn and recorded when omitted"),
    Field("providers", str, DEFAULT_PROVIDERS, 1, MAX_NAME, parse=check_providers,
          help=f"a provider for every role, or an object naming the provider of each role ({', '.join(ROLES)}, "
               f"and optionally {' and '.join(OPTIONAL_ROLES)}: the tournament's judge, by default the vision "
               "role's provider)",
          schema={"oneOf": [
              {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
              {"type": "object", "required": list(ROLES), "additionalProperties": False,
               "properties": {r: {"type": "string", "minLength": 1, "maxLength": MAX_NAME} for r in ALL_ROLES}},
          ]}),
    Field("stop_when", dict, None, nullable=True, parse=lambda v: check_stop_when(v),
          help="ends the job early: plateau (iterations without a better best), score (a best total reached), "
               "images (image calls), usd (dollars spent); any subset",
          schema={"type": "object", "additionalProperties": False, "properties": {
              "plateau": {"type": "integer", "minimum": 1, "maximum": 20},
              "score": {"type": "number", "minimum": 0, "maximum": 100},
              "images": {"type": "integer", "minimum": 1},
              "usd": {"type": "number", "exclusiveMinimum": 0},
          }}),
    Field("seeds_per_prompt", int, 1, 1, MAX_SEEDS_PER_PROMPT,
          help="pictures rendered per combined prompt, each with its own seed; the best is kept"),
    Field("unexpanded", bool, False, parse=lambda v: check_flag("unexpanded", v),
          help="render the user's prompt as is: no expansion, no combine (one iteration only)",
          schema={"type": "boolean"}),
    Field("ranking", str, "score", parse=lambda v: check_ranking(v),
          help="how the beam is chosen: 'score' (the absolute scores) or 'tournament' (a judge compares pairs)",
          schema={"type": "string", "enum": list(RANKINGS)}),
    Field("votes", int, 1, 1, MAX_VOTES,
          help="tournament only: how many times each pair is asked (odd); the majority wins"),
    Field("steer", bool, False, parse=lambda v: check_flag("steer", v),
          help="wait after each iteration's ranking (but the last) for a person to keep or change the beam",
          schema={"type": "boolean"}),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)
#: each default as FIELDS has it: JobParams, the CLI and the OpenAPI schema all take it from there
_DEFAULT = {f.name: f.default for f in FIELDS}


@dataclass(frozen=True)
class JobParams:
    prompt: str
    N: int = _DEFAULT["N"]
    M: int = _DEFAULT["M"]
    iterations: int = _DEFAULT["iterations"]
    alpha: float = _DEFAULT["alpha"]
    temperature: float = _DEFAULT["temperature"]
    seed: int | None = None
    #: a name (every role from it), or the provider of each role: {"llm": ..., "image": ..., "vision": ...},
    #: perhaps with a "judge" (ranking="tournament"; without one the vision role's provider judges)
    providers: str | dict[str, str] = _DEFAULT["providers"]
    #: {"plateau": k, "score": x, "images": n, "usd": d}, any subset; None runs every iteration
    stop_when: dict[str, float] | None = None
    seeds_per_prompt: int = _DEFAULT["seeds_per_prompt"]
    unexpanded: bool = _DEFAULT["unexpanded"]
    #: "score" or "tournament" (a judge compares candidates of the pool; see docs/algorithm.md)
    ranking: str = _DEFAULT["ranking"]
    votes: int = _DEFAULT["votes"]
    #: after each iteration but the last, wait for a person's review of the beam (``Job.keep``)
    steer: bool = _DEFAULT["steer"]

    def to_dict(self) -> dict[str, Any]:
        # asdict would walk every value; only the two mappings (providers, stop_when) hold more than a scalar
        return {name: dict(v) if isinstance(v := getattr(self, name), dict) else v for name in FIELD_NAMES}

    def with_seed(self) -> JobParams:
        """The same parameters with a concrete seed, drawn when none was given."""
        if self.seed is not None:
            return self
        return JobParams(**{**self.to_dict(), "seed": secrets.randbelow(2**31)})


def _check(field: Field, value: Any) -> Any:
    name = field.name
    if value is None:
        if field.nullable:
            return None
        raise InvalidRequest(f"'{name}' is required", name)
    if field.parse is not None:
        if not all_text(value):
            raise InvalidRequest(f"'{name}' is not valid Unicode text (it holds a lone surrogate)", name)
        return field.parse(value)
    if field.kind is str:
        if not isinstance(value, str):
            raise InvalidRequest(f"'{name}' must be a string", name)
        if not is_text(value):
            raise InvalidRequest(f"'{name}' is not valid Unicode text (it holds a lone surrogate)", name)
        value = value.strip()
        if len(value) < (field.minimum or 0):
            raise InvalidRequest(f"'{name}' must not be empty", name)
        if field.maximum is not None and len(value) > field.maximum:
            raise InvalidRequest(f"'{name}' must be at most {int(field.maximum)} characters", name)
        return value
    # bool is a subclass of int in Python; the spec says booleans are not numbers.
    if isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be a number, not a boolean", name)
    if field.kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise InvalidRequest(f"'{name}' must be an integer", name)
    else:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidRequest(f"'{name}' must be a finite number", name)
        value = float(value)
    if field.minimum is not None and value < field.minimum or field.maximum is not None and value > field.maximum:
        shown = value if abs(value) < 10**30 else "a number far out of range"  # str() of 10**4400 raises
        raise InvalidRequest(f"'{name}' must be between {_fmt(field.minimum)} and {_fmt(field.maximum)}, got {shown}", name)
    return value


def check_stop_when(value: Any) -> dict[str, float] | None:
    """``stop_when`` checked: a mapping of known rules to numbers in range (an empty one is no rule)."""
    if not isinstance(value, Mapping):
        raise InvalidRequest("'stop_when' must be an object such as {\"plateau\": 2, \"score\": 95}", "stop_when")
    out: dict[str, float] = {}
    for rule, raw in value.items():
        if rule not in STOP_RULES:
            raise InvalidRequest(f"'stop_when' has an unknown rule '{rule}' (known: {', '.join(STOP_RULES)})", "stop_when")
        kind, lo, hi, open_lo = STOP_RULES[rule]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise InvalidRequest(f"'stop_when.{rule}' must be a finite number", "stop_when")
        if kind is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise InvalidRequest(f"'stop_when.{rule}' must be an integer, got {raw}", "stop_when")
            raw = int(raw)
        else:
            raw = float(raw)
        if raw < lo or (open_lo and raw == lo) or (hi is not None and raw > hi):
            bound = f"above {_fmt(lo)}" if open_lo else f"at least {_fmt(lo)}" if hi is None else f"between {_fmt(lo)} and {_fmt(hi)}"
            raise InvalidRequest(f"'stop_when.{rule}' must be {bound}, got {raw}", "stop_when")
        out[str(rule)] = raw
    return out or None


def check_ranking(value: Any) -> str:
    if not isinstance(value, str) or value.strip() not in RANKINGS:
        raise InvalidRequest(f"'ranking' must be one of {', '.join(RANKINGS)}, got {value!r}", "ranking")
    return value.strip()


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be true or false", name)
    return value


def is_text(value: str) -> bool:
    """Whether a string is Unicode text that can be stored and sent as UTF-8. JSON can carry
    lone surrogates (``"\\ud800"``), which Python decodes into strings that are not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def all_text(value: Any) -> bool:
    """Whether every string in ``value`` (nested in lists, tuples, dicts and dataclasses) is text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_text(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif is_dataclass(item) and not isinstance(item, type):
            stack.extend(getattr(item, f.name) for f in fields(item))
    return True


def _fmt(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


def validate(data: Mapping[str, Any]) -> JobParams:
    """Check a request body or keyword arguments; raise InvalidRequest naming the first bad field."""
    if not isinstance(data, Mapping):
        raise InvalidRequest("the request body must be a JSON object")
    unknown = [k for k in data if k not in FIELD_NAMES]
    if unknown:
        raise InvalidRequest(f"unknown field '{unknown[0]}'", str(unknown[0]))
    values = {}
    for field in FIELDS:
        raw = data.get(field.name, field.default)
        values[field.name] = _check(field, raw)
    if values["M"] > values["N"]:
        raise InvalidRequest(f"'M' must be at most N ({values['N']}), got {values['M']}", "M")
    if values["unexpanded"] and values["iterations"] != 1:
        # refinement works on an expansion's WHAT and HOW, which an unexpanded job never has
        raise InvalidRequest(f"'unexpanded' jobs run one iteration, got iterations={values['iterations']}", "unexpanded")
    images = (values["stop_when"] or {}).get("images")
    if images is not None and images < values["seeds_per_prompt"]:
        raise InvalidRequest(f"'stop_when.images' ({images}) leaves no room for one candidate's "
                             f"{values['seeds_per_prompt']} pictures (seeds_per_prompt)", "stop_when")
    if values["votes"] % 2 == 0:
        raise InvalidRequest(f"'votes' must be odd (a majority needs one), got {values['votes']}", "votes")
    return JobParams(**values)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a job request, used by the OpenAPI document."""
    props: dict[str, Any] = {}
    for f in FIELDS:
        p: dict[str, Any]
        if f.schema is not None:
            p = dict(f.schema)
        elif f.kind is str:
            p = {"type": "string", "minLength": int(f.minimum or 0)}
            if f.maximum is not None:
                p["maxLength"] = int(f.maximum)
        else:
            p = {"type": "integer" if f.kind is int else "number"}
            if f.minimum is not None:
                p["minimum"] = f.minimum
            if f.maximum is not None:
                p["maximum"] = f.maximum
        if f.nullable:
            p = {**p, "nullable": True}
        if f.default is not None:
            p["default"] = f.default
        p["description"] = f.help
        props[f.name] = p
    return {"type": "object", "required": ["prompt"], "additionalProperties": False, "properties": props}
