"""The widget's view model: what the widget shows, drawn from the one reducer.

It is plain Python (no ipywidgets), so it is the same for a live ``Job``, a ``Result``
loaded from disk and a job followed on a server. ``apply(event)`` hands the event to a
``SessionState`` (``beamkit.state``), which knows what events mean and answers with the
parts of the view that changed; the widget sends only those, throttled. This module only
says how each part looks.

Parts (each a JSON-ready value; see ``snapshot``):

``header``   prompt, parameters, status, error
``progress`` candidates done / total, failed, current iteration, dimension, operation
``rows``     finished iterations: one row of candidate cards each (frozen once finished)
``live_row`` the iteration in progress, or None
``beam``     keys of the current beam (``"i-c"``), best first
``best``     best so far: scores, WHAT / HOW / combined prompts, lineage back to iteration 0
``chart``    best and mean total score per iteration
``usage``    what the job's providers used and cost (calls, tokens, images, cost, per model), or None

A tournament job (``ranking="tournament"``) adds each kept card's ``rank`` and each row's
``ranks``, and the detail view's ``tournament``: the candidate's ranks and its wins and losses
with the judge's reasons. All of it is read from the state (the beams, best first, as the
completed ``iteration`` events gave them with their ``rank``; the ``comparison`` events), never
ranked here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..candidate import EXPAND, HOW, Candidate, Key, operation_of
from ..errors import ErrorCode
from ..events import Event, JobStatus
from ..state import PARTS, SessionState

log = logging.getLogger(__name__)

#: a view's own status when its stream broke: the job may still be running, somewhere
DISCONNECTED = "disconnected"

#: the most characters of a judge's reason that the detail view gets: enough to read, while a
#: chatty judge over many comparisons cannot swell what is sent (the whole reason is in events.jsonl)
REASON_CHARS = 240

__all__ = ["ViewModel", "PARTS", "Key", "key_str", "state_of_result", "DISCONNECTED", "REASON_CHARS"]


def key_str(key: Key) -> str:
    return f"{key[0]}-{key[1]}"


def _cut(text: Any, limit: int = REASON_CHARS) -> str:
    text = text if isinstance(text, str) else ""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _num(v: Any) -> int | float:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def flat(c: Candidate) -> dict[str, Any]:
    """A candidate as the widget's pictures and detail view read it (camelCase, as on the wire)."""
    return {
        "iteration": c.iteration,
        "candidateId": c.candidate_id,
        "dimension": c.dimension,
        "parent": c.parent,
        "whatPrompt": c.what_prompt,
        "howPrompt": c.how_prompt,
        "combinedPrompt": c.combined_prompt,
        "imageId": c.image_id,
        "imagePath": c.image_path,
        "status": "ok" if c.ok else "failed",
        "totalScore": c.total_score,
        "alignmentScore": c.alignment_score,
        "aestheticScore": c.aesthetic_score,
        "analysis": c.analysis,
        "strengths": list(c.strengths),
        "weaknesses": list(c.weaknesses),
        "critique": c.critique,
        "imageMetadata": dict(c.image_metadata),
        "error": c.error,
    }


class _Cards(Mapping[Key, dict[str, Any]]):
    """``ViewModel.candidates``: each candidate of the state, flattened when read."""

    def __init__(self, state: SessionState) -> None:
        self._state = state

    def __getitem__(self, key: Key) -> dict[str, Any]:
        return flat(self._state.candidates[key])

    def __iter__(self) -> Iterator[Key]:
        return iter(self._state.candidates)

    def __len__(self) -> int:
        return len(self._state.candidates)


