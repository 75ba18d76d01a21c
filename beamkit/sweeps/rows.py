"""A job's outcome as the columns of a sweep's results table, from its ``Result``."""

from __future__ import annotations

from typing import Any

from ..events import JobStatus
from ..result import Result

#: the results table's columns, in order: the row's identity, then its outcome
PLAN_COLUMNS = ("prompt_index", "prompt", "category", "challenge", "config", "baseline", "reference", "seed",
                "job_id", "budget")
OUTCOME_COLUMNS = ("status", "error_code", "error", "best_total", "alignment", "aesthetic", "best_prompt",
                   "best_image", "iterations_done", "images", "calls", "llm_calls", "image_calls", "vision_calls",
                   "cost", "duration_s", "resumed", "folder")
COLUMNS = PLAN_COLUMNS + OUTCOME_COLUMNS
KINDS = ("llm", "image", "vision")


def empty(status: str = "pending", **given: Any) -> dict[str, Any]:
    """An outcome with nothing known yet but what is given."""
    out: dict[str, Any] = dict.fromkeys(OUTCOME_COLUMNS)
    out["status"], out["resumed"] = status, False
    out.update(given)
    return out


def failed(code: str, message: str, folder: str | None = None) -> dict[str, Any]:
    return empty(str(JobStatus.from_error(code)), error_code=str(code), error=message, folder=folder)


def outcome(result: Result) -> dict[str, Any]:
    """The outcome columns of a finished (or failed, or cancelled) job."""
    best = result.best
    usage = result.usage or {}
    models = usage.get("models") or {}
    counts = calls_by_kind(result)
    error = result.error or {}
    duration = result.duration_ms
    return empty(
        str(result.status),
        error_code=str(error["code"]) if error.get("code") else None,
        error=error.get("message"),
        best_total=best.total_score if best else None,
        alignment=best.alignment_score if best else None,
        aesthetic=best.aesthetic_score if best else None,
        best_prompt=best.combined_prompt if best else None,
        best_image=best.image_path if best else None,
        iterations_done=result.iterations_done,
        images=sum(int(m.get("images", 0)) for m in models.values()) if models else counts["image"],
        calls=sum(int(m.get("calls", 0)) for m in models.values()) if models else sum(counts.values()),
        llm_calls=counts["llm"],
        image_calls=counts["image"],
        vision_calls=counts["vision"],
        cost=float(usage["totalCost"]) if usage.get("totalCost") is not None else None,
        duration_s=duration / 1000 if duration is not None else None,
        folder=str(result.folder) if result.folder is not None else None,
    )


def calls_by_kind(result: Result) -> dict[str, int]:
    """Calls per kind: from the usage where the providers split it by role, else from the
    candidates (the engine's call graph: two expansions or one refinement, one combine, one
    picture and one analysis per candidate, one critique per parent and iteration)."""
    usage = result.usage or {}
    roles = usage.get("roles")
    if isinstance(roles, dict) and all(isinstance(roles.get(k), dict) for k in KINDS):
        return {k: int(roles[k].get("calls", 0)) for k in KINDS}
    models = usage.get("models") or {}
    if models and all(m.get("role") in KINDS for m in models.values()):
        return {k: sum(int(m.get("calls", 0)) for m in models.values() if m["role"] == k) for k in KINDS}
    llm = image = vision = 0
    parents: set[tuple[int, tuple[int, int]]] = set()
    for c in result.candidates:
        if c.status == "pending":
            continue
        llm += 2 if c.iteration == 0 else 1
        if c.parent is not None:
            parents.add((c.iteration, tuple(c.parent)))  # type: ignore[arg-type]
        if c.combined_prompt:
            llm += 1
            image += 1
        if c.image_path:
            vision += 1
    return {"llm": llm + len(parents), "image": image, "vision": vision}


__all__ = ["COLUMNS", "OUTCOME_COLUMNS", "PLAN_COLUMNS", "calls_by_kind", "empty", "failed", "outcome"]
