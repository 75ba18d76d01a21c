"""Helpers for engine tests: run a job on a simulated provider and collect its events."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import beamkit
from beamkit.providers import register
from beamkit.providers.simulated import Simulation

_names = itertools.count()


def use(sim: Simulation) -> str:
    """Register ``sim`` under a fresh name and return the name."""
    name = f"sim{next(_names)}"
    sim.name = name
    register(name, sim.provider)
    return name


async def run_job(sim: Simulation, output: Path, prompt: str = "a forest at dawn", **params: Any):
    job = beamkit.start(prompt, providers=use(sim), output=output, **{"seed": 7, **params})
    events = [e async for e in job.events()]
    return job, events


def by_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]
