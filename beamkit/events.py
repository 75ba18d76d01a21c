"""The one module that owns event shapes (websocket-api.md, SPEC section 3) and job status.

Every event is a frozen dataclass with a ``type``, a ``job_id`` and a ``timestamp``
(``StartedEvent``, ``IterationEvent``, ``CandidateEvent``, ``CompleteEvent``, ``ErrorEvent``,
and the protocol's replies). It is also its wire form, a read-only dict: ``event["type"]``
and ``json.dumps(event)`` work, and an event equals the dict read back from ``events.jsonl``.

``encode(event)`` is the one JSON text of an event: written to ``events.jsonl`` and sent
on every WebSocket, computed once per event object. ``decode(dict)`` is its inverse for
text read back (a file, a socket): an unknown ``type`` gives ``UnknownEvent``, which every
consumer ignores; a known type with missing or ill-typed fields raises ``ValueError``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal

from .candidate import Candidate, Dimension, Key, Operation, dimension_of, json_ready, operation_of, prompt_fields, ref_dict
from .errors import ErrorCode

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
#: an extension (docs/websocket.md): one verdict of a ``ranking="tournament"`` job
COMPARISON = "comparison"

IterationStatus = Literal["processing", "review", "completed"]
PROCESSING: IterationStatus = "processing"
#: a steered job waits for a person to keep or change the proposed ``beam`` (then ``completed`` follows)
REVIEW: IterationStatus = "review"
ITERATION_COMPLETED: IterationStatus = "completed"
CandidateStatus = Literal["ok", "failed"]


class JobStatus(StrEnum):
    """Where a job stands. ``interrupted``: its process died before it ended (a session read back)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @classmethod
    def from_error(cls, code: str) -> JobStatus:
        """The status a job ends with when it ends with an error of ``code``."""
        return cls.CANCELLED if code == ErrorCode.CANCELLED else cls.ERROR

    @property
    def done(self) -> bool:
        return self not in (JobStatus.PENDING, JobStatus.RUNNING)


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text: every event is stamped


def timestamp() -> str:
    """ISO 8601 UTC with milliseconds and ``Z``."""
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_second[1]}.{min(999, int((now - whole) * 1000)):03d}Z"


# -- the events --------------------------------------------------------------------------------


def _read_only(self: Any, *args: Any, **kwargs: Any) -> Any:
    raise TypeError(f"a {type(self).__name__} cannot be changed: events are values (make a new one)")


