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


async def bare(N: int, M: int, iterations: int, llm: float, image: float, vision: float) -> None:
    """The engine's call graph with nothing but asyncio: expand x2, combine, image, vision per
    candidate at iteration 0; later, one critique per parent, then refine, combine, image, vision."""

    async def call(latency: float) -> None:
        await asyncio.sleep(latency)

    async def both() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(call(llm))
            tg.create_task(call(llm))

    async def finish(first: Callable[[], Awaitable[Any]]) -> None:
        await first()
        await call(llm)
        await call(image)
        await call(vision)

    async with asyncio.TaskGroup() as tg:
        for _ in range(N):
            tg.create_task(finish(both))
    for _ in range(1, iterations):
        async with asyncio.TaskGroup() as tg:
            critiques = [tg.create_task(call(llm)) for _ in range(M)]

            async def refine(k: int, critiques: list[asyncio.Task[None]] = critiques) -> None:
                await critiques[k]
                await call(llm)

            for cid in range(N):
                tg.create_task(finish(partial(refine, cid % M)))


async def timed(work: Awaitable[Any]) -> float:
    t = time.perf_counter()
    await work
    return time.perf_counter() - t


_runs = itertools.count()


def fresh(llm: float = 0.0, image: float = 0.0, vision: float = 0.0) -> str:
    """A newly registered simulation: one per job, so that no job pays for another's call log."""
    name = f"bench{next(_runs)}"
    register(name, Simulation(llm_latency=llm, image_latency=image, vision_latency=vision, name=name).provider)
    return name


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


async def main(repeats: int, only: set[str]) -> None:
    out = tempfile.mkdtemp(prefix="beamkit-bench-")
    if "efficiency" in only:
        await efficiency(repeats, out)
    if "offline" in only:
        await offline(repeats, out)
    if "overhead" in only:
        await overhead(repeats, out)
    print(f"(sessions written under {out})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="efficiency,offline,overhead")
    args = parser.parse_args()
    asyncio.run(main(args.repeats, set(args.only.split(","))))
