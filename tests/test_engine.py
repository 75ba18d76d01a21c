"""The algorithm of SPEC section 2, on a simulated provider set whose calls are counted."""

from __future__ import annotations

import ast
import asyncio
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import by_type, run_job

import beamkit
from beamkit.engine import beam
from beamkit.engine.beam import children_per_parent
from beamkit.errors import ErrorCode
from beamkit.providers import Limit
from beamkit.providers.simulated import Simulation, fatal


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
            assert e["score"] == {"totalScore": None, "alignmentScore": None, "aestheticScore": None}
            assert e["error"]["code"] == ErrorCode.PROVIDER_ERROR and e["error"]["message"]
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
    # Failing at the next iteration's first call, the job still told all that came before it, in order.
    told = [(e["type"], e.get("status"), e.get("iteration")) for e in events]
    assert told == [("started", None, None), ("iteration", "processing", 0), *[("candidate", "ok", 0)] * 6,
                    ("iteration", "completed", 0), ("iteration", "processing", 1), ("error", None, None)], told


@pytest.mark.asyncio
async def test_a_candidates_event_comes_when_it_finishes_not_with_its_iterations_last(tmp_path):
    visions = iter(range(10**6))
    sim = Simulation(llm_latency=0.001, block=lambda op, args: op == "vision" and next(visions) == 0)
    job = beamkit.start("a heron", N=5, M=2, iterations=2, providers=_use(sim), output=tmp_path, seed=2)
    finished = []
    async with asyncio.timeout(10):  # held back until the blocked one finished, they would never come
        async for e in job.events():
            if e["type"] == "candidate":
                finished.append(e["candidateId"])
            if len(finished) == 4:
                break
    # the four others were told while the first vision call still waits (blocked until cancelled)
    assert sim.in_flight["vision"] == 1 and len(finished) == 4 and not job.done
    job.cancel()
    with pytest.raises(beamkit.JobCancelled):
        await job


@pytest.mark.asyncio
@pytest.mark.parametrize("batch_s,batches", [(0.5, "one"), (0.0, "several")])
async def test_candidates_finishing_close_together_are_told_in_one_batch(tmp_path, monkeypatch, batch_s, batches):
    # A batch is due STREAM_BATCH_S after its first candidate finished: long here, so that candidates
    # finishing 30 ms apart fall in one; with none, each is told at the next turn.
    monkeypatch.setattr(beam, "STREAM_BATCH_S", batch_s)
    turn = 0

    async def count_turns():
        nonlocal turn
        while True:
            await asyncio.sleep(0)
            turn += 1

    order = itertools.count()

    class Staggered(Simulation):
        async def call(self, op, latency, seed, *args):  # the k-th vision call takes k times as long
            await super().call(op, latency * (next(order) if op == "vision" else 1), seed, *args)

    visions = iter(range(10**6))
    sim = Staggered(vision_latency=0.03, block=lambda op, args: op == "vision" and next(visions) == 0)
    counter = asyncio.create_task(count_turns())
    job = beamkit.start("a heron", N=5, M=2, iterations=2, providers=_use(sim), output=tmp_path, seed=2)
    told_at: list[int] = []
    job.add_listener(lambda e: told_at.append(turn) if e["type"] == "candidate" else None)
    try:
        async with asyncio.timeout(10):
            async for _event in job.events():
                if len(told_at) == 4:
                    break
    finally:
        counter.cancel()
    # the four others, 30 ms apart, were told while the first vision call still waits
    assert sim.in_flight["vision"] == 1 and not job.done
    if batches == "one":
        assert len(set(told_at)) == 1, told_at
    else:
        assert len(set(told_at)) > 1, told_at
    job.cancel()
    with pytest.raises(beamkit.JobCancelled):
        await job


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
    # Vision takes longer than an image, so pictures made two at a time pile up in vision.
    sim = Simulation(image_latency=0.02, vision_latency=0.05, limits={"image": Limit(concurrency=2)})
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



# -- the per-call bounds: one timer per loop ---------------------------------------------------------


async def _bounded(bounds, outcome: dict[str, str], name: str, bound_s: float, takes_s: float, *, stubborn: bool = False):
    b = bounds.enter(bound_s)
    try:
        try:
            await asyncio.sleep(takes_s)
        except asyncio.CancelledError:
            if not stubborn:
                raise
        outcome[name] = "answered"
    except asyncio.CancelledError:
        outcome[name] = "cancelled"
    finally:
        if bounds.leave(b):
            outcome[name] += ", out of time"


