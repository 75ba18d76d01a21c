"""The Python API: start a job on the running loop, await it, run it from a script, load it back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .events import Event
from .job import Job
from .params import JobParams, validate
from .result import Result
from .settings import DEFAULT_OUTPUT, DEFAULT_PROVIDERS
from .storage import load as _load


def start(
    prompt: str,
    *,
    N: int = JobParams.N,
    M: int = JobParams.M,
    iterations: int = JobParams.iterations,
    alpha: float = JobParams.alpha,
    temperature: float = JobParams.temperature,
    seed: int | None = None,
    providers: str | Mapping[str, str] = DEFAULT_PROVIDERS,
    output: str | os.PathLike[str] = DEFAULT_OUTPUT,
    provider_settings: Mapping[str, Any] | None = None,
    job_id: str | None = None,
    stop_when: Mapping[str, float] | None = None,
    seeds_per_prompt: int = JobParams.seeds_per_prompt,
    unexpanded: bool = JobParams.unexpanded,
    ranking: str = JobParams.ranking,
    votes: int = JobParams.votes,
    steer: bool = JobParams.steer,
) -> Job:
    """Start a beam search on the running asyncio loop and return at once (defaults: ``JobParams``'s).

    In Jupyter this is the kernel's loop, so other cells keep running while the job does.
    ``providers`` is a provider name for every role, or one per role:
    ``{"llm": "openai", "image": "offline", "vision": "openai"}``. ``provider_settings`` are the
    providers' declared settings, flat (each role that has the setting takes it) or per role
    (``{"image": {"model": ...}}``); ``beamkit.providers.describe()`` lists them.
    ``stop_when={"plateau": k, "score": x, "images": n, "usd": d}`` (any subset) ends the job early,
    ``seeds_per_prompt=k`` renders each combined prompt k times and keeps the best picture, and
    ``unexpanded=True`` renders the prompt as given, and ``ranking="tournament"`` chooses the beam
    by a judge comparing pairs, each asked ``votes`` times (docs/algorithm.md).
    ``steer=True`` waits after each iteration but the last for ``job.keep(...)`` (docs/human-in-the-loop.md).
    Raises ``InvalidRequest`` (naming the field) for a bad parameter or setting.
    """
    params = validate(
        dict(prompt=prompt, N=N, M=M, iterations=iterations, alpha=alpha, temperature=temperature, seed=seed, providers=providers,
             stop_when=stop_when, seeds_per_prompt=seeds_per_prompt, unexpanded=unexpanded, ranking=ranking,
             votes=votes, steer=steer)
    )
    return Job(params, output, job_id=job_id, provider_settings=dict(provider_settings) if provider_settings else None)


async def search(prompt: str, **kwargs: Any) -> Result:
    """Start a job and wait for its Result; raises BeamkitError if it fails or is cancelled."""
    return await start(prompt, **kwargs)


def run(prompt: str, *, on_event: Callable[[Event], None] | None = None, **kwargs: Any) -> Result:
    """Run a job to the end, blocking: for scripts. ``on_event`` sees every event as it happens."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("beamkit.run() blocks, and this thread already runs an event loop: use `await beamkit.search(...)` or `beamkit.start(...)`")

    async def main() -> Result:
        job = start(prompt, **kwargs)
        if on_event is not None:
            job.add_listener(on_event)
            for e in list(job.history):
                on_event(e)
        return await job

    return asyncio.run(main())


def load(folder: str | os.PathLike[str]) -> Result:
    """Read a finished or interrupted session folder back, without re-running anything."""
    return _load(Path(folder))
