"""The algorithm of SPEC section 2, on a simulated provider set whose calls are counted."""

from __future__ import annotations

import asyncio

import pytest

import beamkit
from beamkit.engine.beam import children_per_parent
from beamkit.errors import ErrorCode
from beamkit.providers import Limit
from beamkit.providers.simulated import Simulation, fatal

from engine_helpers import by_type, run_job


@pytest.mark.asyncio
@pytest.mark.parametrize("N,M,iterations", [(9, 3, 3), (7, 3, 4), (5, 5, 2), (1, 1, 3), (10, 4, 5)])
async def test_call_counts_follow_the_spec(tmp_path, N, M, iterations):
    sim = Simulation()
    job, events = await run_job(sim, tmp_path, N=N, M=M, iterations=iterations)
    assert job.status == "completed"
    later = iterations - 1
    assert sim.count("expand") == 2 * N
    assert sim.count("critique") == M * later  # one per parent per iteration
    assert sim.count("refine") == N * later
    for op in ("combine", "image", "vision"):
        assert sim.count(op) == N * iterations
    assert len(by_type(events, "candidate")) == N * iterations


@pytest.mark.asyncio
async def test_expand_asks_for_what_and_how_separately(tmp_path):
    sim = Simulation()
    await run_job(sim, tmp_path, N=4, M=2, iterations=1)
    dims = sorted(args[1] for op, args in sim.calls if op == "expand")
    assert dims == ["how"] * 4 + ["what"] * 4


@pytest.mark.asyncio
async def test_dimensions_alternate_and_the_other_prompt_is_inherited(tmp_path):
    sim = Simulation()
    job, events = await run_job(sim, tmp_path, N=6, M=2, iterations=5)
    started = by_type(events, "iteration")
    assert [(e["iteration"], e["dimension"], e["operation"]) for e in started if e["status"] == "processing"] == [
        (0, "what", "expand"), (1, "what", "refine"), (2, "how", "refine"), (3, "what", "refine"), (4, "how", "refine"),
    ]
    refine_dims = [args[1] for op, args in sim.calls if op == "refine"]
    assert refine_dims == ["what"] * 6 + ["how"] * 6 + ["what"] * 6 + ["how"] * 6
    result = job.result
    for c in result.candidates:
        if c.parent is None:
            continue
        parent = result.candidate(c.parent)
        if c.dimension == "what":
            assert c.how_prompt == parent.how_prompt and c.what_prompt != parent.what_prompt
        else:
            assert c.what_prompt == parent.what_prompt and c.how_prompt != parent.how_prompt


def test_children_spread_over_parents():
    assert children_per_parent(9, 3) == [3, 3, 3]
    assert children_per_parent(7, 3) == [3, 2, 2]
    assert children_per_parent(10, 4) == [3, 3, 2, 2]
    assert children_per_parent(2, 2) == [1, 1]
    assert sum(children_per_parent(64, 7)) == 64


@pytest.mark.asyncio
async def test_uneven_n_over_m_children_name_their_parents(tmp_path):
    sim = Simulation()
    job, events = await run_job(sim, tmp_path, N=7, M=3, iterations=2)
    beam0 = [(r["iteration"], r["candidateId"]) for r in by_type(events, "iteration")[1]["beam"]]
    kids = sorted((e for e in by_type(events, "candidate") if e["iteration"] == 1), key=lambda e: e["candidateId"])
    parents = [(k["parent"]["iteration"], k["parent"]["candidateId"]) for k in kids]
    assert parents == [beam0[0]] * 3 + [beam0[1]] * 2 + [beam0[2]] * 2
    # each parent's children share one critique
    critiques = [args[0] for op, args in sim.calls if op == "critique"]
    assert sorted(critiques) == sorted(beam0)


