"""Beam search over WHAT/HOW prompt pairs (SPEC section 2). Pure asyncio: it calls role objects,
hands pictures and checkpoints to a Recorder, and emits events; it opens no file itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

from .. import events as ev
from ..candidate import HOW, WHAT, Candidate, Dimension, critique_key, dimension_of, image_id, json_ready, total_score
from ..errors import BeamkitError, ErrorCode
from ..params import JobParams, all_text, is_text
from ..providers.base import KINDS, GeneratedImage, Limit, Roles, VisionResult
from . import seeds, steering
from .deadlines import deadlines
from .limits import limiter
from .recorder import Recorder, SearchRecord
from .seedsearch import render_best
from .stopping import Stopper, total_cost
from .tournament import KeepingRecorder, for_search

T = TypeVar("T")
Emit = Callable[[ev.Event], None]
#: the longest a finished candidate's event waits to be told with others (``BeamSearch._stream``)
STREAM_BATCH_S = 0.02


def children_per_parent(n: int, parents: int) -> list[int]:
    """N children spread over the parents as evenly as possible; the first N % M get one more."""
    base, extra = divmod(n, parents)
    return [base + (1 if k < extra else 0) for k in range(parents)]


def _clamp(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, float(x)))


def _text(s: Any) -> bool:
    # isascii() reads a flag CPython keeps on every string: the usual answer costs no encoding.
    return not isinstance(s, str) or s.isascii() or is_text(s)


def _is_text(result: Any) -> bool:
    """Whether every string of a role's answer is text; a picture's bytes are not walked."""
    if type(result) is str:
        return result.isascii() or is_text(result)
    if isinstance(result, GeneratedImage):
        return not result.metadata or all_text(result.metadata)
    if isinstance(result, VisionResult):
        return _text(result.analysis) and all(map(_text, result.strengths)) and all(map(_text, result.weaknesses))
    return all_text(result)


def _retrieved(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # marks a failed save as seen: the candidate's own error is the one reported


class BeamSearch:
    """One job's search. ``run()`` fills ``record`` as it goes and emits every event through ``emit``."""

    def __init__(self, job_id: str, params: JobParams, providers: Roles, recorder: Recorder, emit: Emit) -> None:
        assert params.seed is not None, "the job's seed is drawn before the search starts"
        self.job_id = job_id
        self.params = params
        self.providers = providers
        self.recorder = recorder
        self._emit = emit
        #: finished candidates and events not yet emitted, in order (see ``_stream``)
        self._queue: list[Candidate | ev.Event] = []
        #: the running iteration's chains, how many have finished, the wait of the one who streams their
        #: events, and the timer that ends the wait when a batch is due (see ``_stream``)
        self._chains = self._chains_done = 0
        self._wake: asyncio.Future[None] | None = None
        self._batch_due: asyncio.TimerHandle | None = None
        self.record = SearchRecord(job_id, params.to_dict())
        self.beam: list[Candidate] = []
        self._limiters = {
            kind: limiter(providers.limit_keys.get(kind, kind), kind, providers.limits.get(kind, Limit())) for kind in KINDS
        }
        self._total = params.N * params.iterations
        #: image calls started so far (the ``images`` stopping rule counts these)
        self.images_used = 0
        self._stopper = Stopper(params.stop_when, params.seeds_per_prompt)
        #: candidates of the iteration being started: N, or fewer where the image budget runs out
        self._n = params.N
        self._deadlines = deadlines()
        #: asked between iterations of a steered job (``steering.review``); the Job sets it
        self.reviewer: steering.Reviewer | None = None
        self._tournament = None
        if params.ranking == "tournament":  # the judge needs the pool's pictures: kept while they compete
            self.recorder = self._keeping = KeepingRecorder(recorder)
            self._tournament = for_search(self)

    # -- events --------------------------------------------------------------------------------

    def emit(self, event: ev.Event) -> None:
        """Emit ``event``, after whatever is queued: the order of events is the order they happened."""
        if self._queue:
            self._flush()
        self._emit(event)

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        for item in queue:
            self._emit(ev.candidate(self.job_id, item, self._total) if isinstance(item, Candidate) else item)

    def _report(self, c: Candidate) -> None:
        self._queue.append(c)
        self._chains_done += 1
        if self._all_finished:
            self._due()
        elif self._batch_due is None:
            self._batch_due = asyncio.get_running_loop().call_later(STREAM_BATCH_S, self._batch)

    @property
    def _all_finished(self) -> bool:
        return self._chains_done >= self._chains

    def _batch(self) -> None:
        self._batch_due = None
        self._due()

    def _due(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _stream(self, n: int) -> None:
        """Until the iteration's ``n`` chains have finished, emit the events of finished candidates in
        batches, each at most ``STREAM_BATCH_S`` after its first candidate finished: candidates that
        finish together (a batch of pictures, a burst of scores) are told together, once the calls
        they make way for are out, not one loop turn each amid them. The last to finish are left
        queued: ``run`` emits them with the iteration's end once the next iteration's first calls
        are out, since those calls need the candidates' scores, not their events. (Any other event
        is emitted after them.)"""
        loop = asyncio.get_running_loop()
        self._chains, self._chains_done = n, 0  # the iteration's chains were just made: none has taken a step yet
        try:
            while not self._all_finished:
                self._wake = loop.create_future()
                await self._wake
                if not self._all_finished:
                    self._flush()
        finally:
            self._wake = None
            if self._batch_due is not None:
                self._batch_due.cancel()
                self._batch_due = None

    # -- calls -------------------------------------------------------------------------------

    async def _call(self, kind: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        # The kind's limiter (engine/limits.py) holds a slot for each attempt and retries one that
        # was rate limited after the pause the server asked for, holding no slot meanwhile.
        result = await self._limiters[kind].run(self._attempt, kind, fn, args, kwargs)
        # Text that is not text (a lone surrogate, which JSON can carry) could be neither stored nor sent.
        if not _is_text(result):
            raise BeamkitError(f"the {kind} call {_name(fn, kind)} answered with invalid text (a lone surrogate)",
                               ErrorCode.PROVIDER_ERROR)
        return result

    async def _attempt(self, kind: str, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> T:
        """One try of a call, under its timeout (waiting for a slot not counted)."""
        timeout = self.providers.call_timeouts.get(kind)
        expired = False
        try:
            bound = self._deadlines.enter(timeout) if timeout is not None else None
            try:
                return await fn(*args, **kwargs)
            finally:
                expired = bound is not None and self._deadlines.leave(bound)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not expired or (current is not None and current.cancelling()):  # not ours alone: a real cancel
                raise
            raise BeamkitError(f"the {kind} call {_name(fn, kind)} took longer than {timeout:g} s", ErrorCode.TIMEOUT) from None
        except TimeoutError:  # the provider's own (or ours, turned into one by the provider)
            why = f"took longer than {timeout:g} s" if expired else "timed out"
            raise BeamkitError(f"the {kind} call {_name(fn, kind)} {why}", ErrorCode.TIMEOUT) from None

    def _seed(self, *parts: object) -> int:
        return seeds.derive(self.params.seed, *parts)  # type: ignore[arg-type]

    # -- one candidate's chain ---------------------------------------------------------------

    async def _finish(self, c: Candidate) -> None:
        """combine -> image -> vision -> score, once the candidate's WHAT and HOW are known."""
        llm, p, rec = self.providers.llm, self.params, self.recorder
        t0 = time.perf_counter()
        if p.unexpanded:  # the user's prompt is rendered as given
            c.combined_prompt = p.prompt
        else:
            c.combined_prompt = await self._call("llm", llm.combine, c.what_prompt, c.how_prompt, seed=self._seed(*c.key, "combine"))
        t1 = time.perf_counter()
        c.timings["combine"] = t1 - t0
        if p.seeds_per_prompt > 1:
            return await render_best(self, c)
        self.images_used += 1  # counted when started: a call that fails was still made
        image = await self._call("image", self.providers.image.generate, c.combined_prompt, seed=self._seed(*c.key, "image"))
        t2 = time.perf_counter()
        c.timings["image"] = t2 - t1
        c.image_metadata = json_ready(dict(image.metadata or {}))
        # Vision already has the bytes: the picture is written meanwhile, off the loop.
        saved = rec.save_image(c.iteration, c.candidate_id, image.png)
        c.image_id = image_id(self.job_id, c.iteration, c.candidate_id)
        c.image_path = rec.image_path(c.iteration, c.candidate_id)
        try:
            vision: VisionResult = await self._call(
                "vision", self.providers.vision.analyze, image.png, p.prompt, seed=self._seed(*c.key, "vision")
            )
        except BaseException:
            saved.add_done_callback(_retrieved)
            raise
        c.timings["vision"] = time.perf_counter() - t2
        await saved  # a candidate is reported once its picture is on disk, so its imagePath can be opened
        c.alignment_score = round(_clamp(vision.alignment_score, 0, 100), 2)
        c.aesthetic_score = round(_clamp(vision.aesthetic_score, 0, 10), 3)
        c.total_score = total_score(c.alignment_score, c.aesthetic_score, p.alpha)
        c.analysis, c.strengths, c.weaknesses = vision.analysis, list(vision.strengths), list(vision.weaknesses)
        c.status = "ok"

    async def _run_candidate(self, c: Candidate, make_prompts: Callable[[], Awaitable[None]]) -> None:
        """Run one chain; a non-fatal failure marks the candidate failed, a fatal one ends the job."""
        self.record.candidates.append(c)
        try:
            await make_prompts()
            await self._finish(c)
        except BeamkitError as exc:
            if exc.fatal:
                raise
            c.status, c.error = "failed", exc.to_dict()
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a provider bug must cost one candidate, not the job
            c.status, c.error = "failed", {"message": f"{type(exc).__name__}: {exc}", "code": ErrorCode.PROVIDER_ERROR}
        self._report(c)

    # -- iterations ----------------------------------------------------------------------------

    async def _expand(self) -> list[Candidate]:
        llm, prompt = self.providers.llm, self.params.prompt
        children = [Candidate(0, cid, WHAT) for cid in range(self._n)]

        async def prompts_for(c: Candidate) -> None:
            if self.params.unexpanded:  # no expansion: the prompt is the WHAT, and there is no HOW
                c.what_prompt, c.how_prompt = prompt, ""
                return
            t = time.perf_counter()
            c.what_prompt, c.how_prompt = await _both(
                self._call("llm", llm.expand, prompt, WHAT, seed=self._seed(0, c.candidate_id, "what")),
                self._call("llm", llm.expand, prompt, HOW, seed=self._seed(0, c.candidate_id, "how")),
            )
            c.timings["expand"] = time.perf_counter() - t

        async with asyncio.TaskGroup() as tg:
            for c in children:
                tg.create_task(self._run_candidate(c, partial(prompts_for, c)))
            await self._stream(len(children))
        return children

    async def _refine(self, iteration: int) -> list[Candidate]:
        llm, prompt, dim = self.providers.llm, self.params.prompt, dimension_of(iteration)
        critiques: dict[tuple[int, int], asyncio.Task[str | BeamkitError]] = {}

        async def critique(parent: Candidate) -> str:
            text = await self._call("llm", llm.critique, parent, dim, prompt, seed=self._seed(iteration, *parent.key, "critique"))
            parent.critiques[critique_key(iteration, dim)] = text
            return text

        async def prompts_for(c: Candidate, parent: Candidate) -> None:
            crit = await critiques[parent.key]
            if isinstance(crit, BeamkitError):
                raise crit
            c.critique = crit
            t = time.perf_counter()
            new = await self._call(
                "llm", llm.refine, parent.prompt_of(dim), dim, crit, prompt, seed=self._seed(*c.key, "refine")
            )
            c.timings["refine"] = time.perf_counter() - t
            c.what_prompt = new if dim == WHAT else parent.what_prompt
            c.how_prompt = new if dim == HOW else parent.how_prompt

        children: list[Candidate] = []
        counts = children_per_parent(self._n, len(self.beam))
        async with asyncio.TaskGroup() as tg:
            for parent, count in zip(self.beam, counts):
                # Shared by the parent's children; its failure fails each of them, not the job.
                if count:  # a parent left without children by the image budget needs no critique
                    critiques[parent.key] = tg.create_task(_shielded(critique(parent)))
            await self._behind()  # the critiques are asked before anything else is done
            cid = 0
            for parent, count in zip(self.beam, counts):
                for _ in range(count):
                    c = Candidate(iteration, cid, dim, parent=parent.key)
                    children.append(c)
                    tg.create_task(self._run_candidate(c, partial(prompts_for, c, parent)))
                    cid += 1
            await self._stream(len(children))
        return children

    async def _behind(self) -> None:
        """Once this iteration's first tasks have taken their first step (its critiques are asked), tell
        how the last iteration ended (its last candidates, its end, this one's start) and keep its
        record: encoding events and rendering metadata.json cost the loop a moment, and the calls
        should not wait for them. (A refining iteration follows one that ended without stopping
        the job: its record is due.)"""
        try:
            await asyncio.sleep(0)
        finally:  # a cancel or a failing call at the first step: all is still told and kept as it stands
            self._flush()
            self.recorder.checkpoint(self.record)

    async def _select(self, iteration: int, children: list[Candidate]) -> None:
        survivors = [c for c in children if c.ok]
        if not survivors:
            errors = {c.error["code"] for c in children if c.error}
            code = errors.pop() if len(errors) == 1 else ErrorCode.PROVIDER_ERROR
            first = next((c.error["message"] for c in children if c.error), "no candidate was produced")
            # the error of the code they share (a bad key fails every candidate alike), else a provider error
            raise BeamkitError(f"every candidate of iteration {iteration} failed: {first}", code)
        if self._tournament is not None:
            self._flush()  # the judge takes its time: the candidates are told before it is asked
            self.beam = await self._tournament.select(iteration, self.beam, survivors, self.params.M, self._keeping.pngs)
            self._keeping.keep({c.key for c in self.beam})
        else:
            # Parents compete with their children; sorting is stable and rank_key breaks ties by age.
            self.beam = sorted(self.beam + survivors, key=Candidate.rank_key)[: self.params.M]
        self.record.beams[iteration] = [c.key for c in self.beam]

    async def run(self) -> SearchRecord:
        """Search to the end. The record is kept (``flush`` done) before this returns, so
        whoever reports the job's end reports what is on disk."""
        p, rec = self.params, self.record
        started = time.perf_counter()
        self.emit(ev.started(self.job_id, p.to_dict()))
        await self.providers.open()  # process-level: a model loads once, before the first call of any job
        try:
            for i in range(p.iterations):
                self._n = self._stopper.candidates_for(p.N, self.images_used)
                dim: Dimension = dimension_of(i)
                processing = ev.iteration(self.job_id, i, p.iterations, dim, "processing")
                if i == 0:
                    self.emit(processing)
                else:  # told with the last iteration's end, once this one's critiques are asked (_behind)
                    self._queue.append(processing)
                try:
                    children = await (self._expand() if i == 0 else self._refine(i))
                except BaseExceptionGroup as group:
                    raise _first_error(group) from None
                pool = steering.pool_of(self, children)  # what a person steering may pick from
                await self._select(i, children)
                rec.duration_ms = int((time.perf_counter() - started) * 1000)
                rec.usage = self.providers.usage()
                stopped_by_person = await steering.review(self, i, dim, pool)
                completed = ev.iteration(self.job_id, i, p.iterations, dim, "completed", beam=self.beam,
                                         ranked=self._tournament is not None)
                if stopped_by_person:
                    rec.stopped_by = "person"
                elif i < p.iterations - 1:  # the last iteration's end is the job's end, kept below
                    rec.stopped_by = self._stopper.after(self.beam[0].total_score, self.images_used, total_cost(rec.usage))
                self._queue.append(completed)  # told once the next calls are out (_behind), or below
                if stopped_by_person or rec.stopped_by is not None or i == p.iterations - 1:
                    break
        finally:  # the last events; after a failure or a cancel, what happened before it, told first
            self._flush()
        rec.status = "completed"
        rec.duration_ms = int((time.perf_counter() - started) * 1000)
        rec.usage = self.providers.usage()
        self.recorder.checkpoint(rec)
        await self.recorder.flush()
        return rec


def _name(fn: Callable[..., Any], kind: str) -> str:
    return getattr(fn, "__name__", kind)


async def _both(a: Coroutine[Any, Any, T], b: Coroutine[Any, Any, T]) -> tuple[T, T]:
    """Run two calls at once; if one fails the other is cancelled and that one error is raised."""
    try:
        async with asyncio.TaskGroup() as tg:
            ta, tb = tg.create_task(a), tg.create_task(b)
    except BaseExceptionGroup as group:
        raise _first_error(group) from None
    return ta.result(), tb.result()


async def _shielded(coro: Awaitable[T]) -> T | BeamkitError:
    """Await ``coro``; a non-fatal error becomes the value (so a TaskGroup does not cancel siblings)."""
    try:
        return await coro
    except BeamkitError as exc:
        if exc.fatal:
            raise
        return exc
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        return BeamkitError(f"{type(exc).__name__}: {exc}", ErrorCode.PROVIDER_ERROR)


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The error to report from a TaskGroup: a cancellation wins, then a BeamkitError."""
    leaves: list[BaseException] = []

    def walk(g: BaseExceptionGroup) -> None:
        for e in g.exceptions:
            walk(e) if isinstance(e, BaseExceptionGroup) else leaves.append(e)

    walk(group)
    for kind in (asyncio.CancelledError, BeamkitError):
        for e in leaves:
            if isinstance(e, kind):
                return e
    return leaves[0]