class ViewModel:
    """What the widget shows, kept up to date by ``apply(event)``."""

    def __init__(self, source: str = "live", state: SessionState | None = None) -> None:
        self.source = source  # "live", "loaded" or "remote"
        self.state = state if state is not None else SessionState()
        self._lost: str | None = None
        #: ``beamkit.estimate`` of the job before it ran (a live job of this kernel), or None
        self.estimate: dict[str, Any] | None = None

    # -- input -----------------------------------------------------------------------------------

    def seed(self, job_id: str, config: Mapping[str, Any]) -> None:
        """What is known before the first event (a live job's parameters)."""
        self.state.job_id = self.state.job_id or job_id
        self.state.config = {**config, **self.state.config}

    def set_usage(self, usage: Mapping[str, Any] | None) -> set[str]:
        """The job's usage from elsewhere than a ``complete`` event (metadata.json, a cancelled job)."""
        return self.state.set_usage(usage)

    def set_estimate(self, estimate: Mapping[str, Any] | None) -> set[str]:
        self.estimate = None if estimate is None else dict(estimate)
        return {"header"}

    @property
    def paid(self) -> bool:
        """Whether the job's providers charge for calls (as estimated, or as counted so far)."""
        for money in (self.estimate or {}, self.usage_data):
            if _num(money.get("totalCost")) > 0 or money.get("unpriced"):
                return True
        return False

    def cost(self) -> dict[str, Any] | None:
        """The header's money line for paid providers: the estimate before the job ran and what
        it has cost so far (``{"estimate", "spent", "final", "unpriced"}``, texts), else None."""
        if not self.paid:
            return None
        est, used = self.estimate or {}, self.usage_data
        currency = str(used.get("currency") or est.get("currency") or "USD")

        def money(x: Any) -> str:
            return f"${float(x):.4f}" if currency == "USD" else f"{float(x):.4f} {currency}"

        return {
            "estimate": money(est["totalCost"]) if isinstance(est.get("totalCost"), (int, float)) else None,
            "spent": money(used["totalCost"]) if isinstance(used.get("totalCost"), (int, float)) else None,
            "final": self.done,
            "unpriced": sorted({str(m) for m in [*(est.get("unpriced") or []), *(used.get("unpriced") or [])]}),
        }

    def apply(self, e: Event | Mapping[str, Any]) -> set[str]:
        """Take one event; return the parts of the view it changed. A malformed event is skipped."""
        try:
            return self.state.apply(e)
        except ValueError as exc:
            log.warning("beamkit widget: skipped an event: %s", exc)
            return set()

    def apply_all(self, events: Iterable[Event | Mapping[str, Any]]) -> set[str]:
        changed: set[str] = set()
        for e in events:
            changed |= self.apply(e)
        return changed

    def finish(self, status: str, error: Mapping[str, Any] | None = None) -> set[str]:
        """The stream ended without a terminal event: the job was ``interrupted`` (its process died),
        ended with an ``error`` known otherwise (an unknown job), or the view is ``disconnected``."""
        if self.state.done or self._lost:
            return set()
        if status in JobStatus._value2member_map_:
            return self.state.end(JobStatus(status), error)
        self._lost = status
        if error is not None:
            self.state.error = dict(error)
        return {"header", "live_row"}

    # -- what the state knows, as the widget asks for it -----------------------------------------

    @property
    def job_id(self) -> str | None:
        return self.state.job_id

    @property
    def config(self) -> dict[str, Any]:
        return self.state.config

    @property
    def status(self) -> str:
        return self._lost or self.state.status.value

    @property
    def error(self) -> dict[str, Any] | None:
        return self.state.error

    @error.setter
    def error(self, value: dict[str, Any] | None) -> None:
        self.state.error = value

    @property
    def duration_ms(self) -> int | None:
        return self.state.duration_ms

    @property
    def usage_data(self) -> dict[str, Any]:
        return self.state.usage

    @property
    def events_seen(self) -> int:
        return self.state.events_applied

    @property
    def candidates(self) -> Mapping[Key, dict[str, Any]]:
        return _Cards(self.state)

    def candidate(self, key: Key) -> dict[str, Any]:
        return flat(self.state.candidates[key])

    @property
    def done(self) -> bool:
        return self.state.done

    @property
    def total(self) -> int:
        return self.state.total_candidates

    @property
    def total_iterations(self) -> int | None:
        return self.state.total_iterations

    @property
    def best_key(self) -> Key | None:
        return self.state.best_key

    @property
    def current_beam(self) -> list[Key]:
        return self.state.current_beam

    def lineage(self, key: Key | None) -> list[Key]:
        return [] if key is None else self.state.lineage(key)

    # -- a tournament job -------------------------------------------------------------------------

    @property
    def tournament(self) -> bool:
        return self.config.get("ranking") == "tournament"

    def ranks(self, iteration: int) -> dict[Key, int]:
        """A tournament job's ranks in the beam kept after ``iteration`` (1 for the best), else {}.

        The state keeps each beam in the order of its completed ``iteration`` event's entries,
        which a tournament job numbers with their ``rank`` in that same order."""
        if not self.tournament:
            return {}
        return {k: n for n, k in enumerate(self.state.beams.get(iteration, ()), 1)}

    def bouts(self, key: Key) -> list[dict[str, Any]]:
        """The comparisons ``key`` took part in, in the order the judge gave them: ``{opponent, won,
        reason, iteration, shownFirst}`` (whether ``key`` was the picture shown first, which the
        judge's reason may speak of)."""
        out = []
        for c in self.state.comparisons:
            if key not in (c.a, c.b):
                continue
            me = "a" if key == c.a else "b"
            out.append({"opponent": key_str(c.b if me == "a" else c.a), "won": c.winner == me,
                        "reason": _cut(c.reason), "iteration": c.iteration, "shownFirst": c.shown_first == me})
        return out

    def standing(self, key: Key) -> dict[str, Any] | None:
        """The detail view's tournament section for ``key``: its rank in each beam it was kept in,
        its wins and losses and each comparison; None for a score-ranked job."""
        if not self.tournament:
            return None
        bouts = self.bouts(key)
        wins = sum(1 for b in bouts if b["won"])
        ranks = [{"iteration": i, "rank": r} for i in sorted(self.state.beams) if (r := self.ranks(i).get(key))]
        return {"ranks": ranks, "wins": wins, "losses": len(bouts) - wins, "bouts": bouts}

    def series(self) -> list[dict[str, Any]]:
        """Per iteration with a scored candidate: the best so far (the beam's top) and the iteration's mean."""
        return [
            {"iteration": p.iteration, "best": round(p.best, 2), "mean": round(p.mean, 2), "complete": p.complete}
            for p in self.state.series()
        ]

    # -- parts sent to the front end -------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        c = self.config
        params: dict[str, Any] = {
            k: c.get(k) for k in ("N", "M", "iterations", "alpha", "temperature", "seed", "providers") if k in c
        }
        if "iterations" not in params and self.total_iterations:
            params["iterations"] = self.total_iterations
        if self.tournament:  # the default (score) goes unsaid
            params.update({k: c[k] for k in ("ranking", "votes") if k in c})
        return {
            "jobId": self.job_id,
            "prompt": c.get("prompt", ""),
            "params": params,
            "status": self.status,
            "error": self.error,
            "source": self.source,
            "durationMs": self.duration_ms,
            "cost": self.cost(),
        }

    def progress(self) -> dict[str, Any]:
        i = self.state.current_iteration
        row = self.state.rows.get(i) if i is not None else None
        return {
            "done": len(self.state.candidates),
            "total": self.total,
            "failed": self.state.failed,
            "iteration": i,
            "totalIterations": self.total_iterations,
            "dimension": row.dimension if row else None,
            "operation": row.operation if row else None,
        }

    def usage(self) -> dict[str, Any] | None:
        """A summary of ``usage_data`` for the usage line: totals, the cost as text, one row per model.

        The openai and offline sets give ``{"models": {name: {...}}, "totalCost", "currency"}``;
        a set that only counts (the simulated one) gives ``{"calls": n}``: then only calls are shown.
        """
        u = self.usage_data
        if not u:
            return None
        models: dict[str, Any] = u["models"] if isinstance(u.get("models"), dict) else {}
        rows = [
            {"model": str(name), **{k: _num(m.get(k)) for k in ("calls", "inputTokens", "outputTokens", "images", "cost")}}
            for name, m in models.items()
            if isinstance(m, dict)
        ]
        out: dict[str, Any] = {"calls": sum(r["calls"] for r in rows) if rows else _num(u.get("calls")), "models": rows}
        if rows:
            for k in ("inputTokens", "outputTokens", "images"):
                out[k] = sum(r[k] for r in rows)
        if isinstance(u.get("totalCost"), (int, float)):
            cost, currency = float(u["totalCost"]), str(u.get("currency") or "USD")
            unpriced = [str(m) for m in u.get("unpriced") or []]
            if cost == 0 and not unpriced:
                provider = self.config.get("providers")
                text = f"free ({provider})" if isinstance(provider, str) and provider else "free"
            else:
                text = f"${cost:.4f}" if currency == "USD" else f"{cost:.4f} {currency}"
                if unpriced:
                    text += " + unpriced " + ", ".join(unpriced)
            out.update(cost=cost, currency=currency, costText=text, unpriced=unpriced)
        if not out["calls"] and "cost" not in out:
            return None  # nothing to say
        return out

    def _card(self, key: Key, beam: set[Key] | None, ranks: Mapping[Key, int]) -> dict[str, Any]:
        c = self.state.candidates[key]
        card: dict[str, Any] = {
            "key": key_str(key),
            "id": key[1],
            "parent": key_str(c.parent) if c.parent else None,
            "status": "ok" if c.ok else "failed",
        }
        if c.ok:
            card.update(total=c.total_score, alignment=c.alignment_score, aesthetic=c.aesthetic_score,
                        strengths=list(c.strengths), weaknesses=list(c.weaknesses))
            if beam is not None:
                card["kept"] = key in beam
            if key in ranks:
                card["rank"] = ranks[key]
        else:
            card["error"] = c.error or {"message": "failed", "code": ErrorCode.PROVIDER_ERROR}
        card["critique"] = c.critique
        return card

    def row(self, i: int) -> dict[str, Any]:
        r = self.state.rows[i]
        beam = set(self.state.beams[i]) if i in self.state.beams else None
        status: str = r.status
        if not r.completed and self.done:
            status = "stopped"
        ranks = self.ranks(i)
        out: dict[str, Any] = {
            "iteration": i,
            "dimension": r.dimension,
            "operation": r.operation,
            "status": status,
            "expected": self.config.get("N"),
            "cards": [self._card(k, beam, ranks) for k in sorted(r.keys, key=lambda k: k[1])],
        }
        if ranks:  # the whole beam's: a parent carried over into it has a rank here too
            out["ranks"] = {key_str(k): n for k, n in ranks.items()}
        return out

    def rows(self) -> list[dict[str, Any]]:
        return [self.row(i) for i in sorted(self.state.rows) if self.state.rows[i].completed]

    def live_row(self) -> dict[str, Any] | None:
        row = self.state.open_row()
        return None if row is None else self.row(row.iteration)

    def beam(self) -> list[str]:
        return [key_str(k) for k in self.current_beam]

    def best(self) -> dict[str, Any] | None:
        key = self.best_key
        if key is None:
            return None
        c = self.state.candidates[key]
        steps = []
        for k in self.lineage(key):
            s = self.state.candidates[k]
            step: dict[str, Any] = {
                "key": key_str(k),
                "iteration": k[0],
                "candidateId": k[1],
                "operation": operation_of(k[0]),
                "dimension": s.dimension,
                "total": s.total_score,
            }
            # what this step changed: both prompts at the expansion, one dimension after, and why
            if operation_of(k[0]) == EXPAND:
                step["what"], step["how"] = s.what_prompt, s.how_prompt
            else:
                if s.dimension == HOW:
                    step["how"] = s.how_prompt
                else:
                    step["what"] = s.what_prompt
                step["critique"] = s.critique
            steps.append(step)
        return {
            "key": key_str(key),
            "iteration": key[0],
            "candidateId": key[1],
            "total": c.total_score,
            "alignment": c.alignment_score,
            "aesthetic": c.aesthetic_score,
            "what": c.what_prompt,
            "how": c.how_prompt,
            "combined": c.combined_prompt,
            "analysis": c.analysis,
            "strengths": list(c.strengths),
            "weaknesses": list(c.weaknesses),
            "critique": c.critique,
            "final": self.state.status == JobStatus.COMPLETED,
            "lineage": steps,
        }

    def detail(self, key: Key) -> dict[str, Any] | None:
        """Everything about one candidate (shown when the user clicks its card)."""
        c = self.state.candidates.get(key)
        if c is None:
            return None
        d = flat(c)
        del d["imagePath"]
        out = {
            "key": key_str(key),
            **d,
            "parent": key_str(c.parent) if c.parent else None,
            "lineage": [key_str(k) for k in self.lineage(key)],
        }
        standing = self.standing(key)
        if standing is not None:
            out["tournament"] = standing
        return out

    def part(self, name: str) -> Any:
        return getattr(self, name)()

    def chart(self) -> list[dict[str, Any]]:
        return self.series()

    def snapshot(self) -> dict[str, Any]:
        return {name: self.part(name) for name in PARTS}


def state_of_result(result: Any) -> SessionState:
    """The state behind a view of a ``Result``: its session's events (which also say which
    iteration had begun when it stopped) with the Result's own record over them."""
    from .. import storage

    events: list[Any] = []
    folder = getattr(result, "folder", None)
    if folder is not None:
        events = storage.read_events(folder)
    return SessionState.from_result(result, events)
