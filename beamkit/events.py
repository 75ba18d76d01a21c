"""The one module that owns event shapes (websocket-api.md, SPEC section 3).

Every event is a plain JSON-ready dict with ``type``, ``jobId`` and ``timestamp``.
Transports send these dicts as they are; nothing else builds an event.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .candidate import Candidate, Dimension

STARTED = "started"
ITERATION = "iteration"
CANDIDATE = "candidate"
COMPLETE = "complete"
ERROR = "error"
#: event types that end a job's stream
TERMINAL = frozenset({COMPLETE, ERROR})

# Protocol-only messages (WebSocket), answered to client messages.
SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"
PONG = "pong"


def timestamp() -> str:
    """ISO 8601 UTC with milliseconds and ``Z``."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _event(type_: str, job_id: str | None, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "jobId": job_id, **fields, "timestamp": timestamp()}


def started(job_id: str, config: dict[str, Any]) -> dict[str, Any]:
    return _event(STARTED, job_id, config=config)


def iteration(
    job_id: str,
    iteration: int,
    total_iterations: int,
    dimension: Dimension,
    status: str,
    beam: list[Candidate] | None = None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "iteration": iteration,
        "totalIterations": total_iterations,
        "dimension": dimension,
        "operation": "expand" if iteration == 0 else "refine",
        "status": status,
    }
    if beam is not None:
        fields["beam"] = [{**c.ref(), "totalScore": c.total_score} for c in beam]
    return _event(ITERATION, job_id, **fields)


def candidate(job_id: str, cand: Candidate, total_candidates: int) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "iteration": cand.iteration,
        "candidateId": cand.candidate_id,
        "totalCandidates": total_candidates,
        "dimension": cand.dimension,
        "parent": None if cand.parent is None else {"iteration": cand.parent[0], "candidateId": cand.parent[1]},
        "whatPrompt": cand.what_prompt,
        "howPrompt": cand.how_prompt,
        "combinedPrompt": cand.combined_prompt,
        "imageId": cand.image_id,
        "imagePath": cand.image_path,
    }
    if cand.ok:
        fields["status"] = "ok"
        fields["score"] = {
            "totalScore": cand.total_score,
            "alignmentScore": cand.alignment_score,
            "aestheticScore": cand.aesthetic_score,
        }
        fields["analysis"] = cand.analysis
    else:
        fields["status"] = "failed"
        fields["error"] = cand.error
    return _event(CANDIDATE, job_id, **fields)


def complete(job_id: str, result: dict[str, Any]) -> dict[str, Any]:
    return _event(COMPLETE, job_id, result=result)


def error(job_id: str | None, message: str, code: str, **context: Any) -> dict[str, Any]:
    return _event(ERROR, job_id, error={"message": message, "code": code}, **context)


def subscribed(job_id: str) -> dict[str, Any]:
    return _event(SUBSCRIBED, job_id)


def unsubscribed(job_id: str) -> dict[str, Any]:
    return _event(UNSUBSCRIBED, job_id)


def pong(job_id: str | None = None) -> dict[str, Any]:
    return _event(PONG, job_id)
