"""Steering (``steer=True``): between iterations, a person keeps the proposed beam, picks another, or stops.

The engine only asks: ``review`` emits the ``iteration`` event with ``status: "review"`` and
awaits the search's ``reviewer`` (the Job's, which a person answers through ``Job.keep``,
REST or the widget). Waiting is a plain await, so cancelling the job cancels the wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import events as ev
from ..candidate import Candidate, Dimension

if TYPE_CHECKING:
    from .beam import BeamSearch

Ref = tuple[int, int]
#: ``reviewer(iteration, proposed beam, pool)`` -> an awaitable of the refs to keep, in order, or None to
#: stop the job. Called before the review's event is emitted, so that whoever reads the event finds
#: the job already waiting.
Reviewer = Callable[[int, list[Candidate], list[Candidate]], Awaitable[list[Ref] | None]]

MODEL = "model"
PERSON = "person"


@dataclass
class Pool:
    """What a person may pick from: the last beam and the iteration's scored children, and (for a
    tournament) their pictures, which the judge's selection would otherwise drop with the losers."""

    candidates: list[Candidate]
    pngs: dict[Ref, bytes] = field(default_factory=dict)


def pool_of(search: BeamSearch, children: list[Candidate]) -> Pool:
    """Taken before the selection, so that a person's pick keeps what its next iteration needs."""
    candidates = search.beam + [c for c in children if c.ok]
    keeping = getattr(search, "_keeping", None) if search.params.steer else None
    return Pool(candidates, dict(keeping.pngs) if keeping is not None else {})


async def review(search: BeamSearch, iteration: int, dimension: Dimension, pool: Pool) -> bool:
    """Let the person review ``search.beam`` after ``iteration``; True when they stop the job.

    Only a steered job with a reviewer is asked, and never after the last iteration (there is
    no next iteration to steer). A steered job records who chose each beam: "person" only
    where the kept beam differs from the model's proposal.
    """
    p, rec = search.params, search.record
    if not p.steer:
        return False
    rec.chosen_by[iteration] = MODEL
    reviewer = search.reviewer
    if reviewer is None or iteration >= p.iterations - 1:
        return False
    ranked = p.ranking == "tournament"
    waiting = reviewer(iteration, list(search.beam), list(pool.candidates))
    search.emit(ev.iteration(search.job_id, iteration, p.iterations, dimension, ev.REVIEW, beam=search.beam,
                             ranked=ranked))
    choice = await waiting
    if choice is None:
        return True
    by_key = {c.key: c for c in pool.candidates}
    chosen = [by_key[tuple(r)] for r in choice]  # type: ignore[index]
    if [c.key for c in chosen] != [c.key for c in search.beam]:
        search.beam = chosen
        rec.beams[iteration] = [c.key for c in chosen]
        rec.chosen_by[iteration] = PERSON
        keeping = getattr(search, "_keeping", None)
        if keeping is not None:  # the tournament judges the next pool from the kept pictures
            keeping.pngs = {c.key: pool.pngs[c.key] for c in chosen if c.key in pool.pngs}
    return False
