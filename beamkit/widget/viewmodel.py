"""The widget's view model: one object that consumes beamkit events and knows what to show.

It is plain Python (no ipywidgets), so it is the same for a live ``Job``, a ``Result``
loaded from disk (its ``events.jsonl`` replayed, or events rebuilt from its candidates)
and a job followed on a server. ``apply(event)`` returns the names of the parts of the
view that changed; the widget sends only those, throttled.

Parts (each a JSON-ready value; see ``snapshot``):

``header``   prompt, parameters, status, error
``progress`` candidates done / total, failed, current iteration, dimension, operation
``rows``     finished iterations: one row of candidate cards each (frozen once finished)
``live_row`` the iteration in progress, or None
``beam``     keys of the current beam (``"i-c"``), best first
``best``     best so far: scores, WHAT / HOW / combined prompts, lineage back to iteration 0
``chart``    best and mean total score per iteration
``usage``    what the job's providers used and cost (calls, tokens, images, cost, per model), or None
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from .. import events as ev

Key = tuple[int, int]
PARTS = ("header", "progress", "rows", "live_row", "beam", "best", "chart", "usage")
TERMINAL_STATUSES = frozenset({"completed", "error", "cancelled", "interrupted"})


def key_str(key: Key) -> str:
    return f"{key[0]}-{key[1]}"


def _ref(d: dict[str, Any] | None) -> Key | None:
    if not d:
        return None
    return (int(d["iteration"]), int(d["candidateId"]))


def _num(v: Any) -> int | float:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def _rank(c: dict[str, Any]) -> tuple[float, int, int]:
    # the engine's order: best score first; on a tie the older candidate wins
    return (-(c.get("totalScore") or 0.0), c["iteration"], c["candidateId"])


class ViewModel:
    """What the widget shows, kept up to date by ``apply(event)``."""

    def __init__(self, source: str = "live") -> None:
        self.source = source  # "live", "loaded" or "remote"
        self.job_id: str | None = None
        self.config: dict[str, Any] = {}
        self.status = "pending"
        self.error: dict[str, str] | None = None
        self.duration_ms: int | None = None
        #: every candidate seen, by (iteration, candidateId): the event's fields, flattened
        self.candidates: dict[Key, dict[str, Any]] = {}
        #: iteration -> {"iteration", "dimension", "operation", "status", "keys": [...]}
        self.iterations: dict[int, dict[str, Any]] = {}
        #: the beam after each finished iteration, best first
        self.beams: dict[int, list[Key]] = {}
        self.current_iteration: int | None = None
        self.final_best: Key | None = None
        #: the provider set's usage dict, as the ``complete`` event (or metadata.json) has it
        self.usage_data: dict[str, Any] = {}
        self.events_seen = 0

    # -- input -----------------------------------------------------------------------------------

    def seed(self, job_id: str, config: dict[str, Any]) -> None:
        """What is known before the first event (a live job's parameters)."""
        self.job_id = job_id
        self.config = dict(config)

    def set_usage(self, usage: dict[str, Any] | None) -> set[str]:
        """The job's usage from elsewhere than a ``complete`` event (metadata.json, a cancelled job)."""
        if not usage or usage == self.usage_data:
            return set()
        self.usage_data = dict(usage)
        return {"usage"}

    def apply(self, e: dict[str, Any]) -> set[str]:
        """Take one event; return the parts of the view it changed."""
        kind = e.get("type")
        self.events_seen += 1
        if e.get("jobId") and not self.job_id:
            self.job_id = e["jobId"]
        if kind == ev.STARTED:
            self.config = {**self.config, **(e.get("config") or {})}
            if self.status == "pending":
                self.status = "running"
            return {"header", "progress"}
        if kind == ev.ITERATION:
            return self._iteration(e)
        if kind == ev.CANDIDATE:
            return self._candidate(e)
        if kind == ev.COMPLETE:
            result = e.get("result") or {}
            self.status = "completed"
            self.duration_ms = result.get("duration", self.duration_ms)
            best = result.get("bestCandidate")
            if best and best.get("iteration") is not None:
                self.final_best = (best["iteration"], best["candidateId"])
            return {"header", "progress", "best", "live_row"} | self.set_usage(result.get("usage"))
        if kind == ev.ERROR:
            self.error = dict(e.get("error") or {})
            self.status = "cancelled" if self.error.get("code") == "CANCELLED" else "error"
            return {"header", "progress", "live_row"}
        return set()

    def apply_all(self, events: Iterable[dict[str, Any]]) -> set[str]:
        changed: set[str] = set()
        for e in events:
            changed |= self.apply(e)
        return changed

    def finish(self, status: str) -> set[str]:
        """Mark a stream that ended without a terminal event (a session whose process died)."""
        if self.status in ("pending", "running"):
            self.status = status
            return {"header", "live_row"}
        return set()

    def _row(self, i: int, dimension: str | None = None, operation: str | None = None) -> dict[str, Any]:
        row = self.iterations.get(i)
        if row is None:
            row = self.iterations[i] = {
                "iteration": i,
                "dimension": dimension or ("how" if i > 0 and i % 2 == 0 else "what"),
                "operation": operation or ("expand" if i == 0 else "refine"),
                "status": "processing",
                "keys": [],
            }
        return row

    def _iteration(self, e: dict[str, Any]) -> set[str]:
        i = int(e["iteration"])
        row = self._row(i, e.get("dimension"), e.get("operation"))
        if e.get("totalIterations") and not self.config.get("iterations"):
            self.config["iterations"] = e["totalIterations"]
        if self.status == "pending":
            self.status = "running"
        if e.get("status") == "completed":
            row["status"] = "completed"
            self.beams[i] = [_ref(r) for r in e.get("beam") or []]  # type: ignore[misc]
            return {"rows", "live_row", "beam", "progress", "best", "chart"}
        self.current_iteration = i
        return {"live_row", "progress", "header"}

    def _candidate(self, e: dict[str, Any]) -> set[str]:
        key = (int(e["iteration"]), int(e["candidateId"]))
        score = e.get("score") or {}
        ok = e.get("status", "ok") == "ok" and e.get("score") is not None
        self.candidates[key] = {
            "iteration": key[0],
            "candidateId": key[1],
            "dimension": e.get("dimension"),
            "parent": _ref(e.get("parent")),
            "whatPrompt": e.get("whatPrompt", ""),
            "howPrompt": e.get("howPrompt", ""),
            "combinedPrompt": e.get("combinedPrompt", ""),
            "imageId": e.get("imageId"),
            "imagePath": e.get("imagePath"),
            "status": "ok" if ok else "failed",
            "totalScore": score.get("totalScore"),
            "alignmentScore": score.get("alignmentScore"),
            "aestheticScore": score.get("aestheticScore"),
            "analysis": e.get("analysis", ""),
            "error": e.get("error"),
        }
        if e.get("totalCandidates") and not self.config.get("_total"):
            self.config["_total"] = e["totalCandidates"]
        row = self._row(key[0], e.get("dimension"))
        if key not in row["keys"]:
            row["keys"].append(key)
        changed = {"live_row" if row["status"] != "completed" else "rows", "progress", "chart"}
        if ok and self._best_key() == key:
            changed.add("best")
        return changed

    # -- derived ---------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def total(self) -> int:
        if self.config.get("_total"):
            return int(self.config["_total"])
        n, iters = self.config.get("N"), self.config.get("iterations")
        return int(n) * int(iters) if n and iters else 0

    def ok_candidates(self) -> Iterator[dict[str, Any]]:
        return (c for c in self.candidates.values() if c["status"] == "ok")

    def _best_key(self) -> Key | None:
        if self.final_best and self.final_best in self.candidates:
            return self.final_best
        best = min(self.ok_candidates(), key=_rank, default=None)
        return None if best is None else (best["iteration"], best["candidateId"])

    @property
    def best_key(self) -> Key | None:
        return self._best_key()

    @property
    def current_beam(self) -> list[Key]:
        return self.beams[max(self.beams)] if self.beams else []

    def lineage(self, key: Key | None) -> list[Key]:
        chain: list[Key] = []
        seen: set[Key] = set()
        while key is not None and key in self.candidates and key not in seen:
            seen.add(key)
            chain.append(key)
            key = self.candidates[key]["parent"]
        return chain[::-1]

    def series(self) -> list[dict[str, Any]]:
        """Per iteration with a scored candidate: the best so far (the beam's top) and the iteration's mean."""
        out: list[dict[str, Any]] = []
        best_so_far: float | None = None
        for i in sorted(self.iterations):
            scores = [c["totalScore"] for c in self.ok_candidates() if c["iteration"] == i and c["totalScore"] is not None]
            if not scores:
                continue
            top = max(scores)
            best_so_far = top if best_so_far is None else max(best_so_far, top)
            out.append({
                "iteration": i,
                "best": round(best_so_far, 2),
                "mean": round(sum(scores) / len(scores), 2),
                "complete": self.iterations[i]["status"] == "completed",
            })
        return out

    # -- parts sent to the front end -------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        c = self.config
        params = {k: c.get(k) for k in ("N", "M", "iterations", "alpha", "temperature", "seed", "providers") if k in c}
        return {
            "jobId": self.job_id,
            "prompt": c.get("prompt", ""),
            "params": params,
            "status": self.status,
            "error": self.error,
            "source": self.source,
            "durationMs": self.duration_ms,
        }

    def progress(self) -> dict[str, Any]:
        failed = sum(1 for c in self.candidates.values() if c["status"] == "failed")
        i = self.current_iteration
        row = self.iterations.get(i) if i is not None else None
        return {
            "done": len(self.candidates),
            "total": self.total,
            "failed": failed,
            "iteration": i,
            "totalIterations": self.config.get("iterations"),
            "dimension": row["dimension"] if row else None,
            "operation": row["operation"] if row else None,
        }

    def usage(self) -> dict[str, Any] | None:
        """A summary of ``usage_data`` for the usage line: totals, the cost as text, one row per model.

        The openai and offline sets give ``{"models": {name: {...}}, "totalCost", "currency"}``;
        a set that only counts (the simulated one) gives ``{"calls": n}``: then only calls are shown.
        """
        u = self.usage_data
        if not u:
            return None
        models = u.get("models") if isinstance(u.get("models"), dict) else {}
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

    def _card(self, key: Key, beam: set[Key] | None) -> dict[str, Any]:
        c = self.candidates[key]
        card: dict[str, Any] = {
            "key": key_str(key),
            "id": key[1],
            "parent": key_str(c["parent"]) if c["parent"] else None,
            "status": c["status"],
        }
        if c["status"] == "ok":
            card.update(total=c["totalScore"], alignment=c["alignmentScore"], aesthetic=c["aestheticScore"])
            if beam is not None:
                card["kept"] = key in beam
        else:
            card["error"] = c.get("error") or {"message": "failed", "code": "PROVIDER_ERROR"}
        return card

    def row(self, i: int) -> dict[str, Any]:
        r = self.iterations[i]
        beam = set(self.beams[i]) if i in self.beams else None
        keys = sorted(r["keys"], key=lambda k: k[1])
        status = r["status"]
        if status != "completed" and self.done:
            status = "stopped"
        return {
            "iteration": i,
            "dimension": r["dimension"],
            "operation": r["operation"],
            "status": status,
            "expected": self.config.get("N"),
            "cards": [self._card(k, beam) for k in keys],
        }

    def rows(self) -> list[dict[str, Any]]:
        return [self.row(i) for i in sorted(self.iterations) if self.iterations[i]["status"] == "completed"]

    def live_row(self) -> dict[str, Any] | None:
        open_rows = [i for i in sorted(self.iterations) if self.iterations[i]["status"] != "completed"]
        return self.row(open_rows[-1]) if open_rows else None

    def beam(self) -> list[str]:
        return [key_str(k) for k in self.current_beam]

    def best(self) -> dict[str, Any] | None:
        key = self._best_key()
        if key is None:
            return None
        c = self.candidates[key]
        steps = []
        for k in self.lineage(key):
            s = self.candidates[k]
            step = {
                "key": key_str(k),
                "iteration": k[0],
                "candidateId": k[1],
                "operation": "expand" if k[0] == 0 else "refine",
                "dimension": s["dimension"],
                "total": s["totalScore"],
            }
            # what this step changed: both prompts at the expansion, one dimension after
            if k[0] == 0:
                step["what"], step["how"] = s["whatPrompt"], s["howPrompt"]
            elif s["dimension"] == "how":
                step["how"] = s["howPrompt"]
            else:
                step["what"] = s["whatPrompt"]
            steps.append(step)
        return {
            "key": key_str(key),
            "iteration": key[0],
            "candidateId": key[1],
            "total": c["totalScore"],
            "alignment": c["alignmentScore"],
            "aesthetic": c["aestheticScore"],
            "what": c["whatPrompt"],
            "how": c["howPrompt"],
            "combined": c["combinedPrompt"],
            "analysis": c.get("analysis", ""),
            "final": self.status == "completed",
            "lineage": steps,
        }

    def detail(self, key: Key) -> dict[str, Any] | None:
        """Everything about one candidate (shown when the user clicks its card)."""
        c = self.candidates.get(key)
        if c is None:
            return None
        return {
            "key": key_str(key),
            **{k: v for k, v in c.items() if k not in ("imagePath",)},
            "parent": key_str(c["parent"]) if c["parent"] else None,
            "lineage": [key_str(k) for k in self.lineage(key)],
        }

    def part(self, name: str) -> Any:
        return getattr(self, name)()

    def chart(self) -> list[dict[str, Any]]:
        return self.series()

    def snapshot(self) -> dict[str, Any]:
        return {name: self.part(name) for name in PARTS}


def events_of_result(result: Any) -> list[dict[str, Any]]:
    """Events that rebuild a Result's view: its ``events.jsonl`` when the folder has one,
    otherwise events made from its candidates and beams (same shapes as the engine's)."""
    from .. import storage

    folder = getattr(result, "folder", None)
    if folder is not None:
        events = storage.read_events(folder)
        if events:
            return events
    return synthesize_events(result)


def synthesize_events(result: Any) -> list[dict[str, Any]]:
    from ..candidate import dimension_of

    job_id, cfg = result.job_id, dict(result.config or {})
    n = cfg.get("N") or 0
    iters = cfg.get("iterations") or (max(result.beams) + 1 if result.beams else 0)
    out = [ev.started(job_id, cfg)]
    by_iter: dict[int, list[Any]] = {}
    for c in result.candidates:
        by_iter.setdefault(c.iteration, []).append(c)
    for i in sorted(set(by_iter) | set(result.beams)):
        out.append(ev.iteration(job_id, i, iters, dimension_of(i), "processing"))
        for c in by_iter.get(i, []):
            if c.status == "pending":
                continue
            out.append(ev.candidate(job_id, c, n * iters))
        if i in result.beams:
            beam = [result.candidate(k) for k in result.beams[i]]
            out.append(ev.iteration(job_id, i, iters, dimension_of(i), "completed", beam=beam))
    if result.status == "completed":
        out.append(ev.complete(job_id, result.to_dict()))
    elif result.status in ("error", "cancelled") and result.error:
        out.append(ev.error(job_id, result.error.get("message", ""), result.error.get("code", "INTERNAL_ERROR")))
    return out
