"""``beamkit run --steer``: a steered job in a terminal, each review answered on stdin."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from . import events as ev
from .errors import InvalidRequest
from .result import Result

PROMPT = "keep [Enter: the proposed beam | refs such as 0-2,0-1 | stop]: "


def _line(text: str) -> str | None:
    print(text, end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    return None if line == "" else line.strip()  # "" only at the end of input


async def _answer(job: Any, review: ev.Event) -> None:
    proposed = [f"{b['iteration']}-{b['candidateId']}" for b in review["beam"]]
    scores = {c.key: c.total_score for c in job.state.candidates.values()}
    print(f"\nreview of iteration {review['iteration']}: proposed {', '.join(proposed)}", file=sys.stderr)
    print("pool  " + "  ".join(f"{i}-{c} ({scores.get((i, c)) or 0:.1f})" for i, c in job.pool), file=sys.stderr)
    while True:
        line = await asyncio.to_thread(_line, PROMPT)
        try:
            if line is None or line == "":  # the end of input keeps the model's proposal: a pipe runs to the end
                job.keep(proposed)
            elif line.lower() == "stop":
                job.keep(None)
            else:
                job.keep([r for r in line.replace(",", " ").split() if r])
            return
        except InvalidRequest as exc:
            print(f"beamkit: {exc.message}", file=sys.stderr)


def run_steered(prompt: str, on_event: Callable[[ev.Event], None], **kwargs: Any) -> Result:
    """Run a ``steer=True`` job to its end, asking on stdin at each review."""
    from .api import start

    async def main() -> Result:
        job = start(prompt, steer=True, **kwargs)
        job.add_listener(on_event)
        for e in list(job.history):
            on_event(e)
        async for e in job.events():
            if e["type"] == ev.ITERATION and e["status"] == ev.REVIEW:
                await _answer(job, e)
        return await job

    return asyncio.run(main())