@pytest.mark.asyncio
async def test_parents_compete_with_children_and_lineage_reaches_old_parents(tmp_path):
    # Iteration 0, candidate 2 scores 99; every refinement scores lower, so it should rule every beam,
    # and the best children of later iterations have a parent several iterations old.
    def score(prompt: str) -> tuple[float, float]:
        if "+r" not in prompt:
            return (99.0, 9.0) if "#" in prompt and prompt.startswith(_best_prefix[0]) else (10.0, 1.0)
        return (50.0 - prompt.count("+r"), 5.0)

    _best_prefix = [""]
    sim = Simulation(score=score)
    # Find candidate 2's WHAT prompt prefix deterministically: expand returns "what:{prompt}#{seed%1000}".
    from beamkit.engine import seeds

    _best_prefix[0] = f"what:a forest at dawn#{seeds.derive(7, 0, 2, 'what') % 1000} |"
    job, events = await run_job(sim, tmp_path, N=4, M=2, iterations=4)
    beams = [e["beam"] for e in by_type(events, "iteration") if e["status"] == "completed"]
    assert all(b[0] == {"iteration": 0, "candidateId": 2, "totalScore": pytest.approx(0.7 * 99 + 0.3 * 90)} for b in beams)
    result = await job
    # The runner-up after iteration 3 is a child whose ancestry crosses iterations that did not beat it.
    iter3 = [c for c in result.candidates if c.iteration == 3]
    assert {c.parent for c in iter3} <= {(0, 2)} | {k for k in [tuple(b.values())[:2] for b in beams[-2]]}
    assert any(c.parent == (0, 2) for c in iter3)
    child = next(c for c in iter3 if c.parent == (0, 2))
    assert result.lineage(child) == [(0, 2), child.key]
    assert result.to_dict()["bestCandidate"]["lineage"] == [{"iteration": 0, "candidateId": 2}]


@pytest.mark.asyncio
async def test_ties_keep_the_older_candidate(tmp_path):
    sim = Simulation(score=lambda prompt: (50.0, 5.0))
    job, events = await run_job(sim, tmp_path, N=5, M=3, iterations=3)
    for e in by_type(events, "iteration"):
        if e["status"] == "completed":
            assert [(r["iteration"], r["candidateId"]) for r in e["beam"]] == [(0, 0), (0, 1), (0, 2)]


@pytest.mark.asyncio
async def test_best_score_never_goes_down(tmp_path):
    sim = Simulation()
    job, events = await run_job(sim, tmp_path, N=6, M=2, iterations=6)
    bests = [e["beam"][0]["totalScore"] for e in by_type(events, "iteration") if e["status"] == "completed"]
    assert bests == sorted(bests)
    assert len(bests) == 6


@pytest.mark.asyncio
async def test_a_seed_makes_a_run_repeatable_and_a_missing_seed_is_recorded(tmp_path):
    def summary(job):
        return [(c.key, c.combined_prompt, c.total_score) for c in job.result.candidates]

    a, _ = await run_job(Simulation(), tmp_path / "a", seed=42)
    b, _ = await run_job(Simulation(), tmp_path / "b", seed=42)
    c, _ = await run_job(Simulation(), tmp_path / "c", seed=43)
    assert sorted(summary(a)) == sorted(summary(b))
    assert sorted(summary(a)) != sorted(summary(c))
    d, events = await run_job(Simulation(), tmp_path / "d", seed=None)
    seed = events[0]["config"]["seed"]
    assert isinstance(seed, int)
    e, _ = await run_job(Simulation(), tmp_path / "e", seed=seed)
    assert sorted(summary(d)) == sorted(summary(e))


@pytest.mark.asyncio
async def test_failed_candidates_drop_out_and_the_job_goes_on(tmp_path):
    images = iter(range(10**6))
    unlucky = {1, 4, 10, 17}
    sim = Simulation(fault=lambda op, args: RuntimeError("boom") if op == "image" and next(images) in unlucky else None)
    sim2 = Simulation(fail_rate=0.15)
    for s, where in ((sim, "a"), (sim2, "b")):
        job, events = await run_job(s, tmp_path / where, N=8, M=2, iterations=3)
        assert job.status == "completed", events[-1]
        failed = [e for e in by_type(events, "candidate") if e["status"] == "failed"]
        assert failed, "the fault hook should have failed some candidates"
        for e in failed:
            assert "score" not in e and e["error"]["code"] == ErrorCode.PROVIDER_ERROR and e["error"]["message"]
        kept = {(r["iteration"], r["candidateId"]) for it in by_type(events, "iteration") for r in it.get("beam", [])}
        assert not kept & {(e["iteration"], e["candidateId"]) for e in failed}


@pytest.mark.asyncio
async def test_a_whole_iteration_failing_ends_the_job_with_an_error_event(tmp_path):
    sim = Simulation(fault=lambda op, args: RuntimeError("vision down") if op == "vision" and "+r" in args[0] else None)
    job, events = await run_job(sim, tmp_path, N=4, M=2, iterations=3)
    assert job.status == "error"
    assert events[-1]["type"] == "error" and "iteration 1" in events[-1]["error"]["message"]
    assert events[-1]["error"]["code"] == ErrorCode.PROVIDER_ERROR
    assert [e["type"] for e in events].count("complete") == 0
    with pytest.raises(beamkit.BeamkitError) as info:
        await job
    assert info.value.code == ErrorCode.PROVIDER_ERROR
    loaded = beamkit.load(job.folder)
    assert loaded.status == "error" and len(loaded.beams) == 1  # iteration 0 is kept
    assert all((job.folder / f"iter0-cand{i}.png").exists() for i in range(4))


