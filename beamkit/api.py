"""The Python API: start a job on the running loop, await it, run it from a script, load it back."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Callable

from .job import Job
from .params import validate
from .result import Result
from .result import load as _load

DEFAULT_OUTPUT = "output"


def start(
    prompt: str,
    *,
    N: int = 9,
    M: int = 3,
    iterations: int = 3,
    alpha: float = 0.7,
    temperature: float = 0.8,
    seed: int | None = None,
    providers: str = "offline",
    output: str | os.PathLike[str] = DEFAULT_OUTPUT,
    provider_settings: dict[str, Any] | None = None,
    job_id: str | None = None,
) -> Job:
    """Start a beam search on the running asyncio loop and return at once.

    In Jupyter this is the kernel's loop, so other cells keep running while the job does.
    Raises ``InvalidRequest`` (naming the field) for a bad parameter.
    """
    params = validate(
        dict(prompt=prompt, N=N, M=M, iterations=iterations, alpha=alpha, temperature=temperature, seed=seed, providers=providers)
    )
    return Job(params, output, job_id=job_id, provider_settings=provider_settings)


async def search(prompt: str, **kwargs: Any) -> Result:
    """Start a job and wait for its Result; raises BeamkitError if it fails or is cancelled."""
    return await start(prompt, **kwargs)


def run(prompt: str, *, on_event: Callable[[dict[str, Any]], None] | None = None, **kwargs: Any) -> Result:
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
