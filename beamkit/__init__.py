"""beamkit: beam search over text-to-image prompts, streamed as events.

    import beamkit
    job = beamkit.start("a forest at dawn")   # runs on the current asyncio loop
    result = await job                        # or: async for event in job.events(): ...
"""

from typing import TYPE_CHECKING

from .api import load, run, search, start
from .candidate import Candidate
from .errors import BeamkitError, ErrorCode, InvalidRequest, JobCancelled, NotFound
from .job import Job
from .params import JobParams
from .providers.openai.estimate import estimate
from .result import Result

__version__ = "0.1.0"

if TYPE_CHECKING:  # the widget needs ipywidgets; only type checkers import it here
    from .widget.widget import BeamWidget


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    """The Jupyter Server extension (imported only when Jupyter asks, so `import beamkit` stays light)."""
    from .server.extension import BeamkitExtension

    return [{"module": "beamkit.server.extension", "app": BeamkitExtension}]


def watch(job_id: str, *, url: str | None = None, token: str | None = None, **client_options: object) -> "BeamWidget":
    """A live notebook widget for a job on a beamkit server (events through ``beamkit.client``).

    Call it in a notebook cell (it needs the running loop); display the returned widget.
    """
    from .widget import watch as _watch  # lazy: `import beamkit` stays free of ipywidgets

    return _watch(job_id, url=url, token=token, **client_options)


__all__ = [
    "start", "search", "run", "load", "estimate", "watch", "Job", "Result", "Candidate", "JobParams",
    "BeamkitError", "ErrorCode", "InvalidRequest", "JobCancelled", "NotFound",
]
