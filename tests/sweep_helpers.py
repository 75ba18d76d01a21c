"""Worker-side helpers for tests/test_sweep.py: a simulated provider registered on every Dask
worker (a worker plugin, as a user registers a provider of their own on a cluster)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from distributed import WorkerPlugin

from beamkit.providers import register
from beamkit.providers.simulated import Simulation


def _append(path: str, line: str) -> None:
    # One write on an O_APPEND descriptor: lines from several processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@dataclass
class MarkedSimulation(Simulation):
    """Writes "<monotonic time> +1" when an image call starts and "-1" when it ends, to ``marks``;
    while the file ``hold`` exists, every image call blocks until it is cancelled."""

    marks: str = ""
    hold: str = ""

    async def call(self, op: str, latency: float, seed: int, *args: Any) -> None:
        if op != "image" or not self.marks:
            return await super().call(op, latency, seed, *args)
        _append(self.marks, f"{time.monotonic():.6f} +1 {os.getpid()}\n")
        try:
            return await super().call(op, latency, seed, *args)
        finally:
            _append(self.marks, f"{time.monotonic():.6f} -1 {os.getpid()}\n")


class SimulatedProviderPlugin(WorkerPlugin):
    """Registers a :class:`MarkedSimulation` as provider ``name`` in each worker."""

    def __init__(self, name: str, marks: str, hold: str, image_latency: float = 0.0) -> None:
        self.name = name
        self.marks = marks
        self.hold = hold
        self.image_latency = image_latency

    def setup(self, worker: Any) -> None:
        hold = self.hold
        sim = MarkedSimulation(image_latency=self.image_latency, marks=self.marks, hold=hold, name=self.name,
                               block=lambda op, args: op == "image" and os.path.exists(hold))
        register(self.name, sim.provider)


def most_at_once(marks: str) -> int:
    """The most image calls that were in flight at one time, over every process that wrote ``marks``."""
    with open(marks) as fh:
        changes = sorted((float(t), int(d)) for t, d, _ in (line.split() for line in fh if line.strip()))
    now = peak = 0
    for _, delta in changes:  # at equal times an end (-1) sorts before a start (+1)
        now += delta
        peak = max(peak, now)
    return peak
