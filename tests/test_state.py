"""The one reducer (beamkit.state): every event type handled, and each rule in the one place it lives."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from beamkit import events as ev
from beamkit.candidate import Candidate, best_of, dimension_of, operation_of
from beamkit.events import JobStatus
from beamkit.result import Result
from beamkit.state import PARTS, SessionState, replay
from beamkit.widget.viewmodel import ViewModel

JOB = "job-state"

#: one example of every event type of beamkit.events, as it comes over the wire
EXAMPLES: dict[type[ev.Event], dict[str, Any]] = {
    ev.StartedEvent: {"type": "started", "jobId": JOB, "config": {"prompt": "p", "N": 2, "M": 1, "iterations": 2}},
    ev.IterationEvent: {"type": "iteration", "jobId": JOB, "iteration": 0, "totalIterations": 2, "dimension": "what",
                        "operation": "expand", "status": "processing"},
    ev.CandidateEvent: {"type": "candidate", "jobId": JOB, "iteration": 0, "candidateId": 0, "totalCandidates": 4,
                        "status": "ok", "score": {"totalScore": 50.0, "alignmentScore": 50, "aestheticScore": 5.0}},
    ev.ComparisonEvent: {"type": "comparison", "jobId": JOB, "iteration": 0, "a": {"iteration": 0, "candidateId": 0},
                         "b": {"iteration": 0, "candidateId": 1}, "shownFirst": "b", "winner": "a", "reason": "r"},
    ev.CompleteEvent: {"type": "complete", "jobId": JOB, "result": {"bestCandidate": None, "duration": 3, "usage": {}}},
    ev.ErrorEvent: {"type": "error", "jobId": JOB, "error": {"message": "boom", "code": "PROVIDER_ERROR"}},
    ev.SubscribedEvent: {"type": "subscribed", "jobId": JOB},
    ev.UnsubscribedEvent: {"type": "unsubscribed", "jobId": JOB},
    ev.PongEvent: {"type": "pong", "jobId": None},
    ev.UnknownEvent: {"type": "judged", "jobId": JOB, "winner": 3},
}
#: event types that say nothing about the job itself
SILENT = {ev.SubscribedEvent, ev.UnsubscribedEvent, ev.PongEvent, ev.UnknownEvent, ev.ComparisonEvent}


def event_classes() -> list[type[ev.Event]]:
    return [c for _, c in inspect.getmembers(ev, inspect.isclass) if issubclass(c, ev.Event) and c is not ev.Event]


# -- every event type, every consumer ------------------------------------------------------------


@pytest.mark.parametrize("cls", event_classes(), ids=lambda c: c.__name__)
def test_every_event_type_is_handled_by_the_reducer(cls: type[ev.Event]) -> None:
    # A new event type in beamkit/events.py fails here until it has an example above and
    # SessionState.apply handles it (apply raises TypeError for a type it does not know).
    assert cls in EXAMPLES, f"add an example of {cls.__name__} to EXAMPLES and handle it in SessionState.apply"
    event = ev.decode(EXAMPLES[cls])
    assert type(event) is cls
    assert cls is ev.UnknownEvent or ev.EVENT_TYPES[cls.type] is cls  # decode can make it
    changed = SessionState().apply(event)
    assert changed <= set(PARTS)
    assert bool(changed) == (cls not in SILENT)


def test_a_type_the_reducer_does_not_know_is_an_error_not_a_silent_skip() -> None:
    from dataclasses import dataclass
    from typing import ClassVar

    @dataclass(frozen=True, eq=False, kw_only=True)
    class JudgedEvent(ev.Event):
        type: ClassVar[str] = "judged"

    with pytest.raises(TypeError, match="JudgedEvent"):
        SessionState().apply(JudgedEvent(job_id=JOB))


def test_every_consumer_takes_every_event_type() -> None:
    from beamkit.cli import _Progress

    events = [ev.decode(EXAMPLES[c]) for c in EXAMPLES]
    vm, bar = ViewModel(), _Progress(4, enabled=False)
    for e in events:
        vm.apply(e)
        bar(e)
    assert vm.status == "completed"  # the complete event came before the error: a job ends once
    assert bar.state.status == vm.state.status and len(bar.state.candidates) == 1


# -- the rules -----------------------------------------------------------------------------------


def cand(i: int, c: int, total: float | None, *, parent: tuple[int, int] | None = None, ok: bool = True,
         critique: str | None = None) -> dict[str, Any]:
    score = {"totalScore": total, "alignmentScore": total, "aestheticScore": 5.0 if ok else None}
    event: dict[str, Any] = {"type": "candidate", "jobId": JOB, "iteration": i, "candidateId": c, "totalCandidates": 6,
                             "status": "ok" if ok else "failed", "score": score,
                             "parent": None if parent is None else {"iteration": parent[0], "candidateId": parent[1]}}
    if not ok:
        event["error"] = {"message": "no", "code": "PROVIDER_ERROR"}
    if critique is not None:
        event["critique"] = critique
    return event


def it(i: int, status: str = "processing", beam: list[tuple[int, int, float]] | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"type": "iteration", "jobId": JOB, "iteration": i, "totalIterations": 3,
                         "dimension": dimension_of(i), "operation": operation_of(i), "status": status}
    if beam is not None:
        e["beam"] = [{"iteration": a, "candidateId": b, "totalScore": s} for a, b, s in beam]
    return e


STARTED = {"type": "started", "jobId": JOB, "config": {"prompt": "p", "N": 3, "M": 2, "iterations": 3},
           "timestamp": "2025-01-01T00:00:00.000Z"}


def test_ties_go_to_the_older_candidate() -> None:
    s = SessionState()
    s.apply_all([STARTED, it(0), cand(0, 2, 60.0), cand(0, 1, 60.0), it(0, "completed", [(0, 1, 60), (0, 2, 60)]),
                 it(1), cand(1, 0, 60.0, parent=(0, 1))])
    assert s.best_key == (0, 1)  # same total: the earlier iteration, then the lower id
    candidates = [Candidate(1, 0, "what", total_score=60.0, status="ok"), Candidate(0, 2, "what", total_score=60.0, status="ok"),
                  Candidate(0, 1, "what", total_score=60.0, status="ok")]
    assert best_of(candidates) is candidates[2]
    assert Result(JOB, {}, "completed", candidates).best is candidates[2]
    s.apply(cand(1, 1, 60.5, parent=(0, 1)))
    assert s.best_key == (1, 1)


def test_failed_candidates_never_rank_and_count_as_processed() -> None:
    s = SessionState()
    changed = s.apply_all([STARTED, it(0), cand(0, 0, None, ok=False)])
    assert s.best is None and s.failed == 1 and "best" not in changed
    assert s.progress == {"currentIteration": 0, "totalIterations": 3, "candidatesProcessed": 1, "totalCandidates": 6}
    assert "best" in s.apply(cand(0, 1, 10.0))


@pytest.mark.parametrize(("error", "status", "rest"), [
    ({"message": "Job was cancelled", "code": "CANCELLED"}, JobStatus.CANCELLED, "cancelled"),
    ({"message": "bad key", "code": "AUTH_ERROR"}, JobStatus.ERROR, "error"),
    ({"message": "boom", "code": "INTERNAL_ERROR"}, JobStatus.ERROR, "error"),
])
def test_cancelled_or_error(error: dict[str, str], status: JobStatus, rest: str) -> None:
    assert JobStatus.from_error(error["code"]) == status
    s = SessionState()
    s.apply_all([STARTED, it(0), {"type": "error", "jobId": JOB, "error": error}])
    assert s.status == status and s.done and s.rest_status == rest and s.error == error


def test_a_stream_without_an_end_is_interrupted() -> None:
    s = SessionState()
    s.apply_all([STARTED, it(0), cand(0, 0, 40.0)])
    assert not s.done and s.rest_status == "in_progress"
    assert s.end() == {"header", "live_row", "progress"}
    assert s.status == JobStatus.INTERRUPTED and s.rest_status == "error"
    assert s.end(JobStatus.ERROR) == set()  # it ended once
    # a replayed interrupted session ends with an error event that says so
    t = SessionState()
    t.apply_all([STARTED, {"type": "error", "jobId": JOB, "interrupted": True,
                           "error": {"message": "Job was interrupted", "code": "INTERNAL_ERROR"}}])
    assert t.status == JobStatus.INTERRUPTED


def test_status_follows_the_events() -> None:
    s = SessionState()
    assert s.status == JobStatus.PENDING and s.begin() == {"header"} and s.status == JobStatus.RUNNING
    s.apply_all([STARTED, it(0), cand(0, 0, 40.0)])
    s.apply({"type": "complete", "jobId": JOB, "result": {"bestCandidate": {"iteration": 0, "candidateId": 0}, "duration": 9}})
    assert s.status == JobStatus.COMPLETED and s.duration_ms == 9
    assert s.apply({"type": "error", "jobId": JOB, "error": {"message": "late", "code": "CANCELLED"}}) == set()
    assert s.status == JobStatus.COMPLETED and s.error is None


def test_expand_and_refine_naming() -> None:
    assert [(operation_of(i), dimension_of(i)) for i in range(4)] == [
        ("expand", "what"), ("refine", "what"), ("refine", "how"), ("refine", "what")]
    events = [ev.iteration(JOB, i, 4, dimension_of(i), "processing") for i in range(4)]
    assert [(e["operation"], e["dimension"]) for e in events] == [(operation_of(i), dimension_of(i)) for i in range(4)]
    s = SessionState()
    s.apply({"type": "iteration", "jobId": JOB, "iteration": 2, "totalIterations": 3, "status": "processing"})
    assert (s.rows[2].operation, s.rows[2].dimension) == ("refine", "how")  # named where the event does not say


def test_best_so_far_and_the_chart_series() -> None:
    s = SessionState()
    s.apply_all([STARTED, it(0), cand(0, 0, 50.0), cand(0, 1, 30.0), it(0, "completed", [(0, 0, 50), (0, 1, 30)]),
                 it(1), cand(1, 0, 45.0, parent=(0, 0)), cand(1, 1, 20.0, parent=(0, 1))])
    series = s.series()
    assert [(p.iteration, p.best, p.mean, p.complete) for p in series] == [(0, 50.0, 40.0, True), (1, 50.0, 32.5, False)]
    result = Result.from_state(s)
    assert result.best_by_iteration() == [50.0]  # finished iterations only
    assert result.best.key == (0, 0) and result.lineage() == [(0, 0)]


def test_a_parents_critiques_come_from_its_children() -> None:
    s = SessionState()
    s.apply_all([STARTED, it(0), cand(0, 0, 50.0), it(0, "completed", [(0, 0, 50)]), it(1),
                 cand(1, 0, 55.0, parent=(0, 0), critique="too dark"), cand(1, 1, 52.0, parent=(0, 0), critique="too dark")])
    assert s.candidates[(0, 0)].critiques == {"iter1-what": "too dark"}
    assert s.candidates[(1, 0)].critique == "too dark"
    assert s.lineage() == [(0, 0), (1, 0)]


def test_replay_skips_what_it_cannot_read_and_takes_metadata_over_events() -> None:
    meta_cand = Candidate(0, 0, "what", what_prompt="w", total_score=50.0, status="ok", timings={"image": 0.5}).to_dict()
    meta = {"jobId": JOB, "status": "cancelled", "config": STARTED["config"], "candidates": [meta_cand, {"bad": 1}],
            "beams": {"0": [{"iteration": 0, "candidateId": 0}]}, "usage": {"calls": 4},
            "error": {"message": "Job was cancelled", "code": "CANCELLED"}}
    events = [STARTED, {"type": "candidate", "jobId": JOB, "iteration": "zero"}, it(0), cand(0, 0, 50.0), it(1),
              {"type": "some-future-type", "jobId": JOB}]
    s = replay(events, meta)
    assert s.status == JobStatus.CANCELLED and s.usage == {"calls": 4} and s.beams == {0: [(0, 0)]}
    assert s.candidates[(0, 0)].timings == {"image": 0.5}  # the record's candidate: it also has timings
    assert sorted(s.rows) == [0, 1] and s.rows[0].completed and s.started_at == STARTED["timestamp"]
    assert replay([STARTED, it(0)]).status == JobStatus.INTERRUPTED
    assert replay([STARTED, it(0)], finished=False).status == JobStatus.RUNNING


def test_a_result_is_a_snapshot() -> None:
    s = SessionState()
    s.apply_all([STARTED, it(0), cand(0, 0, 50.0)])
    r = Result.from_state(s, folder="x")
    s.candidates[(0, 0)].critiques["iter1-what"] = "later"
    assert r.candidates[0].critiques == {} and r.status == "running" and str(r.folder) == "x"
    json.dumps(r.to_dict())


@pytest.mark.asyncio
async def test_a_tournament_read_from_metadata_alone_keeps_its_verdicts(tmp_path):
    import beamkit

    job = beamkit.start("a fox", N=4, M=2, iterations=2, ranking="tournament", output=tmp_path, seed=3)
    await job.wait()
    verdicts = [(e["a"], e["b"], e["winner"], e["reason"]) for e in job.history if e["type"] == "comparison"]
    assert verdicts
    meta = json.loads((job.folder / "metadata.json").read_text())
    meta["comparisons"][1:1] = [{"iteration": 0, "a": "x", "b": {}}, 7]  # a folder is not trusted: skipped
    state = SessionState()
    state.merge_metadata(meta)
    assert [(c["a"], c["b"], c["winner"], c["reason"]) for c in state.comparisons] == verdicts
