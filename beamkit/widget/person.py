"""The widget's person-in-the-loop panel: a steered job's review controls, and the compare mode
that rates pairs (docs/human-in-the-loop.md). It reads and answers a Job or a Result; the
widget sends its ``payload()`` as the ``person`` trait and hands it the front end's messages.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import BeamkitError
from ..ratings import Ref, agreement, model_order, next_pair, parse_ref

log = logging.getLogger(__name__)


def _key(ref: Ref) -> str:
    return f"{ref[0]}-{ref[1]}"


class PersonPanel:
    def __init__(self, target: Any) -> None:
        #: a Job (live: review and ratings) or a Result (finished or loaded: ratings)
        self.target = target
        self.comparing = False
        #: pairs the person skipped in this view: not offered again here (nothing is recorded)
        self.skipped: list[tuple[Ref, Ref]] = []
        #: the last answer's problem, shown under the controls
        self.message = ""

    def _result(self) -> Any:
        return self.target.result if hasattr(self.target, "keep") else self.target

    def _ratings(self) -> list[dict[str, Any]]:
        return list(self.target.ratings)

    def _order(self) -> list[Ref]:
        r = self._result()
        last = max(r.beams) if r.beams else None
        return model_order(r.candidates, r.beams[last] if last is not None else ())

    def payload(self) -> dict[str, Any]:
        """What the front end draws: ``review`` (or None), ``compare`` (or None), ``agreement``, ``message``."""
        out: dict[str, Any] = {"review": None, "compare": None, "agreement": None, "message": self.message,
                               "ratings": 0, "canRate": False}
        if getattr(self.target, "reviewing", False):
            state = self.target.state
            scores = {k: c.total_score for k, c in state.candidates.items()}
            out["review"] = {"iteration": state.reviewing, "proposed": [_key(k) for k in state.proposed],
                             "pool": [{"key": _key(k), "score": scores.get(k)} for k in self.target.pool],
                             "M": self.target.params.M}
        try:
            ratings = self._ratings()
            order = self._order()
        except Exception:  # a session that cannot be read must not break the view
            log.debug("beamkit widget: ratings unavailable", exc_info=True)
            return out
        out["ratings"] = len(ratings)
        out["canRate"] = len(order) >= 2
        if self.comparing:
            pair = next_pair(order, ratings, self.skipped)
            out["compare"] = None if pair is None else {"a": _key(pair[0]), "b": _key(pair[1])}
            out["compareDone"] = pair is None
        if ratings:
            try:
                out["agreement"] = agreement(ratings, order)
            except ImportError:
                out["agreement"] = None
        return out

    def handle(self, content: dict[str, Any]) -> bool:
        """Take one message from the front end; True when the payload changed."""
        kind = content.get("type")
        self.message = ""
        try:
            if kind == "compare":
                self.comparing = bool(content.get("on"))
            elif kind == "rate":
                winner = content.get("winner")
                if winner == "skip":
                    self.skipped.append((parse_ref(content.get("a"), "a"), parse_ref(content.get("b"), "b")))
                else:
                    self.target.rate(content.get("a"), content.get("b"), winner)
            elif kind == "keep":
                self.target.keep(content.get("keys"))
            elif kind == "stop_review":
                self.target.keep(None)
            else:
                return False
        except BeamkitError as exc:
            self.message = exc.message
        return True
