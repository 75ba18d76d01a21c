"""What the engine hands its findings to: a record of the search, and a Recorder that keeps it.

The engine knows nothing of files. ``beamkit.storage.SessionStore`` is the Recorder of a
job's session folder; anything with these methods will do (a test's, one that keeps
everything in memory).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..candidate import Candidate

Ref = tuple[int, int]


@dataclass
class SearchRecord:
    """What one search has done so far; the engine updates it in place as it goes."""

    job_id: str
    config: dict[str, Any]
    #: "running", then "completed"; the job sets "error" or "cancelled"
    status: str = "running"
    #: every candidate started so far, in the order they were started
    candidates: list[Candidate] = field(default_factory=list)
    #: the kept candidates after each iteration, best first
    beams: dict[int, list[Ref]] = field(default_factory=dict)
    duration_ms: int | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] | None = None
    #: the ``stop_when`` rule that ended the search early ("score", "plateau", "images", "usd"), else None
    stopped_by: str | None = None
    #: who chose each iteration's beam: "model", or "person" where a steering person changed it
    chosen_by: dict[int, str] = field(default_factory=dict)
    #: a tournament's verdicts (``comparison`` events' bodies), in the order they were given
    comparisons: list[dict[str, Any]] = field(default_factory=list)


class Recorder(Protocol):
    def image_path(self, iteration: int, candidate_id: int) -> str:
        """Where the candidate's picture is (or will be, once ``save_image`` is done)."""
        ...

    def save_image(self, iteration: int, candidate_id: int, png: bytes) -> asyncio.Future[None]:
        """Start keeping a picture; the future is done once it is kept (it raises if it could not be)."""
        ...

    def checkpoint(self, record: SearchRecord) -> None:
        """Keep the record as it stands (an iteration's end, the job's end), without blocking the loop."""
        ...

    async def flush(self) -> None:
        """Wait until everything handed over so far is kept; raises the first error of a checkpoint."""
        ...
