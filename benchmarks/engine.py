"""Engine benchmarks: prints figures, asserts nothing.

    .venv/bin/python benchmarks/engine.py [--repeats 3] [--only efficiency,offline,overhead]

Each beamkit figure is printed beside the bare-asyncio floor measured in the same run: a
plain asyncio program (TaskGroups and sleeps, nothing else) that makes the same call graph
as the engine, so the gap is beamkit's own cost, not the machine's.

1. Streaming efficiency: providers that only sleep (LLM 40 ms, image 200 ms, vision 80 ms), no
   limits. The critical path of iteration 0 is expand + combine + image + vision = 360 ms, of each
   later one critique + refine + combine + image + vision = 400 ms. efficiency = bound / wall.
2. The offline default job (N=9, M=3, iterations=3): wall time and time per candidate.
3. Engine overhead: candidates per second with providers that return at once (N=64, M=8, 10
   iterations); the floor's calls are ``sleep(0)``.
4. Stage bursts (``--only stages``), at N=32 M=4 4 iterations: how long the loop takes to start
   a stage's N calls, first start to last, beside the floor's. asyncio's epoll wait is rounded up
   to whole milliseconds, so each stage costs its burst on top of its latency (docs/algorithm.md).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import beamkit  # noqa: E402
from beamkit.providers import register  # noqa: E402
from beamkit.providers.simulated import Simulation  # noqa: E402

LLM, IMAGE, VISION = 0.04, 0.2, 0.08
SHAPES = ((9, 3, 3), (32, 4, 4))


def bound_ms(iterations: int) -> float:
    return 360 + 400 * (iterations - 1)


async def bare(N: int, M: int, iterations: int, llm: float, image: float, vision: float,
               starts: list[tuple[str, float]] | None = None) -> None:
    """The engine's call graph with nothing but asyncio: expand x2, combine, image, vision per
    candidate at iteration 0; later, one critique per parent, then refine, combine, image, vision.
    ``starts`` (when given) gets each call's operation and start time."""

    async def call(latency: float, op: str) -> None:
        if starts is not None:
            starts.append((op, time.perf_counter()))
        await asyncio.sleep(latency)

    async def both() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(call(llm, "expand"))
            tg.create_task(call(llm, "expand"))

    async def finish(first: Callable[[], Awaitable[Any]]) -> None:
        await first()
        await call(llm, "combine")
        await call(image, "image")
        await call(vision, "vision")

    async with asyncio.TaskGroup() as tg:
        for _ in range(N):
            tg.create_task(finish(both))
    for _ in range(1, iterations):
        async with asyncio.TaskGroup() as tg:
            critiques = [tg.create_task(call(llm, "critique")) for _ in range(M)]

            async def refine(k: int, critiques: list[asyncio.Task[None]] = critiques) -> None:
                await critiques[k]
                await call(llm, "refine")

            for cid in range(N):
                tg.create_task(finish(partial(refine, cid % M)))


async def timed(work: Awaitable[Any]) -> float:
    t = time.perf_counter()
    await work
    return time.perf_counter() - t


_runs = itertools.count()


def registered(sim: Simulation) -> str:
    """``sim`` registered under a new name: one per job, so that no job pays for another's call log."""
    sim.name = f"bench{next(_runs)}"
    register(sim.name, sim.provider)
    return sim.name


def fresh(llm: float = 0.0, image: float = 0.0, vision: float = 0.0) -> str:
    """A newly registered simulation with these latencies."""
    return registered(Simulation(llm_latency=llm, image_latency=image, vision_latency=vision))


async def efficiency(repeats: int, out: str) -> None:
    print("1. streaming efficiency (sleep-only providers, no limits), median of", repeats)
    for N, M, it in SHAPES:
        ours, floor = [], []
        for s in range(repeats):  # interleaved, so that the machine's noise falls on both alike
            ours.append(await timed(beamkit.search(
                "a forest at dawn", N=N, M=M, iterations=it, seed=s, providers=fresh(LLM, IMAGE, VISION), output=out)))
            floor.append(await timed(bare(N, M, it, LLM, IMAGE, VISION)))
        b = bound_ms(it) / 1000
        print(f"   N={N:<2} M={M} iterations={it}: bound {b * 1000:.0f} ms; "
              f"beamkit {statistics.median(ours) * 1000:.0f} ms, efficiency {b / statistics.median(ours):.3f} "
              f"(best {b / min(ours):.3f}); bare asyncio {statistics.median(floor) * 1000:.0f} ms, "
              f"efficiency {b / statistics.median(floor):.3f} (best {b / min(floor):.3f})")


