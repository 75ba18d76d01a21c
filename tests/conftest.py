"""Shared fixtures. Servers are real, on 127.0.0.1 and free ports; providers are simulated
(``beamkit.providers.simulated``) unless a test needs the real offline set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from server_helpers import Providers, Running, register_providers, start_server, unregister_providers

pytest_plugins = ["pytest_jupyter.jupyter_server"]


# -- providers ---------------------------------------------------------------------------------


@pytest.fixture
def providers() -> Any:
    """A simulated provider and its gated twin (image calls held until ``gate.open()``)."""
    p = register_providers()
    yield p
    unregister_providers(p)


# -- a standalone server -----------------------------------------------------------------------


@pytest_asyncio.fixture
async def server(tmp_path: Path, providers: Providers) -> AsyncIterator[Running]:
    running = await start_server(tmp_path / "output", providers.name)
    yield running
    await running.server.stop()
