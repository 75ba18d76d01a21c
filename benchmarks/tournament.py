"""Tournament benchmark: how many comparisons ``ranking="tournament"`` asks, and how well its
ranking agrees with the absolute scores, on the offline world. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/tournament.py [--prompts 2] [--seeds 2] [--quick]

For (N, M) = (9, 3) and (32, 4), each prompt (a fixed sample of the shipped PartiPrompts) and
seed runs one real offline job (3 iterations, votes=1). For each iteration it prints:

- the pool P (the surviving parents and the iteration's children) and all its pairs, P(P-1)/2;
- ``bound``: the most the merge tournament can ask with nothing known (``tournament.upper_bound``);
- ``asked``: the comparisons the job asked (its ``comparison`` events);
- ``no inference``: the same tournament on the same pool, parents and seeds without transitive
  inference (``Known(transitive=False)``): the job's recorded pools are replayed through a
  ``Tournament`` built with ``transitive=False``, which asks every pair its merges reach and
  carries nothing from one iteration to the next;
- agreement between the tournament's ranking and the score ranking of the same pool: Kendall's
  tau-b (``scipy.stats.kendalltau``) with the beam ranked 1..M and every other member of the
  pool tied below it (that is all a top-M tournament decides), and the top-M overlap (the share
  of the beam that is also the pool's top M by score). Mean and min over the prompts and seeds;
  ``tau ceiling`` is the tau-b of a beam that is exactly the score top M, the most the ties allow.

About two minutes with the defaults on two cores (most of it the offline painter at N=32);
``--quick`` (two prompts, one seed) about one.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scipy.stats import kendalltau  # noqa: E402

import beamkit  # noqa: E402
from beamkit.candidate import Candidate, Key  # noqa: E402
from beamkit.engine import seeds  # noqa: E402
from beamkit.engine.tournament import JudgeCall, Side, Tournament, all_pairs, upper_bound  # noqa: E402
from beamkit.events import Event  # noqa: E402
from beamkit.prompts import load as load_prompts  # noqa: E402
from beamkit.providers.offline import OfflineVision  # noqa: E402

SHAPES = ((9, 3), (32, 4))
ITERATIONS = 3


@dataclass
class Figures:
    """One iteration of one job."""

    iteration: int
    pool: int
    asked: int
    without: int
    tau: float
    overlap: float
    same_beam: bool


def agreement(beam: list[Key], pool: list[Candidate]) -> tuple[float, float]:
    """Kendall's tau-b between the tournament's ranking (beam 1..M, the rest tied after) and the
    score ranking of ``pool``, and the share of the beam in the pool's score top M."""
    by_score = sorted(pool, key=Candidate.rank_key)
    place = {c.key: k for k, c in enumerate(by_score)}
    m = len(beam)
    rank = {k: r for r, k in enumerate(beam)}
    tau = kendalltau([rank.get(c.key, m) for c in pool], [place[c.key] for c in pool]).statistic
    overlap = len(set(beam) & {c.key for c in by_score[:m]}) / m
    return float(tau), overlap


def tau_ceiling(pool: int, m: int) -> float:
    """The tau-b of a beam that is exactly the score top M in score order: ties cap it below 1."""
    return float(kendalltau([min(k, m) for k in range(pool)], list(range(pool))).statistic)


def offline_judge(prompt: str) -> JudgeCall:
    """The judge call a job makes (``tournament.for_search``), on the offline provider's judge."""
    vision = OfflineVision()

    async def call(first: bytes, second: bytes, seed: int) -> tuple[Side | None, str]:
        verdict = await vision.compare(first, second, prompt, seed=seed)
        return verdict.winner, verdict.reason

    return call


async def replay(result: beamkit.Result, prompt: str, seed: int, M: int, transitive: bool) -> tuple[dict[int, int], dict[int, list[Key]]]:
    """The job's tournament again, on its recorded pools (parents: the job's own beams), with or
    without transitive inference: comparisons asked and the beam chosen, per iteration."""
    t = Tournament(offline_judge(prompt), lambda *p: seeds.derive(seed, *p), votes=1, transitive=transitive)
    by_key = {c.key: c for c in result.candidates}
    beams: dict[int, list[Key]] = {}
    for i in sorted(result.beams):
        parents = [by_key[k] for k in result.beams.get(i - 1, [])]
        children = [c for c in result.candidates if c.iteration == i and c.ok]
        pngs = {c.key: Path(str(c.image_path)).read_bytes() for c in parents + children}
        beams[i] = [c.key for c in await t.select(i, parents, children, M, pngs)]
    return {i: t.asked.get(i, 0) for i in beams}, beams


