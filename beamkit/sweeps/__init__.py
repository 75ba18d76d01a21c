"""Sweeps: many beamkit jobs (prompts x configurations x seeds, and baselines at an equal
image budget) on Dask distributed, collected into one table. ``pip install 'beamkit[sweep]'``.

    import beamkit
    s = beamkit.sweep(beamkit.prompts.load("parti", n=50, seed=0),
                      {"beam": {"N": 9, "M": 3, "iterations": 3}},
                      seeds=3, baselines=["best-of-n", "greedy"])
    s.wait()
    s.results()    # one row per (prompt, configuration, seed)
    s.summary()    # mean, bootstrap interval, win rates

Importing this package is light: Dask, pandas and scipy are imported when a sweep needs them.
docs/sweeps.md has the rest.
"""

from .cluster import local_cluster
from .plan import JobSpec, Row
from .sweep import Sweep, sweep

__all__ = ["JobSpec", "Row", "Sweep", "local_cluster", "sweep"]
