"""Beam search over WHAT/HOW prompt pairs (SPEC section 2). Pure asyncio; it only emits events."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, TypeVar

from .. import events as ev
from ..candidate import HOW, WHAT, Candidate, Dimension, dimension_of, image_id, total_score
from ..errors import BeamkitError, ErrorCode
from ..params import JobParams, all_text
from ..providers.base import KINDS, Limit, ProviderSet, VisionResult
from ..result import Result
from ..storage import SessionStore
from . import seeds
from .limits import limiter

T = TypeVar("T")
Emit = Callable[[dict[str, Any]], None]


class NoSurvivors(BeamkitError):
    """Every candidate of an iteration failed."""


def children_per_parent(n: int, parents: int) -> list[int]:
    """N children spread over the parents as evenly as possible; the first N % M get one more."""
    base, extra = divmod(n, parents)
    return [base + (1 if k < extra else 0) for k in range(parents)]


def _clamp(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, float(x)))


class BeamSearch:
    """One job's search. ``run()`` fills ``result`` as it goes and emits every event through ``emit``."""

    def __init__(self, job_id: str, params: JobParams, providers: ProviderSet, store: SessionStore, emit: Emit) -> None:
        assert params.seed is not None, "the job's seed is drawn before the search starts"
        self.job_id = job_id
        self.params = params
        self.providers = providers
        self.store = store
        self.emit = emit
        self.result = Result(job_id, params.to_dict(), "running", folder=store.folder)
        self.beam: list[Candidate] = []
        self._limiters = {
            kind: limiter(providers.name, kind, providers.limits.get(kind, Limit())) for kind in KINDS
        }

    # -- calls -------------------------------------------------------------------------------

    async def _call(self, kind: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        timeout = self.providers.call_timeout
        async with self._limiters[kind].slot():
            name = getattr(fn, "__name__", kind)
            try:
                async with asyncio.timeout(timeout) as bound:
                    result = await fn(*args, **kwargs)
            except TimeoutError:  # ours, or the provider's own: either way the call took too long
                why = f"took longer than {timeout:g} s" if bound.expired() else "timed out"
                raise BeamkitError(f"the {kind} call {name} {why}", ErrorCode.TIMEOUT) from None
        # Text that is not text (a lone surrogate, which JSON can carry) could be neither stored nor sent.
        if not all_text(result):
            raise BeamkitError(f"the {kind} call {name} answered with invalid text (a lone surrogate)",
                               ErrorCode.PROVIDER_ERROR)
        return result

    def _seed(self, *parts: object) -> int:
        return seeds.derive(self.params.seed, *parts)  # type: ignore[arg-type]

    # -- one candidate's chain ---------------------------------------------------------------

    async def _finish(self, c: Candidate) -> None:
        """combine -> image -> vision -> score, once the candidate's WHAT and HOW are known."""
        llm, p = self.providers.llm, self.params
        t = time.perf_counter()
        c.combined_prompt = await self._call("llm", llm.combine, c.what_prompt, c.how_prompt, seed=self._seed(*c.key, "combine"))
        c.timings["combine"] = time.perf_counter() - t
        t = time.perf_counter()
        image = await self._call("image", self.providers.image.generate, c.combined_prompt, seed=self._seed(*c.key, "image"))
        c.timings["image"] = time.perf_counter() - t
        path = await asyncio.to_thread(self.store.write_image, c.iteration, c.candidate_id, image.png)
        c.image_id = image_id(self.job_id, c.iteration, c.candidate_id)
        c.image_path = str(path)
        t = time.perf_counter()
        vision: VisionResult = await self._call(
            "vision", self.providers.vision.analyze, image.png, p.prompt, seed=self._seed(*c.key, "vision")
        )
        c.timings["vision"] = time.perf_counter() - t
        c.alignment_score = round(_clamp(vision.alignment_score, 0, 100), 2)
        c.aesthetic_score = round(_clamp(vision.aesthetic_score, 0, 10), 3)
        c.total_score = total_score(c.alignment_score, c.aesthetic_score, p.alpha)
        c.analysis, c.strengths, c.weaknesses = vision.analysis, list(vision.strengths), list(vision.weaknesses)
        c.status = "ok"

    async def _run_candidate(self, c: Candidate, make_prompts: Callable[[], Awaitable[None]]) -> None:
        """Run one chain; a non-fatal failure marks the candidate failed, a fatal one ends the job."""
        self.result.candidates.append(c)
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
        self.emit(ev.candidate(self.job_id, c, self.params.N * self.params.iterations))

    # -- iterations ----------------------------------------------------------------------------

    async def _expand(self) -> list[Candidate]:
        llm, prompt = self.providers.llm, self.params.prompt
        children = [Candidate(0, cid, WHAT) for cid in range(self.params.N)]

        async def prompts_for(c: Candidate) -> None:
            t = time.perf_counter()
            c.what_prompt, c.how_prompt = await _both(
                self._call("llm", llm.expand, prompt, WHAT, seed=self._seed(0, c.candidate_id, "what")),
                self._call("llm", llm.expand, prompt, HOW, seed=self._seed(0, c.candidate_id, "how")),
            )
            c.timings["expand"] = time.perf_counter() - t

        async with asyncio.TaskGroup() as tg:
            for c in children:
                tg.create_task(self._run_candidate(c, lambda c=c: prompts_for(c)))
        return children

    async def _refine(self, iteration: int) -> list[Candidate]:
        llm, prompt, dim = self.providers.llm, self.params.prompt, dimension_of(iteration)
        critiques: dict[tuple[int, int], asyncio.Future[str]] = {}

        async def critique(parent: Candidate) -> str:
            text = await self._call("llm", llm.critique, parent, dim, prompt, seed=self._seed(iteration, *parent.key, "critique"))
            parent.critiques[f"iter{iteration}-{dim}"] = text
            return text

        async def prompts_for(c: Candidate, parent: Candidate) -> None:
            crit = await critiques[parent.key]
            if isinstance(crit, BeamkitError):
                raise crit
            t = time.perf_counter()
            new = await self._call(
                "llm", llm.refine, parent.prompt_of(dim), dim, crit, prompt, seed=self._seed(*c.key, "refine")
            )
            c.timings["refine"] = time.perf_counter() - t
            c.what_prompt = new if dim == WHAT else parent.what_prompt
            c.how_prompt = new if dim == HOW else parent.how_prompt

        children: list[Candidate] = []
        async with asyncio.TaskGroup() as tg:
            for parent in self.beam:
                # Shared by the parent's children; its failure fails each of them, not the job.
                critiques[parent.key] = tg.create_task(_shielded(critique(parent)))
            cid = 0
            for parent, count in zip(self.beam, children_per_parent(self.params.N, len(self.beam))):
                for _ in range(count):
                    c = Candidate(iteration, cid, dim, parent=parent.key)
                    children.append(c)
                    tg.create_task(self._run_candidate(c, lambda c=c, parent=parent: prompts_for(c, parent)))
                    cid += 1
        return children

    def _select(self, iteration: int, children: list[Candidate]) -> None:
        survivors = [c for c in children if c.ok]
        if not survivors:
            errors = {c.error["code"] for c in children if c.error}
            code = errors.pop() if len(errors) == 1 else ErrorCode.PROVIDER_ERROR
            first = next((c.error["message"] for c in children if c.error), "no candidate was produced")
            raise NoSurvivors(f"every candidate of iteration {iteration} failed: {first}", code)
        # Parents compete with their children; sorting is stable and rank_key breaks ties by age.
        self.beam = sorted(self.beam + survivors, key=Candidate.rank_key)[: self.params.M]
        self.result.beams[iteration] = [c.key for c in self.beam]

    async def run(self) -> Result:
        p = self.params
        started = time.perf_counter()
        self.emit(ev.started(self.job_id, p.to_dict()))
        for i in range(p.iterations):
            dim: Dimension = dimension_of(i)
            self.emit(ev.iteration(self.job_id, i, p.iterations, dim, "processing"))
            try:
                children = await (self._expand() if i == 0 else self._refine(i))
            except BaseExceptionGroup as group:
                raise _first_error(group) from None
            self._select(i, children)
            self.result.duration_ms = int((time.perf_counter() - started) * 1000)
            self.result.usage = self.providers.usage()
            self.store.write_metadata(self.result.metadata())
            self.emit(ev.iteration(self.job_id, i, p.iterations, dim, "completed", beam=self.beam))
        self.result.status = "completed"
        self.result.duration_ms = int((time.perf_counter() - started) * 1000)
        self.result.usage = self.providers.usage()
        self.store.write_metadata(self.result.metadata())
        self.emit(ev.complete(self.job_id, self.result.to_dict()))
        return self.result


async def _both(a: Awaitable[T], b: Awaitable[T]) -> tuple[T, T]:
    """Run two calls at once; if one fails the other is cancelled and that one error is raised."""
    try:
        async with asyncio.TaskGroup() as tg:
            ta, tb = tg.create_task(a), tg.create_task(b)  # type: ignore[arg-type]
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
