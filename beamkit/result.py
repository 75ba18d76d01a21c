"""The outcome of a job, live or loaded back from its session folder: a plain value.

A ``Result`` neither reads nor writes files: ``Result.from_state(state)`` makes one from
the reducer's ``SessionState`` (``Job.result``, ``beamkit.load``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .candidate import Candidate, Key, best_key, lineage_of, operation_of, ref_dict

if TYPE_CHECKING:
    from .state import SessionState

Ref = tuple[int, int]

#: the columns of ``Result.rows()``, ``to_dataframe()`` and ``to_csv()``, in order
COLUMNS = (
    "job_id", "key", "iteration", "candidate_id", "parent", "operation", "dimension", "what_prompt", "how_prompt",
    "combined_prompt", "critique", "total_score", "alignment_score", "aesthetic_score", "strengths", "weaknesses",
    "status", "error_code", "error_message", "image_id", "image_path", "kept", "beam_rank", "kept_until",
    "in_final_beam", "best", "on_best_lineage",
)


@dataclass
class Result:
    job_id: str
    config: dict[str, Any]
    #: a ``JobStatus``: "completed", "error", "cancelled", "running" (live) or "interrupted" (its process died)
    status: str
    candidates: list[Candidate] = field(default_factory=list)
    #: the kept candidates after each iteration, best first
    beams: dict[int, list[Ref]] = field(default_factory=dict)
    duration_ms: int | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] | None = None
    folder: Path | None = None
    #: the ``stop_when`` rule that ended the job early ("score", "plateau", "images", "usd"), or None
    stopped_by: str | None = None
    #: a person's pairwise ratings (ratings.jsonl), oldest first: ``{"a", "b", "winner", "timestamp"}``
    ratings: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_state(cls, state: SessionState, folder: str | os.PathLike[str] | None = None) -> Result:
        """A snapshot of what ``state`` knows: its candidates are copies, so the value does not change."""
        return cls(
            job_id=state.job_id or "",
            config=dict(state.config),
            status=state.status,
            candidates=[state.candidates[k].copy() for k in sorted(state.candidates)],
            beams={i: list(state.beams[i]) for i in sorted(state.beams)},
            duration_ms=state.duration_ms,
            usage=dict(state.usage),
            error=None if state.error is None else dict(state.error),
            folder=None if folder is None else Path(folder),
            stopped_by=state.stopped_by,
        )

    def candidate(self, ref: Ref) -> Candidate:
        for c in self.candidates:
            if c.key == tuple(ref):
                return c
        raise KeyError(ref)

    @property
    def best(self) -> Candidate | None:
        """The job's best: the top of a tournament's last beam, else the best scored candidate."""
        by_key = {c.key: c for c in self.candidates}
        key = best_key(by_key, self.beams, self.config.get("ranking"))
        return None if key is None else by_key[key]

    @property
    def iterations_done(self) -> int:
        return len(self.beams)

    def lineage(self, cand: Candidate | None = None) -> list[Ref]:
        """From iteration 0 down to ``cand`` (default: the best), each as (iteration, candidateId)."""
        cand = cand or self.best
        if cand is None:
            return []
        return lineage_of(cand.key, {c.key: c for c in self.candidates})

    def best_by_iteration(self) -> list[float]:
        """The best total so far after each finished iteration."""
        from .state import SessionState

        return [p.best for p in SessionState.from_result(self).series() if p.complete]

    def to_dict(self) -> dict[str, Any]:
        """Equal to the ``result`` of the job's ``complete`` event."""
        return {
            "bestCandidate": best_record({c.key: c for c in self.candidates}, self.beams, self.config.get("ranking")),
            "iterations": self.iterations_done,
            "candidatesEvaluated": sum(1 for c in self.candidates if c.ok),
            "candidatesFailed": sum(1 for c in self.candidates if c.status == "failed"),
            "duration": self.duration_ms,
            "usage": self.usage,
            "stoppedBy": self.stopped_by,
        }

    # -- a person's ratings (docs/human-in-the-loop.md) --------------------------------------------

    def rate(self, a: Any, b: Any, winner: Any) -> dict[str, Any]:
        """Record that the person prefers ``a`` (winner "a") or ``b`` (winner "b"); each is
        (iteration, candidateId) or "i-c". The rating is appended to the session's ratings.jsonl
        (by storage, the one writer of session files) and to ``ratings``; returns it."""
        from .ratings import make_rating

        rating = make_rating(a, b, winner, known=[c.key for c in self.candidates if c.ok])
        if self.folder is not None:
            from .storage.ratings import append_rating

            append_rating(self.folder, rating)
        self.ratings.append(rating)
        return rating

    def model_order(self) -> list[Ref]:
        """The model's ranking: the last beam in its order (the tournament's rank, or the score
        order), then every other scored candidate by score."""
        from .ratings import model_order

        last = max(self.beams) if self.beams else None
        return model_order(self.candidates, self.beams[last] if last is not None else ())

    def next_pair(self) -> tuple[Ref, Ref] | None:
        """The pair most worth rating next (neighbours in the model's ranking first, nothing the
        ratings already decide by transitivity), or None."""
        from .ratings import next_pair

        return next_pair(self.model_order(), self.ratings)

    def agreement(self, k: int = 3) -> dict[str, Any]:
        """Spearman rho, Kendall tau (scipy.stats) and top-``k`` overlap between the person's
        ranking (net wins over the rated candidates) and the model's, with the ratings they
        disagree on."""
        from .ratings import agreement

        return agreement(self.ratings, self.model_order(), k)

    # -- as data ----------------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """One plain dict per candidate, in (iteration, candidateId) order: the rows of
        ``to_dataframe()`` and ``to_csv()`` (columns: ``COLUMNS``)."""
        last = max(self.beams) if self.beams else None
        final = set(self.beams[last]) if last is not None else set()
        best = self.best
        on_lineage = set(self.lineage(best)) if best is not None else set()
        kept_until: dict[Ref, int] = {}  # a parent carried over stays in later beams
        for i in sorted(self.beams):
            for r in self.beams[i]:
                kept_until[(r[0], r[1])] = i
        out = []
        for c in sorted(self.candidates, key=lambda c: c.key):
            beam = self.beams.get(c.iteration)
            beam_keys = [tuple(r) for r in beam] if beam is not None else None
            error = c.error or {}
            out.append({
                "job_id": self.job_id,
                "key": f"{c.iteration}-{c.candidate_id}",
                "iteration": c.iteration,
                "candidate_id": c.candidate_id,
                "parent": None if c.parent is None else f"{c.parent[0]}-{c.parent[1]}",
                "operation": operation_of(c.iteration),
                "dimension": c.dimension,
                "what_prompt": c.what_prompt,
                "how_prompt": c.how_prompt,
                "combined_prompt": c.combined_prompt,
                "critique": c.critique,
                "total_score": c.total_score,
                "alignment_score": c.alignment_score,
                "aesthetic_score": c.aesthetic_score,
                "strengths": "; ".join(c.strengths),
                "weaknesses": "; ".join(c.weaknesses),
                "status": c.status,
                "error_code": error.get("code"),
                "error_message": error.get("message"),
                "image_id": c.image_id,
                "image_path": c.image_path,
                # None where the iteration never finished (a cancelled or interrupted job)
                "kept": None if beam_keys is None else c.key in beam_keys,
                "beam_rank": beam_keys.index(c.key) if beam_keys and c.key in beam_keys else None,
                "kept_until": kept_until.get(c.key),
                "in_final_beam": c.key in final,
                "best": best is not None and c.key == best.key,
                "on_best_lineage": c.key in on_lineage,
            })
        return out

    def to_dataframe(self) -> Any:
        """A pandas DataFrame with one row per candidate (``rows()``); needs pandas
        (``pip install 'beamkit[data]'``). Scores and ranks are nullable columns."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Result.to_dataframe() needs pandas: pip install 'beamkit[data]'") from None
        df = pd.DataFrame(self.rows(), columns=list(COLUMNS))
        for col in ("iteration", "candidate_id"):
            df[col] = df[col].astype("int64")
        for col in ("beam_rank", "kept_until"):
            df[col] = df[col].astype("Int64")
        df["kept"] = df["kept"].astype("boolean")
        for col in ("total_score", "alignment_score", "aesthetic_score"):
            df[col] = df[col].astype("float64")
        return df

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write ``rows()`` as CSV (UTF-8, a header line, empty for None); needs no pandas.
        Returns the path written."""
        import csv

        out = Path(path)
        with open(out, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
            writer.writeheader()
            for row in self.rows():
                writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return out

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .widget import mimebundle  # lazy: `import beamkit` stays free of ipywidgets

        return mimebundle(self, include, exclude)

    def _ipython_display_(self) -> None:
        from .widget.display import show  # the widget, then a static view a saved notebook keeps

        show(self)

    def __repr__(self) -> str:
        best = self.best
        score = f"{best.total_score:.1f}" if best and best.total_score is not None else "-"
        return f"<Result {self.job_id} {self.status} iterations={self.iterations_done} best={score}>"


def load(folder: str | os.PathLike[str]) -> Result:
    """``beamkit.storage.load``: read a session folder back (kept here for older imports)."""
    from .storage import load as _load

    return _load(folder)


def best_record(candidates: Mapping[Key, Candidate], beams: Mapping[int, Sequence[Key]],
                ranking: Any) -> dict[str, Any] | None:
    """The job's best (``candidate.best_key``) as the ``complete`` event's ``bestCandidate`` (and
    metadata.json's ``best``) write it, with its lineage; None when none is scored."""
    key = best_key(candidates, beams, ranking)
    if key is None:
        return None
    best = candidates[key]
    return {
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
        "lineage": [ref_dict(k) for k in lineage_of(best.key, candidates)],
    }