async def measure(prompt: str, seed: int, N: int, M: int, output: str,
                  iterations: int = ITERATIONS) -> list[Figures]:
    """One offline tournament job, and its pools replayed without transitive inference."""
    events: list[Event] = []
    job = beamkit.start(prompt, N=N, M=M, iterations=iterations, seed=seed, ranking="tournament", votes=1,
                        providers="offline", output=output)
    job.add_listener(events.append)
    result = await job
    asked = Counter(e["iteration"] for e in events if e["type"] == "comparison")
    without, beams_without = await replay(result, prompt, seed, M, transitive=False)
    by_key = {c.key: c for c in result.candidates}
    out = []
    for i, beam in sorted(result.beams.items()):
        pool = [by_key[k] for k in result.beams.get(i - 1, [])] + [c for c in result.candidates if c.iteration == i and c.ok]
        tau, overlap = agreement(beam, pool)
        out.append(Figures(i, len(pool), asked[i], without[i], tau, overlap, beams_without[i] == beam))
    return out


def table(N: int, M: int, runs: list[list[Figures]]) -> None:
    print(f"N={N} M={M}: {len(runs)} jobs, {ITERATIONS} iterations, votes=1 (asked: mean per job; "
          "tau and top-M: mean / min over jobs)")
    head = ("iter", "pool", "all pairs", "bound", "asked", "no inference", "asked/all", "asked/no-inf",
            "tau", "tau ceiling", "top-M", "same beam")
    print("  " + "".join(f"{h:>13}" for h in head))
    every = [f for run in runs for f in run]
    rows = [(str(i), [f for f in every if f.iteration == i]) for i in range(ITERATIONS)]
    for label, fs in [*(row for row in rows if row[1]), ("all", every)]:
        pools = sorted({f.pool for f in fs})
        pairs = sum(all_pairs(f.pool) for f in fs)
        asked, without = sum(f.asked for f in fs), sum(f.without for f in fs)
        n = len(fs)
        cells = (
            label,
            "/".join(map(str, pools)) if label != "all" else "",
            f"{pairs / n:.1f}",
            f"{sum(upper_bound(f.pool, M) for f in fs) / n:.1f}",
            f"{asked / n:.1f}",
            f"{without / n:.1f}",
            f"{asked / pairs:.3f}",
            f"{asked / without:.3f}",
            f"{statistics.mean(f.tau for f in fs):.2f}/{min(f.tau for f in fs):.2f}",
            f"{statistics.mean(tau_ceiling(f.pool, M) for f in fs):.2f}",
            f"{statistics.mean(f.overlap for f in fs):.2f}/{min(f.overlap for f in fs):.2f}",
            f"{sum(f.same_beam for f in fs)}/{len(fs)}",
        )
        print("  " + "".join(f"{c:>13}" for c in cells))
    print("  (the 'all' row: per iteration of a job; same beam: iterations where the replay without inference "
          "chose the job's beam)")


async def main(n_prompts: int, n_seeds: int, shapes: tuple[tuple[int, int], ...]) -> None:
    out = tempfile.mkdtemp(prefix="beamkit-bench-")
    prompts = [str(p) for p in load_prompts("parti", n=n_prompts, seed=0)]
    for N, M in shapes:
        t = time.perf_counter()
        runs = [await measure(p, s, N, M, out) for p in prompts for s in range(n_seeds)]
        table(N, M, runs)
        print(f"  ({time.perf_counter() - t:.0f} s)")
    print(f"(sessions written under {out})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2, help="how many PartiPrompts (a fixed sample)")
    parser.add_argument("--seeds", type=int, default=2, help="job seeds 0..S-1 per prompt")
    parser.add_argument("--quick", action="store_true", help="2 prompts, 1 seed")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.seeds = 2, 1
    if args.prompts < 1 or args.seeds < 1:
        parser.error("--prompts and --seeds must be at least 1")
    asyncio.run(main(args.prompts, args.seeds, SHAPES))
