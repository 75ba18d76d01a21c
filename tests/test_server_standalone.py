"""The standalone server: binding rules, its token, `beamkit serve`, and the OpenAPI document."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys

import jsonschema
import pytest
from server_helpers import recv, send, start_server, until_terminal
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from beamkit.server import openapi
from beamkit.server.handlers import ROUTES
from beamkit.server.standalone import check_bind, is_loopback, make_app, serve

TOKEN = "tok-7f3a9c"


@pytest.mark.parametrize("host,ok", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
                                     ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.com", False)])
def test_loopback(host, ok):
    assert is_loopback(host) is ok
    assert (check_bind(host, None) is None) is ok
    assert check_bind(host, "a-token") is None


def test_serve_refuses_a_public_host_without_a_token(capsys, monkeypatch):
    monkeypatch.delenv("BEAMKIT_TOKEN", raising=False)
    assert serve(host="0.0.0.0", port=0) == 2
    err = capsys.readouterr().err
    assert "refusing" in err and "--token" in err and "0.0.0.0" in err


def test_beamkit_serve_refuses_too(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "BEAMKIT_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "beamkit", "serve", "--host", "0.0.0.0", "--output", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and "without a token" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_beamkit_serve_runs_and_stops_cleanly(tmp_path):
    port = _free_port()
    env = {**os.environ, "BEAMKIT_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "beamkit", "serve", "--port", str(port), "--output", str(tmp_path / "o"),
                             "--host", "0.0.0.0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "beamkit serving" in line and str(port) in line, line + proc.stderr.read()
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10)
        assert info.value.code == 401
        req = urllib.request.Request(f"http://127.0.0.1:{port}/health", headers={"Authorization": f"Bearer {TOKEN}"})
        assert json.loads(urllib.request.urlopen(req, timeout=10).read())["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    assert TOKEN not in proc.stdout.read() + proc.stderr.read()


# -- the token ---------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("path,method", [("/health", "GET"), ("/api/jobs", "GET"), ("/api/beam-search", "POST"),
                                         ("/api/job/job-abc", "GET"), ("/api/job/job-abc/cancel", "POST"),
                                         ("/api/images/job-abc-iter0-cand0.png", "GET"), ("/api/openapi.json", "GET")])
async def test_with_a_token_every_route_needs_it(tmp_path, providers, path, method):
    server = await start_server(tmp_path / "out", providers.name, token=TOKEN)
    try:
        body = {"prompt": "a fox"} if method == "POST" else None
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"}):
            server.token = None
            r = await server.fetch(path, method, body, headers=headers)
            assert r.code == 401, headers
            assert json.loads(r.body)["code"] == "AUTH_ERROR"
        r = await server.fetch(path + "?token=wrong", method, body)
        assert r.code == 401
        ok_header = await server.fetch(path, method, body, headers={"Authorization": f"Bearer {TOKEN}"})
        ok_query = await server.fetch(f"{path}?token={TOKEN}", method, body)
        assert ok_header.code != 401 and ok_query.code != 401
        await server.manager.idle()
    finally:
        await server.server.stop()


@pytest.mark.asyncio
async def test_with_a_token_the_websocket_needs_it(tmp_path, providers):
    server = await start_server(tmp_path / "out", providers.name, token=TOKEN)
    try:
        for path in ("/ws", "/"):
            url = server.url.replace("http", "ws", 1) + path
            with pytest.raises(HTTPClientError) as info:
                await websocket_connect(HTTPRequest(url))
            assert info.value.code == 401
            with pytest.raises(HTTPClientError):
                await websocket_connect(HTTPRequest(url + "?token=nope"))
            for ws in (await websocket_connect(HTTPRequest(url + f"?token={TOKEN}")),
                       await websocket_connect(HTTPRequest(url, headers={"Authorization": f"Bearer {TOKEN}"}))):
                await send(ws, {"type": "ping"})
                assert (await recv(ws))["type"] == "pong"
                ws.close()
    finally:
        await server.server.stop()


@pytest.mark.asyncio
async def test_without_a_token_foreign_host_names_are_refused(server):
    r = await server.fetch("/health", headers={"Host": "evil.example:3000"})
    assert r.code == 403 and json.loads(r.body)["code"] == "AUTH_ERROR"
    for host in ("localhost:3000", f"127.0.0.1:{server.server.port}", "[::1]:3000"):
        assert (await server.fetch("/health", headers={"Host": host})).code == 200


@pytest.mark.asyncio
async def test_tokens_in_urls_are_not_logged(tmp_path, providers, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    server = await start_server(tmp_path / "out", providers.name, token=TOKEN)
    try:
        await server.fetch(f"/health?token={TOKEN}")
        await server.fetch("/api/job/job-nope?token=" + TOKEN)
    finally:
        await server.server.stop()
    assert "/health?token=[secret]" in caplog.text
    assert TOKEN not in caplog.text


# -- OpenAPI -----------------------------------------------------------------------------------


def test_the_committed_document_is_up_to_date():
    assert openapi.document() == openapi.build(), "run: python -m beamkit.server.openapi"


def _routes() -> dict[str, set[str]]:
    """What the standalone app serves: path template -> methods (the WebSocket aside)."""
    app = make_app(manager=None)  # type: ignore[arg-type]
    out: dict[str, set[str]] = {}
    for rule in app.wildcard_router.rules:
        pattern = rule.matcher.regex.pattern.rstrip("$")
        handler = rule.target
        if pattern in ("/", "/ws"):
            continue
        names = iter(("jobId",) if "job/" in pattern else ("imageId",))
        template = re.sub(r"\(\[\^/\]\+\)", lambda m, names=names: "{" + next(names) + "}", pattern)
        out[template] = {m for m in ("get", "post", "put", "patch", "delete") if m in _own_methods(handler)}
    return out


def _own_methods(handler: type) -> set[str]:
    from tornado.web import RequestHandler

    return {m for m in ("get", "post", "put", "patch", "delete") if getattr(handler, m) is not getattr(RequestHandler, m)}


def test_the_document_matches_the_routes():
    doc = openapi.document()
    documented = {path: set(ops) for path, ops in doc["paths"].items()}
    assert documented == _routes()
    assert len(ROUTES) == len(documented) + 1  # + the WebSocket


def test_every_reference_resolves():
    doc = openapi.document()
    text = json.dumps(doc)
    for name in set(re.findall(r'"#/components/schemas/([A-Za-z]+)"', text)):
        assert name in doc["components"]["schemas"]
    jsonschema.Draft202012Validator.check_schema({"$ref": "#/components/schemas/JobStatus", **doc})


def validate(body, schema_name):
    doc = openapi.document()
    jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}).validate(body)


@pytest.mark.asyncio
async def test_answers_follow_the_document(server, providers):
    code, served = await server.json("/api/openapi.json")
    assert code == 200 and served == openapi.served(server.url)
    validate((await server.json("/health"))[1], "Health")
    code, started = await server.json("/api/beam-search", "POST", {"prompt": "a fox", "N": 3, "M": 2, "iterations": 2})
    validate(started, "Started")
    ws = await server.ws()
    await send(ws, {"type": "subscribe", "jobId": started["jobId"]})
    await until_terminal(ws, started["jobId"])
    await server.manager.idle()
    validate((await server.json(f"/api/job/{started['jobId']}"))[1], "JobStatus")
    validate((await server.json(f"/api/job/{started['jobId']}/cancel", "POST"))[1], "JobStatus")
    validate((await server.json("/api/jobs"))[1], "JobList")
    code, gated = await server.json("/api/beam-search", "POST", {"prompt": "a fox", "N": 3, "M": 2, "iterations": 2,
                                                                "providers": providers.gated})
    await providers.gate.arrived.wait()
    validate((await server.json(f"/api/job/{gated['jobId']}"))[1], "JobStatus")
    validate((await server.json("/api/jobs"))[1], "JobList")
    validate((await server.json(f"/api/job/{gated['jobId']}/cancel", "POST"))[1], "JobStatus")
    for path, method, body in [("/api/beam-search", "POST", {"N": 1}), ("/api/job/job-x", "GET", None),
                               ("/api/images/nope.png?size=0", "GET", None)]:
        validate((await server.json(path, method, body))[1], "Error")


@pytest.mark.asyncio
async def test_the_served_document_says_where_it_is_and_lists_this_servers_providers(server, providers):
    """A generated client sends requests to `servers`, and only provider names this server has."""
    code, doc = await server.json("/api/openapi.json")
    assert code == 200 and doc["servers"][0]["url"] == server.url
    spec = doc["components"]["schemas"]["JobRequest"]["properties"]["providers"]
    assert "default" not in spec  # omitted means the server's own setting, not "offline"
    names, per_role = spec["anyOf"][0]["enum"], spec["anyOf"][1]["properties"]
    assert providers.name in names and "offline" in names  # one registered at run time is listed too
    assert "imagereward" not in per_role["vision"]["enum"]  # not installed here: not offered
    assert "default" not in openapi.document()["components"]["schemas"]["JobRequest"]["properties"]["providers"]
    for name in (providers.name, "offline"):
        code, answer = await server.json("/api/beam-search", "POST", {"prompt": "a fox", "N": 2, "M": 1, "iterations": 1,
                                                                     "providers": name})
        assert code == 200, answer
    code, answer = await server.json("/api/beam-search", "POST", {"prompt": "a fox", "N": 2, "M": 1, "iterations": 1,
                                                                 "providers": {"llm": "offline", "image": "offline",
                                                                               "vision": providers.name}})
    assert code == 200, answer
    await server.manager.idle()


@pytest.mark.asyncio
async def test_a_refused_origin_is_logged_once_with_the_hint(server, caplog):
    """A browser says only "Failed to fetch"; the server's log says why and what to do, once per origin."""
    evil = "http://evil.example:3000"
    caplog.set_level("WARNING", logger="beamkit.server.standalone")
    for _ in range(3):
        r = await server.fetch("/api/beam-search", "OPTIONS", headers={"Origin": evil,
                                                                       "Access-Control-Request-Method": "POST"})
        assert r.code == 204 and "Access-Control-Allow-Origin" not in r.headers
    r = await server.fetch("/api/jobs", headers={"Origin": evil})
    assert r.code == 200 and "Access-Control-Allow-Origin" not in r.headers
    hints = [rec for rec in caplog.records if rec.name == "beamkit.server.standalone" and evil in rec.getMessage()]
    assert len(hints) == 1 and hints[0].levelname == "WARNING"
    assert f"--allow-origin {evil}" in hints[0].getMessage()
    r = await server.fetch("/api/jobs", headers={"Origin": "http://other.example"})
    assert sum("http://other.example" in rec.getMessage() for rec in caplog.records) == 1
    same = server.url.replace("http://", "")  # the server's own pages are no cross-origin request
    await server.fetch("/api/jobs", headers={"Origin": f"http://{same}"})
    assert not any(same in rec.getMessage() for rec in caplog.records if rec.name == "beamkit.server.standalone")
