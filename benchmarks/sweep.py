"""Sweep benchmark: offline jobs on a LocalCluster of worker processes, against the same jobs
run one after another in one process and split by hand over plain processes, in one run.

    .venv/bin/python benchmarks/sweep.py [--jobs 200] [--workers 2] [--N 3 --M 1 --iterations 2] [--naive]
    .venv/bin/python benchmarks/sweep.py --malloc     # the offline painter under glibc malloc settings

Every figure is wall time from launch to the last result, start-up included: interpreters
and imports for the plain processes, the LocalCluster and its workers for the sweep.
``--naive`` adds a LocalCluster with Dask's default worker environment
(``MALLOC_TRIM_THRESHOLD_=65536``), to show what beamkit's LocalCluster avoids; ``--malloc``
measures the painter alone, in a fresh process per environment: CPU time and page faults per
picture (docs/sweeps.md explains the figures).

Prints the speed-ups over one process, the sweep's share of the plain-process figure (the aim:
at least 0.9) and the sweep's overhead per job. Run it as a file (Dask's workers re-import the
main module; a script read on standard input cannot start a LocalCluster). It is not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import beamkit  # noqa: E402
from beamkit.prompts import load as load_prompts  # noqa: E402
from beamkit.sweeps import sweep  # noqa: E402


def jobs_of(n: int, params: dict[str, int]) -> list[dict[str, Any]]:
    prompts = [str(p) for p in load_prompts("parti", n=min(n, 1632), seed=0)]
    return [{"prompt": prompts[i % len(prompts)], "seed": i // len(prompts), **params} for i in range(n)]


def run_part(jobs: list[dict[str, Any]], output: str) -> None:
    for job in jobs:
        beamkit.run(job["prompt"], output=output, **{k: v for k, v in job.items() if k != "prompt"})


def one_process(jobs: list[dict[str, Any]], output: Path) -> float:
    t = time.perf_counter()
    run_part(jobs, str(output))
    return time.perf_counter() - t


def plain_processes(jobs: list[dict[str, Any]], output: Path, workers: int) -> float:
    """The jobs split by hand: process k runs jobs k, k + workers, ..."""
    file = output / "jobs.json"
    output.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(jobs))
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--part", f"{k}/{workers}", "--jobs-file", str(file),
                               "--output", str(output)]) for k in range(workers)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a plain process failed: exit codes {codes}")
    return time.perf_counter() - t


def on_sweep(jobs: list[dict[str, Any]], output: Path, workers: int, naive: bool) -> tuple[float, int]:
    params = {k: v for k, v in jobs[0].items() if k not in ("prompt", "seed")}
    seeds = sorted({int(j["seed"]) for j in jobs})
    prompts = list(dict.fromkeys(str(j["prompt"]) for j in jobs))
    t = time.perf_counter()
    client: Any = None
    if naive:  # Dask's defaults: its workers get MALLOC_TRIM_THRESHOLD_=65536
        from distributed import Client, LocalCluster

        client = Client(LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None))
    s = sweep(prompts, {"bench": params}, seeds=seeds, output=output, cluster=client, workers=workers)
    s.wait()
    wall = time.perf_counter() - t
    if client is not None:
        client.cluster.close()
        client.close()
    failed = s.progress()["failed"]
    if failed:
        print(f"  warning: {failed} sweep rows failed", file=sys.stderr)
    return wall, len(s.plan.jobs)


#: label -> environment of a fresh interpreter that paints
MALLOC_CASES = {
    "plain process": {},
    "Dask's default (MALLOC_TRIM_THRESHOLD_=65536)": {"MALLOC_TRIM_THRESHOLD_": "65536"},
    "MALLOC_TRIM_THRESHOLD_=64 MiB": {"MALLOC_TRIM_THRESHOLD_": str(64 << 20)},
    "MALLOC_MMAP_THRESHOLD_=128 KiB": {"MALLOC_MMAP_THRESHOLD_": str(128 << 10)},
    "trim 64 MiB + mmap 32 MiB": {"MALLOC_TRIM_THRESHOLD_": str(64 << 20), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)},
}
PAINT = """
import resource, sys
from beamkit.providers.offline.painter import paint
prompts = [f"a forest at dawn, oil painting, {i} red foxes by a lake" for i in range(int(sys.argv[1]))]
paint(prompts[0], 0)
r0 = resource.getrusage(resource.RUSAGE_SELF)
for i, p in enumerate(prompts):
    paint(p, i)
