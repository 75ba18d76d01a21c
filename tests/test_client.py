"""beamkit.client against a real standalone server."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from server_helpers import start_server

from beamkit import storage
from beamkit.client import Client
from beamkit.errors import BeamkitError
from beamkit.server.handlers import close_sockets

pytestmark = pytest.mark.asyncio
SMALL = {"N": 3, "M": 2, "iterations": 2, "seed": 3}


async def test_start_follow_and_read_back(server):
    async with Client(server.url) as client:
        assert (await client.health())["status"] == "ok"
        job_id = await client.start("a heron in fog", **SMALL)
        events = [e async for e in client.follow(job_id)]
        await server.manager.idle()
        assert events == storage.read_events(server.output / "sessions" / job_id)
        job = await client.get_job(job_id)
        assert job["status"] == "completed"
        assert job["result"]["bestCandidate"] == events[-1]["result"]["bestCandidate"]
        assert [j["jobId"] for j in await client.list_jobs()] == [job_id]
        image_id = job["result"]["bestCandidate"]["imageId"]
        assert Image.open(io.BytesIO(await client.image(image_id))).format == "PNG"
        assert max(Image.open(io.BytesIO(await client.image(image_id, size=4))).size) <= 4
        assert await client.wait(job_id) == events[-1]["result"]  # a finished job, replayed
        assert "token" not in repr(client)


async def test_errors_carry_the_servers_code_and_field(server):
    async with Client(server.url) as client:
        with pytest.raises(BeamkitError) as info:
            await client.start("a fox", N=True)
        assert info.value.code == "INVALID_REQUEST" and info.value.context["field"] == "N"
        with pytest.raises(BeamkitError) as info:
            await client.get_job("job-nope")
        assert info.value.code == "NOT_FOUND"
        with pytest.raises(BeamkitError) as info:
            async for _ in client.follow("job-nope"):
                pass
        assert info.value.code == "NOT_FOUND"
        with pytest.raises(BeamkitError) as info:
            await client.image("job-nope-iter0-cand0.png")
        assert info.value.code == "NOT_FOUND"


async def test_cancel(server, providers):
    async with Client(server.url) as client:
        job_id = await client.start("a fox", **SMALL, providers=providers.gated)
        await providers.gate.arrived.wait()
        assert (await client.cancel(job_id))["status"] == "cancelled"
        with pytest.raises(BeamkitError) as info:
            await client.wait(job_id)
        assert info.value.code == "CANCELLED"


async def test_the_api_key_goes_with_each_start(server, providers):
    async with Client(server.url, api_key="sk-client-key") as client:
        await client.wait(await client.start("a fox", **SMALL))
    assert providers.settings_seen[-1] == {"api_key": "sk-client-key"}


async def test_a_token(tmp_path, providers):
    server = await start_server(tmp_path / "out", providers.name, token="t0k")
    try:
        async with Client(server.url, token="t0k") as client:
            job_id = await client.start("a fox", **SMALL)
            assert (await client.wait(job_id))["bestCandidate"]
        async with Client(server.url, token="wrong") as client:
            with pytest.raises(BeamkitError) as info:
                await client.health()
            assert info.value.code == "AUTH_ERROR"
            with pytest.raises(BeamkitError) as info:
                async for _ in client.follow(job_id):
                    pass
            assert info.value.code == "AUTH_ERROR"
    finally:
        await server.server.stop()


async def test_follow_picks_up_after_a_dropped_socket(server, providers):
    """The server closes every socket mid-job; follow reconnects and neither misses nor repeats."""
    async with Client(server.url) as client:
        job_id = await client.start("a fox", N=4, M=2, iterations=3, providers=providers.gated)
        got = []
        async for event in client.follow(job_id):
            got.append(event)
            if len(got) == 2:  # started, iteration 0: now cut the line, then let the job go on
                close_sockets(server.server.app.settings)
                providers.gate.open()
        await server.manager.idle()
        assert got == storage.read_events(server.output / "sessions" / job_id)


async def test_follow_gives_up_after_its_reconnects(server, providers):
    async with Client(server.url, reconnects=0) as client:
        job_id = await client.start("a fox", **SMALL, providers=providers.gated)
        with pytest.raises(BeamkitError) as info:
            async for _ in client.follow(job_id):
                close_sockets(server.server.app.settings)
        assert "lost the connection" in info.value.message
        providers.gate.open()
        await server.manager.idle()
