"""A candidate: one WHAT prompt, one HOW prompt, the picture they make and its scores."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Dimension = Literal["what", "how"]
WHAT: Dimension = "what"
HOW: Dimension = "how"
Operation = Literal["expand", "refine"]
EXPAND: Operation = "expand"
REFINE: Operation = "refine"
Key = tuple[int, int]


def dimension_of(iteration: int) -> Dimension:
    """Iteration 0 expands (reported as WHAT); WHAT is refined on odd iterations, HOW on even ones."""
    return HOW if iteration > 0 and iteration % 2 == 0 else WHAT


def operation_of(iteration: int) -> Operation:
    """Iteration 0 expands the user's prompt into WHAT/HOW pairs; every later one refines one dimension."""
    return EXPAND if iteration == 0 else REFINE


def critique_key(iteration: int, dimension: Dimension) -> str:
    """The key under which a parent keeps the critique written for ``iteration`` (``Candidate.critiques``)."""
    return f"iter{iteration}-{dimension}"


def total_score(alignment: float, aesthetic: float, alpha: float) -> float:
    """SPEC section 2: alignment is 0..100, aesthetics 0..10, so the total is 0..100."""
    return round(alpha * alignment + (1 - alpha) * aesthetic * 10, 4)


def image_id(job_id: str, iteration: int, candidate_id: int) -> str:
    return f"{job_id}-iter{iteration}-cand{candidate_id}.png"


def ref_dict(key: tuple[int, int]) -> dict[str, int]:
    """A candidate's key as the wire and metadata.json write it: ``{"iteration", "candidateId"}``."""
    return {"iteration": key[0], "candidateId": key[1]}


def prompt_fields(c: Any) -> dict[str, Any]:
    """A candidate's dimension, parent, prompts and picture as the wire and metadata.json name them
    (``c``: a Candidate or a candidate event, which carry the same attributes)."""
    return {
        "dimension": c.dimension,
        "parent": None if c.parent is None else ref_dict(c.parent),
        "whatPrompt": c.what_prompt,
        "howPrompt": c.how_prompt,
        "combinedPrompt": c.combined_prompt,
        "imageId": c.image_id,
        "imagePath": c.image_path,
    }


@dataclass
class Candidate:
    iteration: int
    candidate_id: int
    dimension: Dimension
    what_prompt: str = ""
    how_prompt: str = ""
    parent: tuple[int, int] | None = None
    combined_prompt: str = ""
    image_id: str | None = None
    image_path: str | None = None
    alignment_score: float | None = None
    aesthetic_score: float | None = None
    total_score: float | None = None
    analysis: str = ""
    strengths: list[str] = field(default_factory=list)
    weaknesses: list[str] = field(default_factory=list)
    #: critiques of this candidate, by dimension, written when it was a parent
    critiques: dict[str, str] = field(default_factory=dict)
    status: Literal["pending", "ok", "failed"] = "pending"
    error: dict[str, str] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: the parent's critique that this candidate's refinement answered (None at iteration 0)
    critique: str | None = None
    #: what the image provider returned beside the picture (a revised prompt, a model name)
    image_metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int]:
        return (self.iteration, self.candidate_id)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def prompt_of(self, dimension: Dimension) -> str:
        return self.what_prompt if dimension == WHAT else self.how_prompt

    def rank_key(self) -> tuple[float, int, int]:
        # Best score first; on a tie the older candidate (earlier iteration, then lower id) wins.
        return (-(self.total_score or 0.0), self.iteration, self.candidate_id)

    def copy(self) -> Candidate:
        """A copy whose lists and dicts are its own."""
        return replace(
            self, strengths=list(self.strengths), weaknesses=list(self.weaknesses), critiques=dict(self.critiques),
            error=None if self.error is None else dict(self.error), timings=dict(self.timings),
            image_metadata=dict(self.image_metadata),
        )

    def ref(self) -> dict[str, int]:
        return ref_dict(self.key)

    def to_dict(self) -> dict[str, Any]:
        """The full record kept in metadata.json (camelCase, as on the wire)."""
        return {
            "iteration": self.iteration,
            "candidateId": self.candidate_id,
            **prompt_fields(self),
            "totalScore": self.total_score,
            "alignmentScore": self.alignment_score,
            "aestheticScore": self.aesthetic_score,
            "analysis": self.analysis,
            "strengths": list(self.strengths),
            "weaknesses": list(self.weaknesses),
            "critiques": dict(self.critiques),
            "status": self.status,
            "error": self.error,
            "timings": dict(self.timings),
            "critique": self.critique,
            "imageMetadata": dict(self.image_metadata),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        parent = d.get("parent")
        return cls(
            iteration=d["iteration"],
            candidate_id=d["candidateId"],
            dimension=d.get("dimension", dimension_of(d["iteration"])),
            what_prompt=d.get("whatPrompt", ""),
            how_prompt=d.get("howPrompt", ""),
            parent=None if not parent else (parent["iteration"], parent["candidateId"]),
            combined_prompt=d.get("combinedPrompt", ""),
            image_id=d.get("imageId"),
            image_path=d.get("imagePath"),
            alignment_score=d.get("alignmentScore"),
            aesthetic_score=d.get("aestheticScore"),
            total_score=d.get("totalScore"),
            analysis=d.get("analysis", ""),
            strengths=list(d.get("strengths") or []),
            weaknesses=list(d.get("weaknesses") or []),
            critiques=dict(d.get("critiques") or {}),
            status=d.get("status", "ok"),
            error=d.get("error"),
            timings=dict(d.get("timings") or {}),
            critique=d.get("critique"),
            image_metadata=dict(d.get("imageMetadata") or {}),
        )


def best_of(candidates: Iterable[Candidate]) -> Candidate | None:
    """The best scored candidate by ``rank_key`` (None when none is scored)."""
    return min((c for c in candidates if c.ok), key=Candidate.rank_key, default=None)


def judged_top(ranking: Any, beams: Mapping[int, Sequence[Key]], candidates: Mapping[Key, Candidate]) -> Key | None:
    """A tournament job's best: the top of its last beam, since its beam follows the judge, not the
    scores. None for a job ranked by score (its best is its best scored candidate, which is also
    the top of its last beam: parents compete with their children) and before any beam."""
    if ranking != "tournament" or not beams:
        return None
    last = beams[max(beams)]
    return last[0] if last and last[0] in candidates and candidates[last[0]].ok else None


def best_key(candidates: Mapping[Key, Candidate], beams: Mapping[int, Sequence[Key]], ranking: Any) -> Key | None:
    """The job's best candidate (None when none is scored): see ``judged_top``, else ``best_of``."""
    top = judged_top(ranking, beams, candidates)
    if top is not None:
        return top
    best = best_of(candidates.values())
    return None if best is None else best.key


def lineage_of(key: Key | None, candidates: Mapping[Key, Candidate]) -> list[Key]:
    """From iteration 0 down to ``key``, each as (iteration, candidateId); stops at an unknown parent."""
    chain: list[Key] = []
    seen: set[Key] = set()
    while key is not None and key in candidates and key not in seen:
        seen.add(key)
        chain.append(key)
        key = candidates[key].parent
    return chain[::-1]


def json_ready(value: Any) -> Any:
    """``value`` as JSON can hold it: what a provider returns beside a picture may be anything."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return str(value)
