"""What a job will cost before it runs: the calls SPEC section 2 implies, priced by each role's provider.

Calls are exact for a job in which every candidate succeeds (retries, re-asks and
rephrasings come on top), except a tournament's comparisons, which are an upper bound (pairs
that earlier verdicts decide are not asked). Each role's provider prices its own calls through
its ``estimate`` hook; a provider without one is reported as not priced, at 0. Comparisons
are priced by the role that judges: the judge role, else the vision role.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .engine.tournament import comparisons
from .params import JobParams, validate
from .providers import roles as job_roles
from .providers.base import judging_role

#: the operations each role performs; a tournament's "compare" goes to the role that judges
OPERATIONS: dict[str, tuple[str, ...]] = {
    "llm": ("expand", "refine", "combine", "critique"),
    "image": ("image",),
    "vision": ("vision",),
}
COMPARE = "compare"
LLM_KINDS = OPERATIONS["llm"]
#: arguments of ``beamkit.start()`` that do not change the calls
IGNORED = ("output", "job_id")
CURRENCY = "USD"


def calls(N: int, M: int, iterations: int, seeds_per_prompt: int = 1, unexpanded: bool = False,
          ranking: str = "score", votes: int = 1) -> dict[str, int]:
    """Calls per operation for a job in which every candidate succeeds (SPEC section 2) and that
    runs all its iterations (a ``stop_when`` rule can only make it fewer). ``compare`` is the
    judge's calls of ``ranking="tournament"``: at most the pairs ``comparisons`` bounds, ``votes`` each."""
    later = iterations - 1
    beam = min(M, N)
    counts = {
        "expand": 0 if unexpanded else 2 * N,
        "critique": later * beam,
        "refine": later * N,
        "combine": 0 if unexpanded else iterations * N,
        "image": iterations * N * seeds_per_prompt,
        "vision": iterations * N * seeds_per_prompt,
        COMPARE: votes * sum(comparisons(N, M, iterations)) if ranking == "tournament" else 0,
    }
    counts["llm"] = sum(counts[k] for k in LLM_KINDS)
    counts["total"] = counts["llm"] + counts["image"] + counts["vision"] + counts[COMPARE]
    return counts


def _params(params: Any, kwargs: dict[str, Any]) -> JobParams:
    if isinstance(params, str):
        data: dict[str, Any] = {"prompt": params}
    elif isinstance(params, JobParams):
        data = params.to_dict()
    elif dataclasses.is_dataclass(params) and not isinstance(params, type):
        data = dataclasses.asdict(params)
    elif isinstance(params, Mapping):
        data = dict(params)
    elif params is None:
        data = {}
    else:
        raise TypeError("estimate() takes a prompt, a JobParams or a dict of job parameters")
    data.update(kwargs)
    for key in IGNORED:
        data.pop(key, None)
    data.setdefault("prompt", "x")
    return validate(data)


def estimate(params: Any = None, /, *, provider_settings: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Calls per operation and dollars for a job, without calling anything (no key needed).

    ``estimate("a fox", N=9, M=3, iterations=3, providers="openai")``, or a dict / JobParams;
    ``providers`` may name a provider per role. ``provider_settings`` is read as a job reads it
    (models, image size and quality, prices), and checked the same way.
    """
    job = _params(params, kwargs)
    counts = calls(job.N, job.M, job.iterations, job.seeds_per_prompt, job.unexpanded, job.ranking, job.votes)
    plans = job_roles.plan(job.providers, provider_settings, temperature=job.temperature, seed=job.seed or 0,
                           prompt=job.prompt)
    tournament = job.ranking == "tournament"
    judging = judging_role(plans)
    operations = {role: OPERATIONS.get(role, ()) + ((COMPARE,) if tournament and role == judging else ())
                  for role in plans}
    cost: dict[str, float] = {}
    models: dict[str, str] = {}
    unpriced: set[str] = set()
    not_priced: list[str] = []
    assumptions: dict[str, Any] = {}
    for role, p in plans.items():
        wanted = {op: counts[op] for op in operations[role]}
        answer = p.provider.estimate(role, wanted, p.options)
        if answer is None:
            not_priced.append(f"{role} ({p.name})")
            answer = {"cost": {}}
        for op in operations[role]:
            cost[op] = round(float(answer["cost"].get(op, 0.0)), 6)
        if answer.get("model"):
            models[role] = str(answer["model"])
        unpriced.update(answer.get("unpriced", ()))
        if answer.get("assumptions"):
            assumptions[role] = answer["assumptions"]
    cost.setdefault(COMPARE, 0.0)
    cost["llm"] = round(sum(cost[k] for k in LLM_KINDS), 6)
    params_out: dict[str, Any] = {"N": job.N, "M": job.M, "iterations": job.iterations}
    if tournament:
        params_out.update(ranking=job.ranking, votes=job.votes)
    result: dict[str, Any] = {
        "providers": job.providers,
        "params": params_out,
        "calls": counts,
        "currency": CURRENCY,
        "models": models,
        "cost": cost,
        "totalCost": round(cost["llm"] + cost["image"] + cost["vision"] + cost[COMPARE], 4),
        "unpriced": sorted(unpriced),
        "assumptions": {
            **_flat(assumptions),
            "note": "every candidate succeeds; retries and re-asks are extra; token counts are typical, not measured",
        },
    }
    if tournament:
        result["assumptions"]["comparisons"] = {
            "perIteration": comparisons(job.N, job.M, job.iterations), "votes": job.votes, "judgedBy": judging,
            "note": "at most: the merge tournament's bound; pairs that earlier verdicts decide are not asked",
        }
    if not_priced:
        result["note"] = f"not priced, counted at 0: {', '.join(not_priced)}"
    return result


def _flat(by_role: dict[str, Any]) -> dict[str, Any]:
    """The roles' assumptions in one object (tokens per call merged across roles)."""
    out: dict[str, Any] = {}
    for answer in by_role.values():
        for key, value in answer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = {**out[key], **value}
            else:
                out[key] = value
    return out
