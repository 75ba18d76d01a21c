"""Seed search (``seeds_per_prompt = k``): one combined prompt rendered with k seeds, the best picture kept.

Each seed is its own image call and vision call, all k at once (the per-kind limits still
bound them). The candidate keeps the picture with the best total score (the lowest seed
index on a tie) and records every seed it tried, with its scores or its error, under
``image_metadata["seedSearch"]``. Seed index 0 uses the seeds a plain candidate uses, so
``k = 1`` is the ordinary search and a larger k only adds pictures to choose from.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..candidate import Candidate, image_id, json_ready, total_score
from ..errors import BeamkitError
from ..providers.base import GeneratedImage, VisionResult

if TYPE_CHECKING:
    from .beam import BeamSearch


@dataclass
class Render:
    seed: int
    image: GeneratedImage
    vision: VisionResult
    alignment: float
    aesthetic: float
    total: float


def seed_parts(index: int) -> tuple[object, ...]:
    """What a seed index adds to the candidate's per-call seed parts (nothing for index 0)."""
    return () if index == 0 else (index,)


async def render_best(search: BeamSearch, c: Candidate) -> None:
    """image -> vision for each of k seeds, then the best kept as the candidate's picture and scores."""
    from .beam import _clamp, _first_error, _shielded

    p = search.params
    started = time.perf_counter()

    async def one(index: int) -> Render:
        extra = seed_parts(index)
        seed = search._seed(*c.key, "image", *extra)
        search.images_used += 1  # counted when started: a call that fails was still made
        image = await search._call("image", search.providers.image.generate, c.combined_prompt, seed=seed)
        vision: VisionResult = await search._call(
            "vision", search.providers.vision.analyze, image.png, p.prompt, seed=search._seed(*c.key, "vision", *extra)
        )
        alignment = round(_clamp(vision.alignment_score, 0, 100), 2)
        aesthetic = round(_clamp(vision.aesthetic_score, 0, 10), 3)
        return Render(seed, image, vision, alignment, aesthetic, total_score(alignment, aesthetic, p.alpha))

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_shielded(one(i))) for i in range(p.seeds_per_prompt)]
    except BaseExceptionGroup as group:
        raise _first_error(group) from None
    outcomes: list[Render | BeamkitError] = [t.result() for t in tasks]
    done = [r for r in outcomes if isinstance(r, Render)]
    if not done:
        first = outcomes[0]
        assert isinstance(first, BeamkitError)
        raise first
    best = max(done, key=lambda r: r.total)  # max keeps the first of equals: the lowest seed index
    c.timings["seeds"] = time.perf_counter() - started
    saved = search.recorder.save_image(c.iteration, c.candidate_id, best.image.png)
    c.image_id = image_id(search.job_id, c.iteration, c.candidate_id)
    c.image_path = search.recorder.image_path(c.iteration, c.candidate_id)
    await saved
    c.image_metadata = json_ready({**dict(best.image.metadata or {}), "seedSearch": {
        "chosen": best.seed, "seeds": [_tried(o, search, c, i) for i, o in enumerate(outcomes)],
    }})
    c.alignment_score, c.aesthetic_score, c.total_score = best.alignment, best.aesthetic, best.total
    v = best.vision
    c.analysis, c.strengths, c.weaknesses = v.analysis, list(v.strengths), list(v.weaknesses)
    c.status = "ok"


def _tried(outcome: Render | BeamkitError, search: BeamSearch, c: Candidate, index: int) -> dict[str, Any]:
    if isinstance(outcome, Render):
        return {"seed": outcome.seed, "totalScore": outcome.total, "alignmentScore": outcome.alignment,
                "aestheticScore": outcome.aesthetic}
    return {"seed": search._seed(*c.key, "image", *seed_parts(index)), "error": outcome.to_dict()}