@pytest.mark.asyncio
async def test_a_bound_cancels_only_the_call_that_outlives_it_even_when_a_longer_one_came_first():
    from beamkit.engine.deadlines import deadlines

    bounds, outcome = deadlines(), dict[str, str]()
    # the long bound arms the loop's one timer first; the short one must bring it forward
    await asyncio.gather(
        _bounded(bounds, outcome, "patient", 30.0, 0.2),
        _bounded(bounds, outcome, "hasty", 0.05, 30.0),
        _bounded(bounds, outcome, "quick", 30.0, 0.0),
        _bounded(bounds, outcome, "stubborn", 0.05, 30.0, stubborn=True),  # swallows the cancel and answers
    )
    assert outcome == {"patient": "answered", "hasty": "cancelled, out of time", "quick": "answered",
                       "stubborn": "answered, out of time"}
    assert not any(t.cancelling() for t in asyncio.all_tasks())  # each expiry's cancel was taken back


@pytest.mark.asyncio
async def test_a_cancel_from_outside_is_not_mistaken_for_a_bound():
    from beamkit.engine.deadlines import deadlines

    bounds, outcome = deadlines(), dict[str, str]()
    task = asyncio.ensure_future(_bounded(bounds, outcome, "call", 30.0, 30.0))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert outcome == {"call": "cancelled"}


# -- the engine is pure, and the package has no import cycle ---------------------------------------------

