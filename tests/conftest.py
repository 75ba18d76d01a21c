"""Shared fixtures. Servers are real, on 127.0.0.1 and free ports; providers are simulated
(``beamkit.providers.simulated``) unless a test needs the real offline set."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_asyncio
from server_helpers import Gate, Providers, Running, start_server

from beamkit.providers import register, unregister
from beamkit.providers.base import ProviderOptions, ProviderSet
from beamkit.providers.simulated import Simulation

pytest_plugins = ["pytest_jupyter.jupyter_server"]


# -- providers ---------------------------------------------------------------------------------


@pytest.fixture
def providers() -> Any:
    name = f"sim-{uuid.uuid4().hex[:8]}"
    sim = Simulation(name=name)
    gate = Gate()
    p = Providers(name, sim, f"{name}-gated", gate)

    def plain(options: ProviderOptions) -> ProviderSet:
        p.settings_seen.append(dict(options.settings))
        return sim.factory(options)

    def gated(options: ProviderOptions) -> ProviderSet:
        s = plain(options)
        s.image = gate.wrap(s.image)
        return s

    register(p.name, plain)
    register(p.gated, gated)
    yield p
    unregister(p.name)
    unregister(p.gated)


# -- a standalone server -----------------------------------------------------------------------


@pytest_asyncio.fixture
async def server(tmp_path: Path, providers: Providers) -> AsyncIterator[Running]:
    running = await start_server(tmp_path / "output", providers.name)
    yield running
    await running.server.stop()
