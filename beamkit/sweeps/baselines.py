"""Baselines at an equal image budget, written as job parameters derived from a configuration.

A configuration's budget is the number of pictures it may render: ``N x iterations``
(times ``seeds_per_prompt`` once the engine has it). Each baseline gets the same budget:

- ``greedy``: the same search with a beam of one (``M = 1``);
- ``best-of-n``: ``N x iterations`` expansions in one iteration, no refinement. ``N`` is
  capped at 64 (the job parameter's limit), so a budget above 64 leaves it short: its
  rows' ``images`` say how many it really rendered;
- ``rewrite-once``: one expansion rendered with ``budget`` seeds, best kept;
- ``none``: the user's prompt as is, rendered with ``budget`` seeds, best kept.

The last two need two engine parameters that the engine does not have yet (issue 14,
item 5): :data:`SEEDS_PER_PROMPT` and :data:`UNEXPANDED`. They are asked for here by
those names, and plug in once ``beamkit.start`` accepts them.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

from ..errors import InvalidRequest

#: the engine parameter that renders each combined prompt with k seeds and keeps the best picture
SEEDS_PER_PROMPT = "seeds_per_prompt"
#: the engine parameter that renders the user's prompt as is (no expansion, no LLM call)
UNEXPANDED = "unexpanded"
#: the N limit of a job (SPEC section 1)
MAX_N = 64

NAMES = ("none", "rewrite-once", "best-of-n", "greedy")


class NeedsEngineSupport(InvalidRequest):
    """A baseline asks for an engine parameter that this beamkit does not have yet."""


def budget(params: dict[str, Any]) -> int:
    """The pictures a job with these parameters may render."""
    return int(params.get("N", 9)) * int(params.get("iterations", 3)) * int(params.get(SEEDS_PER_PROMPT, 1) or 1)


def engine_accepts(name: str) -> bool:
    """Whether ``beamkit.start`` takes the job parameter ``name``."""
    from .. import api

    return name in inspect.signature(api.start).parameters


def _require(kind: str, *names: str) -> None:
    missing = [n for n in names if not engine_accepts(n)]
    if missing:
        raise NeedsEngineSupport(
            f"baseline '{kind}' needs engine support: the job parameter(s) {', '.join(missing)} "
            f"(issue 14, item 5) are not in this beamkit yet", "baselines")


def _none(params: dict[str, Any]) -> dict[str, Any]:
    _require("none", SEEDS_PER_PROMPT, UNEXPANDED)
    return {**params, "N": 1, "M": 1, "iterations": 1, SEEDS_PER_PROMPT: budget(params), UNEXPANDED: True}


def _rewrite_once(params: dict[str, Any]) -> dict[str, Any]:
    _require("rewrite-once", SEEDS_PER_PROMPT)
    return {**params, "N": 1, "M": 1, "iterations": 1, SEEDS_PER_PROMPT: budget(params)}


def _best_of_n(params: dict[str, Any]) -> dict[str, Any]:
    n = int(params.get("N", 9)) * int(params.get("iterations", 3))
    if n > MAX_N:
        warnings.warn(f"best-of-n: N x iterations = {n} is above the N limit {MAX_N}; it runs with N = {MAX_N}, "
                      f"a smaller budget than its configuration's", stacklevel=4)
        n = MAX_N
    return {**params, "N": n, "M": min(int(params.get("M", 3)), n), "iterations": 1}


def _greedy(params: dict[str, Any]) -> dict[str, Any]:
    return {**params, "M": 1}


DERIVE: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "none": _none, "rewrite-once": _rewrite_once, "best-of-n": _best_of_n, "greedy": _greedy,
}


def derive(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The job parameters of baseline ``kind`` at the budget of a configuration's ``params``."""
    if kind not in DERIVE:
        raise InvalidRequest(f"unknown baseline '{kind}' (known: {', '.join(NAMES)})", "baselines")
    return DERIVE[kind](params)


__all__ = ["MAX_N", "NAMES", "SEEDS_PER_PROMPT", "UNEXPANDED", "NeedsEngineSupport", "budget", "derive", "engine_accepts"]
