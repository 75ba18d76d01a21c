"""The Jupyter Server extension: the same routes under {base_url}beamkit/, behind Jupyter's auth."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect
from traitlets import TraitError
from traitlets.config import Config
from traitlets.config.loader import DeferredConfigString

import beamkit
from beamkit.client import Client
from beamkit.errors import BeamkitError
from beamkit.server.extension import BeamkitExtension
from beamkit.settings import BeamkitSettings

SMALL = {"N": 3, "M": 2, "iterations": 2, "seed": 5}
ROUTES = [("GET", "health"), ("POST", "api/beam-search"), ("GET", "api/job/job-abc"), ("POST", "api/job/job-abc/cancel"),
          ("GET", "api/jobs"), ("GET", "api/images/job-abc-iter0-cand0.png"), ("GET", "api/openapi.json")]


@pytest.fixture
def jp_server_config(tmp_path, providers):
    return {
        "ServerApp": {"jpserver_extensions": {"beamkit": True}},
        "BeamkitSettings": {"output": str(tmp_path / "sessions-out"), "providers": providers.name, "max_jobs": 2,
                            "provider_settings": {providers.name: {"llm_model": "from-traitlets", "api_key": "sk-config"}}},
    }


def extension(jp_serverapp) -> BeamkitExtension:
    return jp_serverapp.extension_manager.extension_points["beamkit"].app


async def fetch_json(jp_fetch, *parts, method="GET", body=None, **kw):
    try:
        r = await jp_fetch("beamkit", *parts, method=method, body=json.dumps(body) if body is not None else
                           (b"" if method == "POST" else None), **kw)
    except HTTPClientError as exc:
        r = exc.response
    return r.code, json.loads(r.body)


async def follow(jp_ws_fetch, job_id):
    ws = await jp_ws_fetch("beamkit", "ws")
    await ws.write_message(json.dumps({"type": "subscribe", "jobId": job_id}))
    events = []
    while True:
        msg = json.loads(await asyncio.wait_for(ws.read_message(), 20))
        events.append(msg)
        if msg["type"] in ("complete", "error"):
            ws.close()
            return events


async def test_the_extension_is_loaded_with_its_settings(jp_serverapp, tmp_path, providers):
    ext = extension(jp_serverapp)
    assert isinstance(ext, BeamkitExtension) and ext.name == "beamkit"
    assert isinstance(ext.beamkit, BeamkitSettings) and ext.beamkit.max_jobs == 2
    assert ext.manager.max_jobs == 2
    assert ext.manager.default_providers == providers.name
    assert Path(ext.manager.output) == tmp_path / "sessions-out"


def test_the_extensions_old_setting_names_still_work():
    old = {"output_dir": "old-out", "max_jobs": 3, "providers": "old-set", "max_queue": 50, "max_connections": 6,
           "provider_settings": {"old-set": {"llm_model": "m"}}}
    got = BeamkitExtension(config=Config({"BeamkitExtension": old})).settings_from_config()
    assert (got.output, got.max_jobs, got.providers, got.max_queue, got.max_connections, got.provider_settings) == (
        "old-out", 3, "old-set", 50, 6, {"old-set": {"llm_model": "m"}})
    # where both are set, the new name wins; a value from Jupyter's command line is read as the setting's type
    both = Config({"BeamkitExtension": {"max_jobs": DeferredConfigString("3"), "output_dir": "old-out"},
                   "BeamkitSettings": {"max_jobs": DeferredConfigString("5")}})
    got = BeamkitExtension(config=both).settings_from_config()
    assert (got.max_jobs, got.output) == (5, "old-out")
    with pytest.raises(TraitError, match="must be at least 1"):
        BeamkitExtension(config=Config({"BeamkitExtension": {"max_jobs": 0}})).settings_from_config()


async def test_rest_and_websocket_under_the_base_url(jp_fetch, jp_ws_fetch, jp_serverapp, tmp_path):
    code, body = await fetch_json(jp_fetch, "health")
    assert code == 200 and body["status"] == "ok"
    code, body = await fetch_json(jp_fetch, "api", "beam-search", method="POST", body={"prompt": "a kite", **SMALL})
    assert code == 200 and body["status"] == "started"
    job_id = body["jobId"]
    events = await follow(jp_ws_fetch, job_id)
    assert events[0]["type"] == "subscribed" and events[1]["type"] == "started" and events[-1]["type"] == "complete"
    code, job = await fetch_json(jp_fetch, "api", "job", job_id)
    assert code == 200 and job["status"] == "completed"
    image_id = job["result"]["bestCandidate"]["imageId"]
    r = await jp_fetch("beamkit", "api", "images", image_id, params={"size": "4"})
    assert r.code == 200 and r.headers["Content-Type"] == "image/png" and r.body.startswith(b"\x89PNG")
    code, listing = await fetch_json(jp_fetch, "api", "jobs")
    assert [j["jobId"] for j in listing["jobs"]] == [job_id]
    code, doc = await fetch_json(jp_fetch, "api", "openapi.json")
    assert code == 200 and doc["openapi"].startswith("3.")
    # paths resolve under the extension's prefix, not against Jupyter's root
    assert doc["servers"][0]["url"].startswith("http://") and doc["servers"][0]["url"].endswith("/beamkit")
    assert (tmp_path / "sessions-out" / "sessions" / job_id / "events.jsonl").exists()


async def test_provider_settings_come_from_traitlets_and_a_request_key_wins(jp_fetch, jp_ws_fetch, providers):
    code, body = await fetch_json(jp_fetch, "api", "beam-search", method="POST", body={"prompt": "a kite", **SMALL})
    assert code == 200
    await follow(jp_ws_fetch, body["jobId"])
    code, body = await fetch_json(jp_fetch, "api", "beam-search", method="POST", body={"prompt": "a kite", **SMALL},
                                  headers={"X-OpenAI-API-Key": "sk-request"})
    assert code == 200
    await follow(jp_ws_fetch, body["jobId"])
    assert providers.settings_seen == [
        {"llm_model": "from-traitlets", "api_key": "sk-config"},
        {"llm_model": "from-traitlets", "api_key": "sk-request"},
    ]


async def test_errors_have_the_same_bodies(jp_fetch):
    code, body = await fetch_json(jp_fetch, "api", "beam-search", method="POST", body={"prompt": "x", "N": True})
    assert code == 400 and body["code"] == "INVALID_REQUEST" and body["field"] == "N"
    code, body = await fetch_json(jp_fetch, "api", "job", "job-nope")
    assert code == 404 and body["code"] == "NOT_FOUND"


async def test_the_job_cap_applies(jp_fetch, providers, jp_serverapp):
    body = {"prompt": "a kite", **SMALL, "providers": providers.gated}
    for _ in range(2):
        assert (await fetch_json(jp_fetch, "api", "beam-search", method="POST", body=body))[0] == 200
    code, answer = await fetch_json(jp_fetch, "api", "beam-search", method="POST", body=body)
    assert code == 429 and answer["code"] == "RATE_LIMIT"
    providers.gate.open()
    await extension(jp_serverapp).manager.idle()


@pytest.mark.parametrize("method,path", ROUTES)
async def test_every_route_needs_jupyters_auth(jp_fetch, method, path):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("beamkit", *path.split("/"), method=method, headers={"Authorization": ""},
                       body=b"{}" if method == "POST" else None)
    assert info.value.code == 403


async def test_the_websocket_needs_jupyters_auth(jp_ws_fetch):
    with pytest.raises(HTTPClientError) as info:
        await jp_ws_fetch("beamkit", "ws", headers={"Authorization": ""})
    assert info.value.code == 403
    ws = await jp_ws_fetch("beamkit", "ws")  # with the token
    await ws.write_message(json.dumps({"type": "ping"}))
    assert json.loads(await ws.read_message())["type"] == "pong"
    ws.close()


async def test_the_python_client_works_through_jupyter(jp_serverapp, jp_http_port, jp_base_url, http_server):
    token = jp_serverapp.identity_provider.token
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}beamkit"
    async with Client(url, token=token) as client:
        job_id = await client.start("a kite over a beach", **SMALL)
        events = [e async for e in client.follow(job_id)]
        assert events[-1]["type"] == "complete"
        assert (await client.get_job(job_id))["status"] == "completed"
    async with Client(url) as anonymous:
        with pytest.raises(BeamkitError) as info:
            await anonymous.health()
        assert info.value.code == "AUTH_ERROR"


async def test_stopping_the_server_interrupts_running_jobs(jp_fetch, jp_serverapp, providers, tmp_path):
    """Nobody cancelled the job: the server went away, so it reads back as interrupted."""
    code, body = await fetch_json(jp_fetch, "api", "beam-search", method="POST",
                                  body={"prompt": "a kite", **SMALL, "providers": providers.gated})
    await providers.gate.arrived.wait()
    await extension(jp_serverapp).stop_extension()
    lines = (tmp_path / "sessions-out" / "sessions" / body["jobId"] / "events.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    assert last["error"]["code"] == "INTERNAL_ERROR" and last["interrupted"] is True
    assert beamkit.load(tmp_path / "sessions-out" / "sessions" / body["jobId"]).status == "interrupted"


# -- a real `jupyter server` process -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyter_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        (tmp_path / name).mkdir()
        env[name] = str(tmp_path / name)
    env["HOME"] = str(tmp_path)
    return env


def test_jupyter_lists_the_extension_as_enabled(jupyter_env):
    out = subprocess.run([sys.executable, "-m", "jupyter", "server", "extension", "list"], env=jupyter_env,
                         capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    line = next(line for line in text.splitlines() if line.strip().startswith("beamkit "))
    assert "enabled" in line
    assert "beamkit 0.1.0" in text and "OK" in text.split("beamkit 0.1.0")[1].splitlines()[0]


@pytest.mark.slow
@pytest.mark.parametrize("token", ["s3cret-token", ""])
def test_a_real_jupyter_server(jupyter_env, tmp_path, token):
    port = _free_port()
    cmd = [sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--ServerApp.root_dir={tmp_path}", f"--IdentityProvider.token={token}",
           "--BeamkitSettings.max_jobs=1", "--BeamkitExtension.max_queue=7"]
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(cmd, env=jupyter_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_listening(proc, port)
        asyncio.run(_check_real_server(port, token, tmp_path))
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    logged = (tmp_path / "server.log").read_text()
    assert "c.BeamkitExtension.max_queue is deprecated; use c.BeamkitSettings.max_queue" in logged
    assert "not recognized" not in logged


def _wait_until_listening(proc: subprocess.Popen, port: int, timeout: float = 60) -> None:
    """Connect until the server accepts (or has died)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "jupyter server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)  # polling a condition: the port opening
    pytest.fail("jupyter server did not start listening")


async def _check_real_server(port: int, token: str, root: Path) -> None:
    base = f"http://127.0.0.1:{port}/beamkit"
    http = AsyncHTTPClient(force_instance=True)

    async def code_of(path: str, headers: dict[str, str]) -> int:
        try:
            return (await http.fetch(base + path, headers=headers)).code
        except HTTPClientError as exc:
            return exc.code

    auth = {"Authorization": f"token {token}"} if token else {}
    assert await code_of("/health", auth) == 200
    health = json.loads((await http.fetch(base + "/health", headers=auth)).body)
    assert health["maxJobs"] == 1  # --BeamkitSettings.max_jobs=1 on Jupyter's command line
    assert await code_of("/api/jobs", auth) == 200
    if token:
        assert await code_of("/health", {}) == 403
        assert await code_of("/api/jobs", {"Authorization": "token wrong"}) == 403
        with pytest.raises(HTTPClientError) as info:
            await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{port}/beamkit/ws"))
        assert info.value.code == 403
    ws = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{port}/beamkit/ws", headers=auth))
    await ws.write_message(json.dumps({"type": "ping"}))
    assert json.loads(await ws.read_message())["type"] == "pong"
    ws.close()
    http.close()
