"""The one reducer: a job's state, brought up to date one event at a time.

``SessionState.apply(event)`` is what every consumer of events uses: the job itself
(``Job.status``, ``Job.progress``, ``Job.result``), ``load`` (events.jsonl replayed over
metadata.json), the widget's view model, the job manager's REST answers, the CLI's
progress bar and ``beamkit.client``. Each rule about what events mean lives here, or in
``candidate.py`` (ranking, WHAT/HOW, expand/refine) and ``events.py`` (cancelled or error),
and nowhere else.

``apply`` answers with the names of the parts of a view that the event changed (those of
``PARTS``), so the widget resends only those.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .candidate import (
    Candidate,
    Dimension,
    Key,
    Operation,
    best_of,
    critique_key,
    dimension_of,
    judged_top,
    lineage_of,
    operation_of,
)
from .events import (
    CandidateEvent,
    ComparisonEvent,
    CompleteEvent,
    ErrorEvent,
    Event,
    IterationEvent,
    IterationStatus,
    JobStatus,
    PongEvent,
    StartedEvent,
    SubscribedEvent,
    UnknownEvent,
    UnsubscribedEvent,
    decode,
)

log = logging.getLogger(__name__)

#: the parts of a view of a job, as ``apply`` names them
PARTS = ("header", "progress", "rows", "live_row", "beam", "best", "chart", "usage")

#: what GET /api/job answers for a job that has not ended
IN_PROGRESS = "in_progress"
#: what GET /api/job answers while a steered job waits for a person's review
REVIEWING = "reviewing"


@dataclass
class Row:
    """One iteration: what it changes, whether it is over, and its candidates in finishing order."""

    iteration: int
    dimension: Dimension
    operation: Operation
    status: IterationStatus = "processing"
    keys: list[Key] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        return self.status == "completed"


@dataclass(frozen=True)
class Point:
    """One iteration of the score chart: the best total so far and this iteration's mean."""

    iteration: int
    best: float
    mean: float
    complete: bool


