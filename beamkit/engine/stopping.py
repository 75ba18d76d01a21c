"""Stopping rules (``stop_when``): when a search ends before its last iteration, and why.

The rules are read at iteration ends, the one barrier of the search, so a stopped job ends
with whole iterations and a beam ranked like any other. The image budget is also read
before an iteration starts, so no image call is started beyond it: the iteration that
would cross it runs with only the candidates that fit (docs/algorithm.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

StoppedBy = Literal["score", "plateau", "images", "usd"]
#: the order rules are reported in when several hold at once: a goal reached before a budget spent
ORDER: tuple[StoppedBy, ...] = ("score", "plateau", "images", "usd")


class Stopper:
    """The ``stop_when`` rules of one job, fed what each iteration ended with."""

    def __init__(self, rules: Mapping[str, float] | None, images_per_candidate: int) -> None:
        self.rules = dict(rules or {})
        self.per_candidate = images_per_candidate
        #: the best total after each finished iteration
        self.bests: list[float] = []

    def candidates_for(self, n: int, images_used: int) -> int:
        """How many of ``n`` candidates the image budget still allows (each renders ``per_candidate``)."""
        budget = self.rules.get("images")
        if budget is None:
            return n
        return max(0, min(n, (int(budget) - images_used) // self.per_candidate))

    def after(self, best: float | None, images_used: int, cost: float | None) -> StoppedBy | None:
        """The rule that ends the job after the iteration that just finished, or None to go on."""
        if best is not None:
            self.bests.append(best)
        held = {
            "score": best is not None and "score" in self.rules and best >= self.rules["score"],
            "plateau": self._plateau(),
            "images": self.candidates_for(1, images_used) == 0,
            "usd": cost is not None and "usd" in self.rules and cost >= self.rules["usd"],
        }
        return next((rule for rule in ORDER if held[rule]), None)

    def _plateau(self) -> bool:
        k = self.rules.get("plateau")
        if k is None or len(self.bests) <= k:
            return False
        # not improved in the last k iterations: the best now is no better than k iterations ago
        return self.bests[-1] <= self.bests[-1 - int(k)]


def total_cost(usage: Mapping[str, object]) -> float | None:
    """The dollars a job's providers report having spent (their usage's ``totalCost``)."""
    cost = usage.get("totalCost")
    return float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None