@dataclass(frozen=True, eq=False, kw_only=True)
class Event(dict[str, Any]):
    """Fields common to every event. ``extra``: fields this version does not know, kept as they came.

    The event is also its wire form, a read-only dict built once when the event is made: it
    equals the dict read back from ``events.jsonl``, and ``json.dumps(event)`` works.
    """

    type: ClassVar[str] = ""
    job_id: str | None
    timestamp: str = field(default_factory=timestamp)
    extra: Mapping[str, Any] = field(default_factory=dict)

    #: wire keys that ``_fields_of`` reads (the rest of a decoded dict goes to ``extra``)
    _keys: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        put = dict.__setitem__
        put(self, "type", self.type)
        put(self, "jobId", self.job_id)
        dict.update(self, self._body())
        if self.extra:
            dict.update(self, self.extra)
        put(self, "timestamp", self.timestamp)

    def _body(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _fields_of(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    # Its text is encoded once and kept: a change would make the event and its text disagree.
    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = __ior__ = _read_only

    def __copy__(self) -> Event:
        return self

    def __deepcopy__(self, memo: Any) -> Event:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (decode, (dict(self),))


@dataclass(frozen=True, eq=False, kw_only=True)
class StartedEvent(Event):
    type: ClassVar[str] = STARTED
    _keys: ClassVar[frozenset[str]] = frozenset({"config"})
    config: Mapping[str, Any] = field(default_factory=dict)

    def _body(self) -> dict[str, Any]:
        return {"config": dict(self.config)}

    @classmethod
    def _fields_of(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        return {"config": _mapping(d, "config", default={})}


@dataclass(frozen=True)
class BeamEntry:
    """One kept candidate in a completed iteration's ``beam``."""

    iteration: int
    candidate_id: int
    total_score: float | None
    #: 1 for the best; sent by tournament jobs, whose beam is not in score order
    rank: int | None = None

    @property
    def key(self) -> Key:
        return (self.iteration, self.candidate_id)

    def to_wire(self) -> dict[str, Any]:
        out = {"iteration": self.iteration, "candidateId": self.candidate_id, "totalScore": self.total_score}
        if self.rank is not None:
            out["rank"] = self.rank
        return out


@dataclass(frozen=True, eq=False, kw_only=True)
class IterationEvent(Event):
    """An iteration began (``processing``) or ended (``completed``, with the kept ``beam``, best first)."""

    type: ClassVar[str] = ITERATION
    _keys: ClassVar[frozenset[str]] = frozenset({"iteration", "totalIterations", "dimension", "operation", "status", "beam"})
    iteration: int
    total_iterations: int | None
    dimension: Dimension
    operation: Operation
    status: IterationStatus
    beam: tuple[BeamEntry, ...] | None = None

    def _body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "iteration": self.iteration,
            "totalIterations": self.total_iterations,
            "dimension": self.dimension,
            "operation": self.operation,
            "status": self.status,
        }
        if self.beam is not None:
            body["beam"] = [b.to_wire() for b in self.beam]
        return body

    @classmethod
    def _fields_of(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        i = _int(d, "iteration")
        beam = d.get("beam")
        if beam is not None:
            if not isinstance(beam, list):
                raise ValueError("beam is not a list")
            beam = tuple(BeamEntry(*_ref(r, "beam"), _score(r, "totalScore"), _int(r, "rank", optional=True))
                         for r in beam)
        return {
            "iteration": i,
            "total_iterations": _int(d, "totalIterations", optional=True),
            "dimension": _choice(d, "dimension", ("what", "how"), default=dimension_of(i)),
            "operation": _choice(d, "operation", ("expand", "refine"), default=operation_of(i)),
            "status": _choice(d, "status", ("processing", "review", "completed")),
            "beam": beam,
        }


@dataclass(frozen=True, eq=False, kw_only=True)
class CandidateEvent(Event):
    """A candidate finished, scored (``ok``) or ``failed``.

    ``timings`` (seconds per call) is known only in the process that ran the job: it is
    kept in metadata.json, not sent.
    """

    type: ClassVar[str] = CANDIDATE
    _keys: ClassVar[frozenset[str]] = frozenset({
        "iteration", "candidateId", "totalCandidates", "dimension", "parent", "whatPrompt", "howPrompt",
        "combinedPrompt", "imageId", "imagePath", "status", "score", "analysis", "strengths", "weaknesses",
        "critique", "imageMetadata", "error",
    })
    iteration: int
    candidate_id: int
    total_candidates: int | None
    dimension: Dimension
    parent: Key | None = None
    what_prompt: str = ""
    how_prompt: str = ""
    combined_prompt: str = ""
    image_id: str | None = None
    image_path: str | None = None
    status: CandidateStatus = "ok"
    total_score: float | None = None
    alignment_score: float | None = None
    aesthetic_score: float | None = None
    analysis: str = ""
    strengths: tuple[str, ...] = ()
    weaknesses: tuple[str, ...] = ()
    critique: str | None = None
    image_metadata: Mapping[str, Any] = field(default_factory=dict)
    error: Mapping[str, Any] | None = None
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.iteration, self.candidate_id)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def of(cls, job_id: str, c: Candidate, total_candidates: int) -> CandidateEvent:
        """The event of a finished candidate (made once per candidate, on the engine's hot path)."""
        ok = c.status == "ok"
        return cls(
            job_id=job_id, iteration=c.iteration, candidate_id=c.candidate_id,
            total_candidates=total_candidates, dimension=c.dimension, parent=c.parent, what_prompt=c.what_prompt,
            how_prompt=c.how_prompt, combined_prompt=c.combined_prompt, image_id=c.image_id, image_path=c.image_path,
            status="ok" if ok else "failed",
            total_score=c.total_score if ok else None,
            alignment_score=c.alignment_score if ok else None,
            aesthetic_score=c.aesthetic_score if ok else None,
            analysis=c.analysis if ok else "",
            strengths=tuple(c.strengths) if ok else (),
            weaknesses=tuple(c.weaknesses) if ok else (),
            critique=c.critique,
            # the event's own copy, JSON-ready whoever made the candidate
            image_metadata=json_ready(c.image_metadata) if c.image_metadata else {},
            error=dict(c.error) if c.error and not ok else None,
            timings=dict(c.timings),
        )

    def to_candidate(self) -> Candidate:
        return Candidate(
            iteration=self.iteration, candidate_id=self.candidate_id, dimension=self.dimension,
            what_prompt=self.what_prompt, how_prompt=self.how_prompt, parent=self.parent,
            combined_prompt=self.combined_prompt, image_id=self.image_id, image_path=self.image_path,
            alignment_score=self.alignment_score, aesthetic_score=self.aesthetic_score, total_score=self.total_score,
            analysis=self.analysis, strengths=list(self.strengths), weaknesses=list(self.weaknesses),
            status=self.status, error=None if self.error is None else dict(self.error), timings=dict(self.timings),
            critique=self.critique, image_metadata=dict(self.image_metadata),
        )

    def _body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "iteration": self.iteration,
            "candidateId": self.candidate_id,
            "totalCandidates": self.total_candidates,
            **prompt_fields(self),
            "status": self.status,
            # a failed candidate has a score of nulls: clients of the protocol document read score.totalScore
            "score": {
                "totalScore": self.total_score,
                "alignmentScore": self.alignment_score,
                "aestheticScore": self.aesthetic_score,
            },
        }
        if self.status == "ok":
            body["analysis"] = self.analysis
            body["strengths"] = list(self.strengths)
            body["weaknesses"] = list(self.weaknesses)
        else:
            body["error"] = None if self.error is None else dict(self.error)
        if self.iteration >= 1:
            body["critique"] = self.critique
        if self.image_metadata:
            body["imageMetadata"] = self.image_metadata
        return body

    @classmethod
    def _fields_of(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        i = _int(d, "iteration")
        status = _choice(d, "status", ("ok", "failed"), default="ok")
        score = d.get("score")
        if score is not None and not isinstance(score, Mapping):
            raise ValueError("score is not an object")
        if status == "ok" and score is None:
            raise ValueError("a candidate with status ok has no score")
        score = score or {}
        parent = d.get("parent")
        error = d.get("error")
        if error is not None and not isinstance(error, Mapping):
            raise ValueError("error is not an object")
        metadata = _mapping(d, "imageMetadata", default={})
        return {
            "iteration": i,
            "candidate_id": _int(d, "candidateId"),
            "total_candidates": _int(d, "totalCandidates", optional=True),
            "dimension": _choice(d, "dimension", ("what", "how"), default=dimension_of(i)),
            "parent": None if parent is None else _ref(parent, "parent"),
            "what_prompt": _str(d, "whatPrompt"),
            "how_prompt": _str(d, "howPrompt"),
            "combined_prompt": _str(d, "combinedPrompt"),
            "image_id": _str(d, "imageId", default=None),
            "image_path": _str(d, "imagePath", default=None),
            "status": status,
            "total_score": _score(score, "totalScore"),
            "alignment_score": _score(score, "alignmentScore"),
            "aesthetic_score": _score(score, "aestheticScore"),
            "analysis": _str(d, "analysis"),
            "strengths": _texts(d, "strengths"),
            "weaknesses": _texts(d, "weaknesses"),
            "critique": _str(d, "critique", default=None),
            "image_metadata": metadata,
            "error": None if error is None else dict(error),
        }


@dataclass(frozen=True, eq=False, kw_only=True)
class ComparisonEvent(Event):
    """One verdict of a tournament: ``a`` and ``b`` in the order the ranking asked, ``winner`` "a" or "b".

    ``shownFirst`` says which was shown first; ``votes`` (when several) each vote; ``fallback``
    "score" when the judge could not answer and the absolute score decided.
    """

    type: ClassVar[str] = COMPARISON
    _keys: ClassVar[frozenset[str]] = frozenset({"iteration", "a", "b", "shownFirst", "winner", "reason"})
    iteration: int
    a: Key
    b: Key
    shown_first: str
    winner: str
    reason: str = ""

    def _body(self) -> dict[str, Any]:
        return {"iteration": self.iteration,
                "a": ref_dict(self.a),
                "b": ref_dict(self.b),
                "shownFirst": self.shown_first, "winner": self.winner, "reason": self.reason}

    @classmethod
    def _fields_of(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        return {"iteration": _int(d, "iteration"), "a": _ref(d.get("a"), "a"), "b": _ref(d.get("b"), "b"),
                "shown_first": _choice(d, "shownFirst", ("a", "b")), "winner": _choice(d, "winner", ("a", "b")),
                "reason": _str(d, "reason")}


@dataclass(frozen=True, eq=False, kw_only=True)
class CompleteEvent(Event):
    """The job ended with a result: ``Result.to_dict()``."""

    type: ClassVar[str] = COMPLETE
    _keys: ClassVar[frozenset[str]] = frozenset({"result"})
    result: Mapping[str, Any]

    def _body(self) -> dict[str, Any]:
        return {"result": dict(self.result)}

    @classmethod
    def _fields_of(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        return {"result": _mapping(d, "result")}


@dataclass(frozen=True, eq=False, kw_only=True)
class ErrorEvent(Event):
    """The job ended with an error (``CANCELLED`` when it was cancelled), or a protocol error.

    ``extra`` holds the error's context (``field``, ``interrupted``, ``maxJobs``...), sent
    beside ``error``.
    """

    type: ClassVar[str] = ERROR
    _keys: ClassVar[frozenset[str]] = frozenset({"error"})
    message: str
    code: str

    @property
    def error(self) -> dict[str, str]:
        return {"message": self.message, "code": self.code}

    def _body(self) -> dict[str, Any]:
        return {"error": self.error}

    @classmethod
    def _fields_of(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        error = _mapping(d, "error")
        return {"message": _str(error, "message", required=True), "code": _str(error, "code", required=True)}


@dataclass(frozen=True, eq=False, kw_only=True)
class SubscribedEvent(Event):
    type: ClassVar[str] = SUBSCRIBED


@dataclass(frozen=True, eq=False, kw_only=True)
class UnsubscribedEvent(Event):
    type: ClassVar[str] = UNSUBSCRIBED


@dataclass(frozen=True, eq=False, kw_only=True)
class PongEvent(Event):
    type: ClassVar[str] = PONG


@dataclass(frozen=True, eq=False, kw_only=True)
class UnknownEvent(Event):
    """An event of a type this version does not know (a newer server's): kept as it came, ignored."""

    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> Any:
        return self.data.get("type")

    def __post_init__(self) -> None:
        dict.update(self, self.data)


#: every event type by its wire name; decode() and the reducer's completeness test use it
EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (StartedEvent, IterationEvent, CandidateEvent, ComparisonEvent, CompleteEvent, ErrorEvent,
                SubscribedEvent, UnsubscribedEvent, PongEvent)
}
TERMINAL_TYPES = (CompleteEvent, ErrorEvent)


# -- encode and decode ---------------------------------------------------------------------------


#: one encoder for every event: ``json.dumps`` with options builds a new one each call
_ENCODER = json.JSONEncoder(ensure_ascii=False)


def encode(event: Event | Mapping[str, Any]) -> str:
    """The event as one JSON text (a line of events.jsonl, a WebSocket message); computed once per event."""
    if not isinstance(event, Event):
        return _ENCODER.encode(dict(event))
    line = event.__dict__.get("_line")
    if line is None:
        line = _ENCODER.encode(event)
        object.__setattr__(event, "_line", line)
    return line


def to_wire(event: Event | Mapping[str, Any]) -> dict[str, Any]:
    """The event as a JSON-ready dict (a copy: the event itself stays as it was)."""
    return dict(event)


def decode(obj: Mapping[str, Any] | Event) -> Event:
    """A typed event from its wire form. Raises ValueError when a known type is malformed."""
    if isinstance(obj, Event):
        return obj
    if not isinstance(obj, Mapping):
        raise ValueError(f"an event is a JSON object, not {type(obj).__name__}")
    kind = obj.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        job_id = obj.get("jobId")
        return UnknownEvent(job_id=job_id if isinstance(job_id, str) else None,
                            timestamp=str(obj.get("timestamp") or ""), data=dict(obj))
    try:
        fields = cls._fields_of(obj)
        job_id = obj.get("jobId")
        if job_id is not None and not isinstance(job_id, str):
            raise ValueError("jobId is not a string")
        ts = obj.get("timestamp", "")
        if not isinstance(ts, str):
            raise ValueError("timestamp is not a string")
        extra = {k: v for k, v in obj.items() if k not in cls._keys and k not in ("type", "jobId", "timestamp")}
        return cls(job_id=job_id, timestamp=ts, extra=extra, **fields)
    except ValueError as exc:
        raise ValueError(f"malformed {kind} event: {exc}") from None


def is_terminal(event: Event) -> bool:
    return isinstance(event, TERMINAL_TYPES)


# -- constructors, as the engine and the servers call them ------------------------------------------


def started(job_id: str, config: Mapping[str, Any]) -> StartedEvent:
    return StartedEvent(job_id=job_id, config=config)


def iteration(
    job_id: str,
    iteration: int,
    total_iterations: int,
    dimension: Dimension,
    status: IterationStatus,
    beam: list[Candidate] | None = None,
    ranked: bool = False,
) -> IterationEvent:
    entries = None if beam is None else tuple(
        BeamEntry(c.iteration, c.candidate_id, c.total_score, k + 1 if ranked else None) for k, c in enumerate(beam))
    return IterationEvent(job_id=job_id, iteration=iteration, total_iterations=total_iterations, dimension=dimension,
                          operation=operation_of(iteration), status=status, beam=entries)


def candidate(job_id: str, cand: Candidate, total_candidates: int) -> CandidateEvent:
    return CandidateEvent.of(job_id, cand, total_candidates)


def comparison(job_id: str, wire: Mapping[str, Any]) -> ComparisonEvent:
    """The event of one verdict, from ``tournament.Comparison.to_wire()``."""
    known = {"iteration", "a", "b", "shownFirst", "winner", "reason"}
    return ComparisonEvent(job_id=job_id, iteration=wire["iteration"],
                           a=_ref(wire["a"], "a"), b=_ref(wire["b"], "b"),
                           shown_first=wire["shownFirst"], winner=wire["winner"], reason=wire["reason"],
                           extra={k: v for k, v in wire.items() if k not in known})


def complete(job_id: str, result: Mapping[str, Any]) -> CompleteEvent:
    return CompleteEvent(job_id=job_id, result=result)


def error(job_id: str | None, message: str, code: str, **context: Any) -> ErrorEvent:
    return ErrorEvent(job_id=job_id, message=message, code=code, extra=context)


def subscribed(job_id: str) -> SubscribedEvent:
    return SubscribedEvent(job_id=job_id)


def unsubscribed(job_id: str) -> UnsubscribedEvent:
    return UnsubscribedEvent(job_id=job_id)


def pong(job_id: str | None = None) -> PongEvent:
    return PongEvent(job_id=job_id)


# -- field readers for decode --------------------------------------------------------------------

_MISSING: Any = object()


def _int(d: Mapping[str, Any], key: str, *, optional: bool = False) -> Any:
    v = d.get(key)
    if v is None and optional:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError(f"{key} is not a whole number >= 0: {v!r}")
    return v


def _str(d: Mapping[str, Any], key: str, *, default: Any = "", required: bool = False) -> Any:
    v = d.get(key, _MISSING)
    if v is _MISSING or (v is None and default is None and not required):
        if required:
            raise ValueError(f"{key} is missing")
        return default
    if not isinstance(v, str):
        raise ValueError(f"{key} is not a string: {v!r}")
    return v


def _score(d: Mapping[str, Any], key: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise ValueError(f"{key} is not a number: {v!r}")
    return v


def _mapping(d: Mapping[str, Any], key: str, *, default: Any = _MISSING) -> Any:
    v = d.get(key, _MISSING)
    if v is _MISSING or (v is None and default is not _MISSING):
        if default is _MISSING:
            raise ValueError(f"{key} is missing")
        return default
    if not isinstance(v, Mapping):
        raise ValueError(f"{key} is not an object")
    return v


def _choice(d: Mapping[str, Any], key: str, options: tuple[str, ...], *, default: Any = _MISSING) -> Any:
    v = d.get(key, _MISSING)
    if v is _MISSING and default is not _MISSING:
        return default
    if v not in options:
        raise ValueError(f"{key} is {v!r}, not one of {', '.join(options)}")
    return v


def _ref(r: Any, what: str) -> Key:
    if not isinstance(r, Mapping):
        raise ValueError(f"{what} is not an object")
    return (_int(r, "iteration"), _int(r, "candidateId"))


def _texts(d: Mapping[str, Any], key: str) -> tuple[str, ...]:
    v = d.get(key)
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"{key} is not a list of strings")
    return tuple(v)
