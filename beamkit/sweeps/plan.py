"""What a sweep will run: its prompts, named configurations, baselines and seeds, as rows and jobs.

A row is one (prompt, configuration, seed); a job is one beamkit session. Two rows whose
prompt, parameters and seed are equal (``greedy`` of a configuration that already has
``M = 1``) share one job. A job's id is a hash of its prompt, parameters and seed, so a
sweep run again finds the sessions it already has.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import params as job_params
from ..errors import InvalidRequest
from ..prompts import BUILTIN, Prompt
from ..prompts import load as load_prompts
from . import baselines

PromptsLike = str | os.PathLike[str] | Iterable[str | Prompt]
ConfigsLike = Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]]
#: job parameters a sweep sets itself, so a configuration may not
RESERVED = ("prompt", "seed", "output", "job_id")
#: bumped when the hash's input changes shape, so old and new sessions never collide
ID_VERSION = 1


@dataclass(frozen=True)
class JobSpec:
    """One session to run: what a worker gets."""

    job_id: str
    prompt: str
    params: dict[str, Any]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "prompt": self.prompt, "params": self.params, "seed": self.seed}


@dataclass(frozen=True)
class Row:
    """One (prompt, configuration, seed) of the sweep, before it has an outcome."""

    prompt_index: int
    prompt: str
    category: str | None
    challenge: str | None
    config: str
    baseline: str | None  # the baseline's kind, or None for a configuration of the user's
    reference: str  # the configuration whose budget a baseline matches (its own name for a configuration)
    seed: int
    job_id: str
    budget: int

    def key(self) -> tuple[int, str, int]:
        return (self.prompt_index, self.config, self.seed)


@dataclass
class Plan:
    rows: list[Row]
    jobs: dict[str, JobSpec]
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def rows_of(self, job_id: str) -> list[Row]:
        return [r for r in self.rows if r.job_id == job_id]


def prompt_list(prompts: PromptsLike) -> list[Prompt]:
    """The sweep's prompts: a list of texts or Prompts, or a prompt set's name or file."""
    if isinstance(prompts, (str, os.PathLike)):
        if isinstance(prompts, str) and prompts.lower() not in BUILTIN and not os.path.isfile(prompts):
            raise InvalidRequest(
                f"prompts must be a list of prompts, a prompt set ({', '.join(sorted(BUILTIN))}) or a file; "
                f"no such set or file: {prompts!r}", "prompts")
        out = load_prompts(prompts)
    else:
        out = []
        for i, p in enumerate(prompts):
            if isinstance(p, Prompt):
                out.append(p)
            elif isinstance(p, str) and p.strip():
                out.append(Prompt(p.strip(), i))
            else:
                raise InvalidRequest(f"prompt {i} must be non-empty text, got {p!r}", "prompts")
    if not out:
        raise InvalidRequest("a sweep needs at least one prompt", "prompts")
    return out


def seed_list(seeds: int | Iterable[int]) -> list[int]:
    if isinstance(seeds, bool):
        raise InvalidRequest("seeds must be a count or a list of integers, not a boolean", "seeds")
    if isinstance(seeds, int):
        if seeds < 1:
            raise InvalidRequest(f"seeds must be at least 1, got {seeds}", "seeds")
        return list(range(seeds))
    out = list(seeds)
    if not out or any(isinstance(s, bool) or not isinstance(s, int) for s in out):
        raise InvalidRequest(f"seeds must be a non-empty list of integers, got {out!r}", "seeds")
    if len(set(out)) != len(out):
        raise InvalidRequest(f"seeds must not repeat, got {out!r}", "seeds")
    return out


def _accepted() -> set[str]:
    from .. import api

    return set(inspect.signature(api.start).parameters) - set(RESERVED)


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration's job parameters, checked as ``beamkit.start`` would, defaults filled in."""
    if not isinstance(params, Mapping):
        raise InvalidRequest(f"configuration '{name}' must be a mapping of job parameters", "configs")
    for key in params:
        if key in RESERVED:
            raise InvalidRequest(f"configuration '{name}' sets '{key}', which the sweep sets itself"
                                 f"{' (use seeds=)' if key == 'seed' else ''}", "configs")
    unknown = sorted(set(params) - _accepted())
    if unknown:
        raise InvalidRequest(f"configuration '{name}': unknown job parameter '{unknown[0]}'", "configs")
    known = {k: v for k, v in params.items() if k in job_params.FIELD_NAMES}
    try:
        checked = job_params.validate({"prompt": "-", **known}).to_dict()
    except InvalidRequest as exc:
        raise InvalidRequest(f"configuration '{name}': {exc.message}", "configs") from None
    del checked["prompt"], checked["seed"]
    extra = {k: v for k, v in params.items() if k not in job_params.FIELD_NAMES}
    if extra.get("provider_settings") is None:
        extra.pop("provider_settings", None)
    elif not isinstance(extra["provider_settings"], Mapping):
        raise InvalidRequest(f"configuration '{name}': provider_settings must be a mapping", "configs")
    return {**checked, **extra}


