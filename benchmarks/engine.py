"""Engine benchmarks: prints figures, asserts nothing.

    .venv/bin/python benchmarks/engine.py

1. Streaming efficiency: providers that only sleep (LLM 40 ms, image 200 ms, vision 80 ms), no
   limits. The critical path of iteration 0 is expand + combine + image + vision = 360 ms, of each
   later one critique + refine + combine + image + vision = 400 ms. efficiency = bound / wall.
2. The offline default job (N=9, M=3, iterations=3): wall time and time per candidate.
3. Engine overhead: candidates per second with providers that return at once.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import beamkit  # noqa: E402
from beamkit.providers import register  # noqa: E402
from beamkit.providers.simulated import Simulation  # noqa: E402

REPEATS = 3


def bound_ms(iterations: int) -> float:
    return 360 + 400 * (iterations - 1)


async def timed(prompt: str, **kwargs) -> float:
    t = time.perf_counter()
    await beamkit.search(prompt, **kwargs)
    return time.perf_counter() - t


async def main() -> None:
    out = tempfile.mkdtemp(prefix="beamkit-bench-")
    register("sleepy", Simulation(llm_latency=0.04, image_latency=0.2, vision_latency=0.08, name="sleepy").factory)
    register("instant", Simulation(name="instant").factory)

    print("1. streaming efficiency (sleep-only providers, no limits)")
    for N, M, it in ((9, 3, 3), (32, 4, 4)):
        walls = [await timed("a forest at dawn", N=N, M=M, iterations=it, seed=s, providers="sleepy", output=out) for s in range(REPEATS)]
        best, med = min(walls) * 1000, statistics.median(walls) * 1000
        b = bound_ms(it)
        print(f"   N={N:<2} M={M} iterations={it}: bound {b:.0f} ms, wall best {best:.0f} ms / median {med:.0f} ms, "
              f"efficiency {b / best:.3f} (median {b / med:.3f})")

    print("2. offline default job (N=9, M=3, iterations=3)")
    await timed("warm up", N=2, M=1, iterations=1, seed=0, output=out)  # imports, fonts, first-call costs
    walls = [await timed("a forest at dawn", seed=s, output=out) for s in range(REPEATS)]
    med = statistics.median(walls)
    print(f"   wall median {med:.2f} s (best {min(walls):.2f} s), {med / 27 * 1000:.0f} ms per candidate")

    print("3. engine overhead (providers that return at once)")
    n = 64 * 10
    wall = await timed("a forest at dawn", N=64, M=8, iterations=10, seed=1, providers="instant", output=out)
    print(f"   {n} candidates in {wall:.2f} s: {n / wall:.0f} candidates/s")
    print(f"(sessions written under {out})")


if __name__ == "__main__":
    asyncio.run(main())