PACKAGE = Path(beamkit.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(*, lazy: bool) -> dict[str, set[str]]:
    """Which beamkit modules each one imports: at its top level only, or (lazy) anywhere in it.
    Importing ``a.b.c`` imports the package ``a.b`` on the way, unless the importer is inside it
    (then that package is already being imported)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        top = [n for n in tree.body] + [n for b in tree.body if isinstance(b, ast.If) for n in b.body
                                         if not (isinstance(b.test, ast.Name) and b.test.id == "TYPE_CHECKING")]
        targets: set[str] = set()
        for node in ast.walk(tree) if lazy else top:
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        parts_of_name = name.split(".")
        mine = {".".join(parts_of_name[:k]) for k in range(1, len(parts_of_name) + 1)}
        found = set()
        for t in targets:
            parts = t.split(".")
            found |= {".".join(parts[:k]) for k in range(2, len(parts) + 1)} - mine
        graph[name] = {t for t in found if t in modules and t != name}
    return graph


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set[str](), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_engine_reaches_no_file_job_or_display_code_even_lazily():
    graph = _import_graph(lazy=True)
    banned = ("beamkit.storage", "beamkit.result", "beamkit.job", "beamkit.widget", "beamkit.server", "beamkit.state",
              "beamkit.api", "beamkit.cli")
    for module in (m for m in graph if m.startswith("beamkit.engine")):
        reached = {m for m in _reach(graph, module) if m.startswith(banned)}
        assert not reached, f"{module} imports {sorted(reached)}"
    for path in (PACKAGE / "engine").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                 for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])}
        assert not names & {"os", "pathlib", "shutil", "tempfile", "io"}, f"{path.name} imports {names}"
        assert not any(isinstance(n, ast.Name) and n.id == "open" for n in ast.walk(tree)), f"{path.name} opens a file"


def test_no_module_of_the_package_imports_itself_back_at_import_time():
    graph = _import_graph(lazy=False)
    cycles = sorted(m for m in graph if m in _reach(graph, m))
    assert not cycles, f"import cycles through {cycles}"


@pytest.mark.parametrize("module", ["beamkit.engine.beam", "beamkit.storage", "beamkit.result", "beamkit.state",
                                    "beamkit.job", "beamkit.events"])
def test_a_core_module_imports_first_in_a_fresh_interpreter(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# -- the engine with a Recorder that is not storage ------------------------------------------------------


class _MemoryRecorder:
    """Keeps pictures in memory, each one some time after it is handed over (a slow disk)."""

    def __init__(self, log: list[tuple[str, object]]) -> None:
        self.log = log
        self.pictures: dict[tuple[int, int], bytes] = {}
        self.checkpoints: list[str] = []

    def image_path(self, iteration: int, candidate_id: int) -> str:
        return f"memory:{iteration}-{candidate_id}"

    def save_image(self, iteration: int, candidate_id: int, png: bytes) -> asyncio.Future[None]:
        saved: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def land() -> None:
            self.pictures[(iteration, candidate_id)] = png
            self.log.append(("saved", (iteration, candidate_id)))
            saved.set_result(None)

        asyncio.get_running_loop().call_later(0.05, land)
        return saved

    def checkpoint(self, record) -> None:
        self.checkpoints.append(f"{record.status}:{len(record.beams)}")

    async def flush(self) -> None:
        self.log.append(("flushed", None))


@pytest.mark.asyncio
async def test_vision_does_not_wait_for_the_disk_and_a_candidate_is_reported_once_its_picture_is_kept():
    from beamkit.engine.beam import BeamSearch
    from beamkit.params import validate
    from beamkit.providers import resolve

    log: list[tuple[str, object]] = []
    sim = Simulation(fault=lambda op, args: log.append((op, args[0])) if op == "vision" else None)
    name = _use(sim)
    params = validate({"prompt": "a fox", "N": 3, "M": 1, "iterations": 2, "seed": 3, "providers": name})
    recorder = _MemoryRecorder(log)

    def emit(e) -> None:
        log.append((e["type"], (e["iteration"], e["candidateId"]) if e["type"] == "candidate" else None))

    search = BeamSearch("job-memory", params, resolve(name, None, temperature=0.8, seed=3, prompt="a fox"), recorder, emit)
    record = await search.run()
    assert record.status == "completed" and len(recorder.pictures) == 6
    assert recorder.checkpoints == ["running:1", "completed:2"] and log[-1] == ("flushed", None)
    steps = [step for step, _ in log]
    for c in record.candidates:
        vision = log.index(("vision", c.combined_prompt))
        saved = log.index(("saved", c.key))
        reported = log.index(("candidate", c.key))
        assert vision < saved < reported, steps
        assert c.image_path == f"memory:{c.iteration}-{c.candidate_id}"


@pytest.mark.asyncio
async def test_an_iterations_end_is_told_and_kept_once_the_next_iterations_calls_have_started():
    """Encoding events and rendering metadata.json cost the loop a moment: the next iteration's
    calls go out first; the events still come in the order things happened."""
    from beamkit.engine.beam import BeamSearch
    from beamkit.params import validate
    from beamkit.providers import resolve

    log: list[tuple[str, object]] = []
    sim = Simulation(llm_latency=0.01, fault=lambda op, args: log.append((op, None)) if op == "critique" else None)
    name = _use(sim)
    params = validate({"prompt": "a fox", "N": 4, "M": 2, "iterations": 3, "seed": 3, "providers": name})
    recorder = _MemoryRecorder(log)
    recorder.checkpoint = lambda record: log.append(("checkpoint", f"{record.status}:{len(record.beams)}"))  # type: ignore[method-assign]

    events: list[dict] = []

    def emit(e) -> None:
        events.append(e)
        if e["type"] == "iteration":
            log.append((f"iteration {e['status']}", e["iteration"]))

    search = BeamSearch("job-order", params, resolve(name, None, temperature=0.8, seed=3, prompt="a fox"), recorder, emit)
    await search.run()
    marks = [(step, what) for step, what in log if step != "saved"]
    for i in (1, 2):
        ended = marks.index(("iteration completed", i - 1))
        # each of the parents' critiques is asked, then the last iteration's end and this one's start
        # are told, then the last iteration's record is handed over
        assert marks[ended - 2:ended + 3] == [("critique", None), ("critique", None), ("iteration completed", i - 1),
                                              ("iteration processing", i), ("checkpoint", f"running:{i}")], marks
    # The events, in the order things happened: an iteration's candidates between its start and its end.
    order = [(e["type"], e.get("status"), e.get("iteration")) for e in events]
    for i in range(3):
        start, end = order.index(("iteration", "processing", i)), order.index(("iteration", "completed", i))
        assert [k for k, e in enumerate(events) if e["type"] == "candidate" and e["iteration"] == i] == \
            list(range(start + 1, end)), order
    assert marks[-3:] == [("iteration completed", 2), ("checkpoint", "completed:3"), ("flushed", None)]