r1 = resource.getrusage(resource.RUSAGE_SELF)
n = len(prompts)
print((r1.ru_utime - r0.ru_utime) / n, (r1.ru_stime - r0.ru_stime) / n, (r1.ru_minflt - r0.ru_minflt) / n)
"""


def malloc(pictures: int = 16, rounds: int = 3) -> None:
    """CPU and minor page faults per painted picture, the median of ``rounds`` fresh processes per case."""
    import os
    import statistics

    print(f"offline painter, {pictures} pictures per process, median of {rounds} processes")
    print(f"{'environment':48s} {'cpu ms':>7s} {'sys ms':>7s} {'faults':>8s}")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    results: dict[str, list[tuple[float, float, float]]] = {label: [] for label in MALLOC_CASES}
    for _ in range(rounds):  # cases interleaved, so that a noisy moment does not fall on one case
        for label, env in MALLOC_CASES.items():
            out = subprocess.run([sys.executable, "-c", PAINT, str(pictures)], env={**base, **env},
                                 capture_output=True, text=True, check=True).stdout.split()
            results[label].append(tuple(float(x) for x in out))  # type: ignore[arg-type]
    for label, runs in results.items():
        user, system, faults = (statistics.median(r[i] for r in runs) for i in range(3))
        print(f"{label:48s} {(user + system) * 1000:7.1f} {system * 1000:7.1f} {faults:8.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--N", type=int, default=3)
    ap.add_argument("--M", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--naive", action="store_true", help="also run on a LocalCluster with Dask's default worker environment")
    ap.add_argument("--malloc", action="store_true", help="measure the painter under glibc malloc settings, and stop")
    ap.add_argument("--part", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--jobs-file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--output", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.malloc:
        malloc()
        return
    if args.part:  # one of the plain processes
        k, n = map(int, args.part.split("/"))
        run_part(json.loads(Path(args.jobs_file).read_text())[k::n], args.output)
        return

    params = {"N": args.N, "M": args.M, "iterations": args.iterations}
    jobs = jobs_of(args.jobs, params)
    print(f"{len(jobs)} offline jobs of {params}, {args.workers} workers")
    with tempfile.TemporaryDirectory(prefix="beamkit-sweep-bench-") as tmp:
        root = Path(tmp)
        one = one_process(jobs, root / "one")
        print(f"one process          {one:8.1f} s   {one / len(jobs) * 1000:7.0f} ms/job")
        plain = plain_processes(jobs, root / "plain", args.workers)
        print(f"{args.workers} plain processes    {plain:8.1f} s   speed-up {one / plain:5.2f}x")
        swept, unique = on_sweep(jobs, root / "sweep", args.workers, naive=False)
        assert unique == len(jobs), "every job of the benchmark is its own session"
        print(f"sweep, LocalCluster  {swept:8.1f} s   speed-up {one / swept:5.2f}x   "
              f"{plain / swept:5.2f} of the plain processes (aim >= 0.9)")
        print(f"sweep overhead       {(swept - plain) * args.workers / len(jobs) * 1000:8.0f} ms/job "
              f"(worker time beyond the plain processes')")
        if args.naive:
            naive, _ = on_sweep(jobs, root / "naive", args.workers, naive=True)
            print(f"naive LocalCluster   {naive:8.1f} s   speed-up {one / naive:5.2f}x   "
                  f"(Dask's default MALLOC_TRIM_THRESHOLD_=65536)")


if __name__ == "__main__":
    main()