def _auto_names(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names for a list of configurations from the parameters that tell them apart."""
    keys = sorted({k for c in configs for k in c})
    differing = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]
    names: list[str] = []
    for i, c in enumerate(configs):
        name = ",".join(f"{k}={c[k]}" for k in differing if k in c and not isinstance(c[k], Mapping)) or f"config{i}"
        while name in names:
            name = f"{name}#{i}"
        names.append(name)
    return names


def config_table(configs: ConfigsLike) -> dict[str, dict[str, Any]]:
    if isinstance(configs, Mapping):
        named = dict(configs)
    elif isinstance(configs, Sequence) and not isinstance(configs, str):
        named = dict(zip(_auto_names(configs), configs))
    else:
        raise InvalidRequest("configs must be a mapping name -> job parameters, or a list of them", "configs")
    if not named:
        raise InvalidRequest("a sweep needs at least one configuration", "configs")
    out = {}
    for name, params in named.items():
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest(f"a configuration's name must be non-empty text, got {name!r}", "configs")
        if name in baselines.NAMES:
            raise InvalidRequest(f"'{name}' names a baseline; give the configuration another name", "configs")
        out[name] = check_params(name, params)
    return out


def job_id(prompt: str, params: Mapping[str, Any], seed: int) -> str:
    """The session id of a job, the same for the same prompt, parameters and seed.

    Parameters at their default value are left out of the hash, so that a parameter the
    engine adds later (with a default) does not change the ids of sessions already on disk.
    """
    defaults = {f.name: f.default for f in job_params.FIELDS}
    given = {k: v for k, v in params.items() if not (k in defaults and defaults[k] == v)}
    text = json.dumps({"v": ID_VERSION, "prompt": prompt, "params": given, "seed": seed},
                      sort_keys=True, ensure_ascii=False, default=str)
    return "job-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def plan(prompts: PromptsLike, configs: ConfigsLike, seeds: int | Iterable[int] = 1,
         baseline_kinds: Iterable[str] = ()) -> Plan:
    """Every row of a sweep, seed by seed, then prompt by prompt, then configuration, so that a
    sweep stopped half way has whole (prompt, seed) pairs to compare."""
    texts = prompt_list(prompts)
    seed_values = seed_list(seeds)
    table = config_table(configs)
    kinds = list(dict.fromkeys(baseline_kinds if not isinstance(baseline_kinds, str) else [baseline_kinds]))
    for kind in kinds:
        if kind not in baselines.NAMES:
            raise InvalidRequest(f"unknown baseline '{kind}' (known: {', '.join(baselines.NAMES)})", "baselines")
    # name -> (params, baseline kind, reference)
    columns: dict[str, tuple[dict[str, Any], str | None, str]] = {}
    for name, params in table.items():
        columns[name] = (params, None, name)
    for name, params in table.items():
        for kind in kinds:
            label = kind if len(table) == 1 else f"{kind}@{name}"
            columns[label] = (baselines.derive(kind, params), kind, name)
    rows: list[Row] = []
    jobs: dict[str, JobSpec] = {}
    for seed in seed_values:
        for index, p in enumerate(texts):
            for label, (job_params_, baseline, reference) in columns.items():
                jid = job_id(p.text, job_params_, seed)
                jobs.setdefault(jid, JobSpec(jid, p.text, job_params_, seed))
                rows.append(Row(index, p.text, p.category, p.challenge, label, baseline, reference, seed, jid,
                                baselines.budget(job_params_)))
    return Plan(rows, jobs, {label: params for label, (params, _, _) in columns.items()})


__all__ = ["JobSpec", "Plan", "Row", "check_params", "config_table", "job_id", "plan", "prompt_list", "seed_list"]