async def offline(repeats: int, out: str) -> None:
    print("2. offline default job (N=9, M=3, iterations=3)")
    await beamkit.search("warm up", N=2, M=1, iterations=1, seed=0, output=out)  # imports, fonts, first-call costs
    walls = [await timed(beamkit.search("a forest at dawn", seed=s, output=out)) for s in range(repeats)]
    med = statistics.median(walls)
    print(f"   wall median {med:.2f} s (best {min(walls):.2f} s), {med / 27 * 1000:.0f} ms per candidate")


async def overhead(repeats: int, out: str) -> None:
    N, M, it = 64, 8, 10
    n = N * it
    print(f"3. engine overhead (providers that return at once; N={N}, M={M}, iterations={it}), median of", repeats)
    await beamkit.search("warm up", N=4, M=2, iterations=2, seed=0, providers=fresh(), output=out)
    ours, floor = [], []
    for s in range(repeats):
        ours.append(await timed(beamkit.search(
            "a forest at dawn", N=N, M=M, iterations=it, seed=1 + s, providers=fresh(), output=out)))
        floor.append(await timed(bare(N, M, it, 0, 0, 0)))
    print(f"   beamkit {n / statistics.median(ours):,.0f} candidates/s (best {n / min(ours):,.0f}); "
          f"bare asyncio {n / statistics.median(floor):,.0f} candidates/s (best {n / min(floor):,.0f})")


@dataclass
class _Noting(Simulation):
    """The simulation, noting each call's operation and start time."""

    starts: list[tuple[str, float]] = field(default_factory=list)

    async def call(self, op: str, latency: float, seed: int, *args: Any) -> None:
        self.starts.append((op, time.perf_counter()))
        await super().call(op, latency, seed, *args)


STAGES = ("expand", "critique", "refine", "combine", "image", "vision")


def bursts(starts: list[tuple[str, float]], N: int) -> dict[str, list[tuple[float, int]]]:
    """Per stage, each iteration's first-to-last start of its calls in ms, and how many calls it
    started (an iteration ends with its N-th vision)."""
    out: dict[str, list[tuple[float, int]]] = {op: [] for op in STAGES}
    spans: dict[str, list[float]] = {}
    visions = 0
    for op, t in starts:
        spans.setdefault(op, []).append(t)
        visions += op == "vision"
        if visions == N:
            for name, ts in spans.items():
                out[name].append(((max(ts) - min(ts)) * 1000, len(ts)))
            spans, visions = {}, 0
    return out


async def stages(repeats: int, out: str) -> None:
    N, M, it = 32, 4, 4
    print(f"4. stage bursts (N={N}, M={M}, iterations={it}): first to last call start of a stage, ms, median of {repeats} runs")
    ours: dict[str, list[tuple[float, int]]] = {op: [] for op in STAGES}
    floor: dict[str, list[tuple[float, int]]] = {op: [] for op in STAGES}
    for s in range(repeats):
        sim = _Noting(llm_latency=LLM, image_latency=IMAGE, vision_latency=VISION)
        await beamkit.search("a forest at dawn", N=N, M=M, iterations=it, seed=s, providers=registered(sim), output=out)
        noted: list[tuple[str, float]] = []
        await bare(N, M, it, LLM, IMAGE, VISION, noted)
        for op, spread in bursts(sim.starts, N).items():
            ours[op] += spread
        for op, spread in bursts(noted, N).items():
            floor[op] += spread
    for op in STAGES:
        if ours[op]:
            a, b = (statistics.median(x for x, _ in runs) for runs in (ours[op], floor[op]))
            calls = statistics.median(n for _, n in ours[op])
            print(f"   {op:8} ({calls:.0f} calls) beamkit {a:.2f} ms, bare asyncio {b:.2f} ms "
                  f"({a / calls * 1000:.1f} and {b / calls * 1000:.1f} us a call)")


async def main(repeats: int, only: set[str]) -> None:
    out = tempfile.mkdtemp(prefix="beamkit-bench-")
    if "efficiency" in only:
        await efficiency(repeats, out)
    if "offline" in only:
        await offline(repeats, out)
    if "overhead" in only:
        await overhead(repeats, out)
    if "stages" in only:
        await stages(repeats, out)
    print(f"(sessions written under {out})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="efficiency,offline,overhead,stages")
    args = parser.parse_args()
    asyncio.run(main(args.repeats, set(args.only.split(","))))
