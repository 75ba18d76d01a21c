"""The outcome of a job, live or loaded back from its session folder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import events as ev
from . import storage
from .candidate import Candidate
from .errors import NotFound

Ref = tuple[int, int]


@dataclass
class Result:
    job_id: str
    config: dict[str, Any]
    #: "completed", "error", "cancelled", "running" (live) or "interrupted" (its process died)
    status: str
    candidates: list[Candidate] = field(default_factory=list)
    #: the kept candidates after each iteration, best first
    beams: dict[int, list[Ref]] = field(default_factory=dict)
    duration_ms: int | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] | None = None
    folder: Path | None = None

    def candidate(self, ref: Ref) -> Candidate:
        for c in self.candidates:
            if c.key == tuple(ref):
                return c
        raise KeyError(ref)

    @property
    def best(self) -> Candidate | None:
        """The best of the last beam (or, for an unfinished job, of everything scored)."""
        if self.beams:
            last = self.beams[max(self.beams)]
            if last:
                return self.candidate(last[0])
        scored = [c for c in self.candidates if c.ok]
        return min(scored, key=Candidate.rank_key) if scored else None

    @property
    def iterations_done(self) -> int:
        return len(self.beams)

    def lineage(self, cand: Candidate | None = None) -> list[Ref]:
        """From iteration 0 down to ``cand`` (default: the best), each as (iteration, candidateId)."""
        cand = cand or self.best
        chain: list[Ref] = []
        while cand is not None:
            chain.append(cand.key)
            cand = self.candidate(cand.parent) if cand.parent else None
        return chain[::-1]

    def best_by_iteration(self) -> list[float]:
        return [self.candidate(self.beams[i][0]).total_score or 0.0 for i in sorted(self.beams) if self.beams[i]]

    def to_dict(self) -> dict[str, Any]:
        """Equal to the ``result`` of the job's ``complete`` event."""
        best = self.best
        best_dict = None
        if best is not None:
            best_dict = {
                "whatPrompt": best.what_prompt,
                "howPrompt": best.how_prompt,
                "combinedPrompt": best.combined_prompt,
                "imagePath": best.image_path,
                "imageId": best.image_id,
                "totalScore": best.total_score,
                "alignmentScore": best.alignment_score,
                "aestheticScore": best.aesthetic_score,
                "iteration": best.iteration,
                "candidateId": best.candidate_id,
                "lineage": [{"iteration": i, "candidateId": c} for i, c in self.lineage(best)],
            }
        return {
            "bestCandidate": best_dict,
            "iterations": self.iterations_done,
            "candidatesEvaluated": sum(1 for c in self.candidates if c.ok),
            "candidatesFailed": sum(1 for c in self.candidates if c.status == "failed"),
            "duration": self.duration_ms,
            "usage": self.usage,
        }

    def metadata(self) -> dict[str, Any]:
        """What metadata.json holds."""
        return {
            "jobId": self.job_id,
            "status": self.status,
            "config": self.config,
            # Candidates cut off by a cancel or a failure were never finished: they are not recorded.
            "candidates": [c.to_dict() for c in self.candidates if c.status != "pending"],
            "beams": {str(i): [{"iteration": a, "candidateId": b} for a, b in refs] for i, refs in self.beams.items()},
            "best": self.to_dict()["bestCandidate"],
            "lineage": [{"iteration": i, "candidateId": c} for i, c in self.lineage()] if self.best else [],
            "duration": self.duration_ms,
            "usage": self.usage,
            "error": self.error,
        }

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .widget import mimebundle  # lazy: `import beamkit` stays free of ipywidgets

        return mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        best = self.best
        score = f"{best.total_score:.1f}" if best and best.total_score is not None else "-"
        return f"<Result {self.job_id} {self.status} iterations={self.iterations_done} best={score}>"


def load(folder: str | os.PathLike[str]) -> Result:
    """Read a session folder back: metadata.json, brought up to date from events.jsonl.

    A session whose process died mid-job still loads: what its events recorded is
    there, and its status reads "interrupted".
    """
    folder = Path(folder)
    meta = storage.read_metadata(folder)
    events = storage.read_events(folder)
    if meta is None and not events:
        raise NotFound(f"no beamkit session in {folder}")
    meta = meta or {}
    job_id = meta.get("jobId") or folder.name
    config = meta.get("config") or {}
    cands = {(c["iteration"], c["candidateId"]): Candidate.from_dict(c) for c in meta.get("candidates", [])}
    beams = {int(i): [(r["iteration"], r["candidateId"]) for r in refs] for i, refs in (meta.get("beams") or {}).items()}
    status = meta.get("status", "running")
    error = meta.get("error")
    duration = meta.get("duration")
    usage = meta.get("usage") or {}
    for e in events:
        kind = e.get("type")
        if kind == ev.STARTED and not config:
            config = e.get("config", {})
        elif kind == ev.CANDIDATE and (e["iteration"], e["candidateId"]) not in cands:
            cands[(e["iteration"], e["candidateId"])] = _candidate_from_event(e)
        elif kind == ev.ITERATION and e.get("status") == "completed" and e["iteration"] not in beams:
            beams[e["iteration"]] = [(r["iteration"], r["candidateId"]) for r in e.get("beam", [])]
        elif kind == ev.COMPLETE:
            status = "completed"
            duration = e["result"].get("duration", duration)
            usage = e["result"].get("usage", usage)
        elif kind == ev.ERROR:
            error = e.get("error")
            status = "cancelled" if (error or {}).get("code") == "CANCELLED" else "error"
    if status == "running":
        status = "interrupted"
    ordered = sorted(cands.values(), key=lambda c: c.key)
    return Result(job_id, config, status, ordered, dict(sorted(beams.items())), duration, usage, error, folder)


def _candidate_from_event(e: dict[str, Any]) -> Candidate:
    score = e.get("score") or {}
    c = Candidate.from_dict({**e, **score})
    c.status = "ok" if e.get("status", "ok") == "ok" else "failed"
    return c