class SessionState:
    """What is known about one job, from its events (and, read back, its metadata.json)."""

    def __init__(self, job_id: str | None = None, config: Mapping[str, Any] | None = None) -> None:
        self.job_id = job_id
        self.config: dict[str, Any] = dict(config or {})
        self.status = JobStatus.PENDING
        #: the job's error, ``{"message", "code"}``, once it ended with one
        self.error: dict[str, Any] | None = None
        #: every finished candidate by (iteration, candidateId)
        self.candidates: dict[Key, Candidate] = {}
        self.rows: dict[int, Row] = {}
        #: the kept candidates after each finished iteration, best first
        self.beams: dict[int, list[Key]] = {}
        #: the iteration that began last (None before the first)
        self.current_iteration: int | None = None
        self.duration_ms: int | None = None
        self.usage: dict[str, Any] = {}
        #: the ``complete`` event's result
        self.result: dict[str, Any] | None = None
        #: the ``stop_when`` rule that ended the job early, from its ``complete`` event
        self.stopped_by: str | None = None
        #: when the job started (its ``started`` event's timestamp)
        self.started_at: str | None = None
        #: a tournament's verdicts, as their ``comparison`` events, in the order they came
        self.comparisons: list[ComparisonEvent] = []
        self.events_applied = 0
        #: the iteration whose beam a person is reviewing (a steered job waiting), else None
        self.reviewing: int | None = None
        #: the beam the model proposed for that review, best first
        self.proposed: list[Key] = []
        self._final_best: Key | None = None
        self._best: Key | None = None
        self._total_iterations: int | None = None
        self._total_candidates: int | None = None

    # -- input -----------------------------------------------------------------------------------

    def apply(self, event: Event | Mapping[str, Any]) -> set[str]:
        """Take one event (typed, or its wire dict); return the parts it changed.

        Raises ValueError for a malformed event of a known type (see ``events.decode``).
        """
        e = decode(event)
        match e:  # the most frequent first: a job's events are mostly candidates
            case CandidateEvent():
                changed = self._candidate(e)
            case SubscribedEvent() | UnsubscribedEvent() | PongEvent() | UnknownEvent():
                return set()  # protocol replies and types of a newer version say nothing about the job
            case StartedEvent():
                changed = self._started(e)
            case IterationEvent():
                changed = self._iteration(e)
            case ComparisonEvent():
                # A verdict changes no part of today's views: the beam it leads to comes with the iteration's end.
                self.comparisons.append(e)
                changed = set()
            case CompleteEvent():
                changed = self._complete(e)
            case ErrorEvent():
                changed = self._error(e)
            case _:
                raise TypeError(f"SessionState cannot apply a {type(e).__name__}")
        self.events_applied += 1
        if e.job_id and not self.job_id:
            self.job_id = e.job_id
        return changed

    def apply_all(self, events: Iterable[Event | Mapping[str, Any]]) -> set[str]:
        changed: set[str] = set()
        for e in events:
            changed |= self.apply(e)
        return changed

    def begin(self) -> set[str]:
        """The job's task is running (it may not have emitted ``started`` yet)."""
        if self.status == JobStatus.PENDING:
            self.status = JobStatus.RUNNING
            return {"header"}
        return set()

    def end(self, status: JobStatus = JobStatus.INTERRUPTED, error: Mapping[str, Any] | None = None) -> set[str]:
        """The stream ended without a ``complete`` or ``error`` (a session whose process died)."""
        if self.done:
            return set()
        self.status = status
        if error is not None:
            self.error = dict(error)
        return {"header", "live_row", "progress"}

    def set_usage(self, usage: Mapping[str, Any] | None) -> set[str]:
        """The job's usage from elsewhere than a ``complete`` event (metadata.json, a cancelled job)."""
        if not usage or usage == self.usage:
            return set()
        self.usage = dict(usage)
        return {"usage"}

    def merge(
        self,
        *,
        job_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        status: str | None = None,
        error: Mapping[str, Any] | None = None,
        candidates: Iterable[Candidate] = (),
        beams: Mapping[int, Iterable[Key]] | None = None,
        duration_ms: int | None = None,
        usage: Mapping[str, Any] | None = None,
    ) -> None:
        """Fold in a record of the job (metadata.json, a ``Result``): it fills what the events left out.

        Its candidates win over those made from events: they also hold what events do not
        carry (timings, the critiques a parent received).
        """
        if job_id and not self.job_id:
            self.job_id = job_id
        if config:
            self.config = {**self.config, **config}
        for c in candidates:
            self.candidates[c.key] = c
            row = self._row(c.iteration, c.dimension)
            if c.key not in row.keys:
                row.keys.append(c.key)
        for i, refs in (beams or {}).items():
            if i not in self.beams:
                self.beams[i] = [tuple(r) for r in refs]  # type: ignore[misc]
                self._row(i).status = "completed"
        recorded = _status(status)
        if not self.done and recorded is not None and recorded.done:
            self.status = recorded
        if error and self.error is None:
            self.error = dict(error)
        if self.duration_ms is None:
            self.duration_ms = duration_ms
        if usage and not self.usage:
            self.usage = dict(usage)
        if self.current_iteration is None and self.rows:
            self.current_iteration = max(self.rows)
        best = best_of(self.candidates.values())
        self._best = None if best is None else best.key

    def merge_metadata(self, meta: Mapping[str, Any]) -> None:
        """Fold in a session's metadata.json; a candidate or beam it cannot read is skipped."""
        candidates = []
        for d in meta.get("candidates") or []:
            try:
                candidates.append(Candidate.from_dict(d))
            except (KeyError, TypeError, ValueError):
                log.warning("beamkit: skipped an unreadable candidate in metadata of %s", meta.get("jobId"))
        beams: dict[int, list[Key]] = {}
        for i, refs in (meta.get("beams") or {}).items():
            try:
                beams[int(i)] = [(int(r["iteration"]), int(r["candidateId"])) for r in refs]
            except (KeyError, TypeError, ValueError):
                log.warning("beamkit: skipped an unreadable beam in metadata of %s", meta.get("jobId"))
        self.merge(
            job_id=meta.get("jobId"), config=meta.get("config") or {}, status=meta.get("status"),
            error=meta.get("error"), candidates=candidates, beams=beams, duration_ms=meta.get("duration"),
            usage=meta.get("usage"),
        )
        # A tournament's verdicts, when the events that carried them are not at hand (metadata.json keeps them)
        kept = meta.get("comparisons")
        if not self.comparisons and isinstance(kept, list):
            for c in kept:  # read as the events they were (a session folder is not trusted)
                try:
                    verdict = decode({**c, "type": "comparison", "jobId": meta.get("jobId")})
                except (TypeError, ValueError):
                    log.warning("beamkit: skipped an unreadable comparison in metadata of %s", meta.get("jobId"))
                    continue
                if isinstance(verdict, ComparisonEvent):
                    self.comparisons.append(verdict)

    @classmethod
    def from_result(cls, result: Any, events: Iterable[Event | Mapping[str, Any]] = ()) -> SessionState:
        """The state a ``Result`` describes, over the events of its session when they are at hand."""
        state = replay(events, job_id=result.job_id, finished=False)
        state.merge(
            job_id=result.job_id, config=result.config, status=str(result.status), error=result.error,
            candidates=[c.copy() for c in result.candidates], beams=result.beams, duration_ms=result.duration_ms,
            usage=result.usage,
        )
        state.stopped_by = getattr(result, "stopped_by", None) or state.stopped_by
        recorded = _status(result.status)
        if not state.done and recorded is not None:
            state.status = recorded
        return state

    # -- the events ------------------------------------------------------------------------------

    def _running(self) -> None:
        if self.status == JobStatus.PENDING:
            self.status = JobStatus.RUNNING

    def _row(self, i: int, dimension: Dimension | None = None, operation: Operation | None = None) -> Row:
        row = self.rows.get(i)
        if row is None:
            row = self.rows[i] = Row(i, dimension or dimension_of(i), operation or operation_of(i))
        return row

    def _started(self, e: StartedEvent) -> set[str]:
        self.config = {**self.config, **e.config}
        self.started_at = self.started_at or e.timestamp
        self._running()
        return {"header", "progress"}

    def _iteration(self, e: IterationEvent) -> set[str]:
        row = self._row(e.iteration, e.dimension, e.operation)
        if e.total_iterations:
            self._total_iterations = e.total_iterations
        self._running()
        if e.status == "review":  # a steered job waits for a person; the row stays open until "completed"
            self.reviewing = e.iteration
            self.proposed = [b.key for b in e.beam or ()]
            self.current_iteration = e.iteration
            return {"live_row", "beam", "header", "progress"}
        self.reviewing = None
        if e.status == "completed":
            row.status = "completed"
            self.beams[e.iteration] = [b.key for b in e.beam or ()]
            if self.current_iteration is None or self.current_iteration < e.iteration:
                self.current_iteration = e.iteration
            return {"rows", "live_row", "beam", "progress", "best", "chart"}
        self.current_iteration = e.iteration
        return {"live_row", "progress", "header"}

    def _candidate(self, e: CandidateEvent) -> set[str]:
        c = e.to_candidate()
        self.candidates[c.key] = c
        if e.total_candidates:
            self._total_candidates = e.total_candidates
        # The parent's critiques are not sent on their own: each child carries the one it answered.
        parent = self.candidates.get(c.parent) if c.parent else None
        if parent is not None and c.critique is not None:
            parent.critiques.setdefault(critique_key(c.iteration, c.dimension), c.critique)
        row = self._row(c.iteration, c.dimension)
        if c.key not in row.keys:
            row.keys.append(c.key)
        self._running()
        changed = {"rows" if row.completed else "live_row", "progress", "chart"}
        if c.ok and (self._best is None or c.rank_key() < self.candidates[self._best].rank_key()):
            self._best = c.key
            if self._final_best is None:
                changed.add("best")
        return changed

    def _complete(self, e: CompleteEvent) -> set[str]:
        if self.done:
            return set()
        self.status = JobStatus.COMPLETED
        self.result = dict(e.result)
        stopped = self.result.get("stoppedBy")
        self.stopped_by = stopped if isinstance(stopped, str) else None
        duration = self.result.get("duration")
        if isinstance(duration, int):
            self.duration_ms = duration
        best = self.result.get("bestCandidate")
        if isinstance(best, Mapping) and isinstance(best.get("iteration"), int) and isinstance(best.get("candidateId"), int):
            self._final_best = (best["iteration"], best["candidateId"])
        usage = self.result.get("usage")
        return {"header", "progress", "best", "live_row"} | self.set_usage(usage if isinstance(usage, Mapping) else None)

    def _error(self, e: ErrorEvent) -> set[str]:
        if self.done:
            return set()
        self.error = e.error
        # A replay of a session whose process died ends with an error that says so.
        self.status = JobStatus.INTERRUPTED if e.extra.get("interrupted") is True else JobStatus.from_error(e.code)
        return {"header", "progress", "live_row"}

    # -- derived ---------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.status.done

    @property
    def rest_status(self) -> str:
        """``status`` as GET /api/job says it: ``in_progress`` until the end; an interrupted job is an ``error``."""
        if not self.done:
            return REVIEWING if self.reviewing is not None else IN_PROGRESS
        return JobStatus.ERROR.value if self.status == JobStatus.INTERRUPTED else self.status.value

    @property
    def total_iterations(self) -> int | None:
        if self._total_iterations:
            return self._total_iterations
        it = self.config.get("iterations")
        return it if isinstance(it, int) and not isinstance(it, bool) else None

    @property
    def total_candidates(self) -> int:
        if self._total_candidates:
            return self._total_candidates
        n, iters = self.config.get("N"), self.total_iterations
        return n * iters if isinstance(n, int) and iters else 0

    @property
    def failed(self) -> int:
        return sum(1 for c in self.candidates.values() if c.status == "failed")

    @property
    def progress(self) -> dict[str, int]:
        """``{currentIteration, totalIterations, candidatesProcessed, totalCandidates}``, as REST and ``Job.progress`` give it."""
        return {
            "currentIteration": self.current_iteration or 0,
            "totalIterations": self.total_iterations or 0,
            "candidatesProcessed": len(self.candidates),
            "totalCandidates": self.total_candidates,
        }

    @property
    def best_key(self) -> Key | None:
        """The job's best: the one its ``complete`` event named, else the top of a tournament's last
        beam, else the best scored so far (``candidate.best_key``, kept up to date as candidates come)."""
        if self._final_best is not None and self._final_best in self.candidates:
            return self._final_best
        return judged_top(self.config.get("ranking"), self.beams, self.candidates) or self._best

    @property
    def best(self) -> Candidate | None:
        key = self.best_key
        return None if key is None else self.candidates[key]

    @property
    def current_beam(self) -> list[Key]:
        return self.beams[max(self.beams)] if self.beams else []

    def lineage(self, key: Key | None = None) -> list[Key]:
        """From iteration 0 down to ``key`` (default: the best)."""
        return lineage_of(self.best_key if key is None else key, self.candidates)

    def series(self) -> list[Point]:
        """Per iteration with a scored candidate: the best total so far and the iteration's mean."""
        out: list[Point] = []
        best: float | None = None
        for i in sorted(self.rows):
            scores = [s for k in self.rows[i].keys if (s := self.candidates[k].total_score) is not None and self.candidates[k].ok]
            if not scores:
                continue
            top = max(scores)
            best = top if best is None else max(best, top)
            out.append(Point(i, best, sum(scores) / len(scores), self.rows[i].completed))
        return out

    def open_row(self) -> Row | None:
        """The last iteration that has not finished, if any."""
        open_rows = [i for i in sorted(self.rows) if not self.rows[i].completed]
        return self.rows[open_rows[-1]] if open_rows else None


def _status(value: Any) -> JobStatus | None:
    try:
        return JobStatus(value)
    except ValueError:
        return None


def replay(
    events: Iterable[Event | Mapping[str, Any]],
    metadata: Mapping[str, Any] | None = None,
    *,
    job_id: str | None = None,
    finished: bool = True,
) -> SessionState:
    """A session's state from its events (a malformed one is skipped) and its metadata.json.

    ``finished``: the record is all there will be (a session read back), so a job whose
    stream has no ``complete`` or ``error`` was interrupted.
    """
    state = SessionState()
    for e in events:
        try:
            state.apply(e)
        except ValueError as exc:
            log.warning("beamkit: skipped an event of %s: %s", job_id or state.job_id, exc)
    if metadata:
        state.merge_metadata(metadata)
    if not state.job_id:
        state.job_id = job_id
    if finished:
        state.end()
    return state


__all__ = ["SessionState", "Row", "Point", "PARTS", "IN_PROGRESS", "replay"]
