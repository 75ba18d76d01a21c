"""beamkit: beam search over text-to-image prompts, streamed as events.

    import beamkit
    job = beamkit.start("a forest at dawn")   # runs on the current asyncio loop
    result = await job                        # or: async for event in job.events(): ...
"""

import os
from typing import TYPE_CHECKING

from .api import load, run, search, start
from .candidate import Candidate
from .errors import (
    AuthError,
    BeamkitError,
    CallTimeout,
    ContentPolicy,
    ErrorCode,
    InternalError,
    InvalidRequest,
    JobCancelled,
    NotFound,
    ProviderError,
    RateLimited,
)
from .estimate import estimate
from .job import Job
from .params import JobParams
from .result import Result
from .running import jobs
from .settings import DEFAULT_OUTPUT
from .sweeps import sweep  # the function beamkit.sweep(...); the package is beamkit.sweeps

__version__ = "0.1.0"

if TYPE_CHECKING:  # the widget needs ipywidgets; only type checkers import it here
    from .widget.gallery import Sessions
    from .widget.widget import BeamWidget


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    """The Jupyter Server extension (imported only when Jupyter asks, so `import beamkit` stays light)."""
    from .server.extension import BeamkitExtension

    return [{"module": "beamkit.server.extension", "app": BeamkitExtension}]


def sessions(output: str | os.PathLike[str] = DEFAULT_OUTPUT) -> "Sessions":
    """The sessions of an output folder, newest first: a gallery in a notebook (prompt, best
    picture, score, date, status; unreadable folders too); a click opens one as ``load`` does."""
    from .widget.gallery import sessions as _sessions  # lazy: `import beamkit` stays free of ipywidgets

    return _sessions(output)


def watch(job_id: str, *, url: str | None = None, token: str | None = None, **client_options: object) -> "BeamWidget":
    """A live notebook widget for a job on a beamkit server (events through ``beamkit.client``).

    Call it in a notebook cell (it needs the running loop); display the returned widget.
    """
    from .widget import watch as _watch  # lazy: `import beamkit` stays free of ipywidgets

    return _watch(job_id, url=url, token=token, **client_options)


__all__ = [
    "start", "search", "run", "load", "estimate", "watch", "Job", "Result", "Candidate", "JobParams",
    "BeamkitError", "ErrorCode", "InvalidRequest", "NotFound", "RateLimited", "AuthError", "ContentPolicy",
    "CallTimeout", "ProviderError", "JobCancelled", "InternalError", "sweep", "jobs", "sessions",
]
