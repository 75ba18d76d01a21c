"""beamkit: beam search over text-to-image prompts, streamed as events.

    import beamkit
    job = beamkit.start("a forest at dawn")   # runs on the current asyncio loop
    result = await job                        # or: async for event in job.events(): ...
"""

from .api import load, run, search, start
from .candidate import Candidate
from .errors import BeamkitError, ErrorCode, InvalidRequest, JobCancelled, NotFound
from .job import Job
from .params import JobParams
from .result import Result

__version__ = "0.1.0"

__all__ = [
    "start", "search", "run", "load", "Job", "Result", "Candidate", "JobParams",
    "BeamkitError", "ErrorCode", "InvalidRequest", "JobCancelled", "NotFound",
]