@pytest.mark.asyncio
async def test_a_fatal_error_ends_the_job_at_once(tmp_path):
    sim = Simulation(
        image_latency=0.01,
        fault=lambda op, args: fatal(ErrorCode.AUTH_ERROR, "bad key") if op == "critique" else None,
    )
    job, events = await run_job(sim, tmp_path, N=6, M=2, iterations=4)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == ErrorCode.AUTH_ERROR
    assert sim.count("critique") <= 2 and sim.count("refine") == 0
    assert sim.busy() == 0


@pytest.mark.asyncio
async def test_cancel_abandons_calls_in_flight_and_keeps_finished_work(tmp_path):
    sim = Simulation(block=lambda op, args: op == "image" and "+r" in args[0])
    job = beamkit.start("a lighthouse", N=6, M=2, iterations=3, providers=_use(sim), output=tmp_path, seed=1)
    seen = []
    async for e in job.events():
        seen.append(e)
        if e["type"] == "iteration" and e["iteration"] == 1 and e["status"] == "processing":
            break
    # wait until image calls of iteration 1 are actually in flight (blocked)
    while sim.in_flight.get("image", 0) < 6:
        await asyncio.sleep(0)
        if job.done:
            break
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert job.cancel()
    with pytest.raises(beamkit.JobCancelled):
        await job
    assert loop.time() - t0 < 1.0
    assert job.status == "cancelled" and sim.busy() == 0 and sim.cancelled.count("image") == 6
    assert job.history[-1]["type"] == "error" and job.history[-1]["error"]["code"] == "CANCELLED"
    loaded = beamkit.load(job.folder)
    assert loaded.status == "cancelled"
    assert [c.key for c in loaded.candidates if c.ok] == [(0, i) for i in range(6)]
    assert all(c.image_path and __import__("pathlib").Path(c.image_path).exists() for c in loaded.candidates if c.ok)
    assert not job.cancel()  # cancelling twice is harmless


def _use(sim):
    from engine_helpers import use

    return use(sim)


@pytest.mark.asyncio
async def test_concurrency_limit_is_shared_by_jobs_of_a_process(tmp_path):
    sim = Simulation(image_latency=0.02, vision_latency=0.02, limits={"image": Limit(concurrency=2)})
    name = _use(sim)
    jobs = [beamkit.start("a cat", N=6, M=2, iterations=2, providers=name, output=tmp_path, seed=i) for i in range(3)]
    await asyncio.gather(*jobs)
    assert sim.max_in_flight["image"] == 2
    assert sim.max_in_flight["vision"] > 2  # unbounded kinds run wider


@pytest.mark.asyncio
async def test_per_minute_limit_spaces_out_starts():
    from beamkit.engine.limits import KindLimiter

    lim = KindLimiter(Limit(per_minute=3), window=0.3)
    loop = asyncio.get_running_loop()
    starts = []

    async def one():
        async with lim.slot():
            starts.append(loop.time())

    await asyncio.gather(*(one() for _ in range(7)))
    starts.sort()
    for i in range(3, 7):
        assert starts[i] - starts[i - 3] >= 0.3 - 1e-3


@pytest.mark.asyncio
async def test_start_needs_a_running_loop_and_run_refuses_one(tmp_path):
    with pytest.raises(RuntimeError, match="beamkit.run"):
        await asyncio.to_thread(beamkit.start, "x", output=tmp_path)
    with pytest.raises(RuntimeError, match="await beamkit.search"):
        beamkit.run("x", output=tmp_path)


@pytest.mark.asyncio
async def test_bad_parameters_fail_before_anything_runs(tmp_path):
    with pytest.raises(beamkit.InvalidRequest) as info:
        beamkit.start("x", N=3, M=4, output=tmp_path)
    assert info.value.field == "M"
    with pytest.raises(beamkit.InvalidRequest) as info:
        beamkit.start("x", providers="nope", output=tmp_path)
    assert info.value.field == "providers"
    assert not (tmp_path / "sessions").exists() or not any((tmp_path / "sessions").iterdir())
