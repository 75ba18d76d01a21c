"""Security (issue 6, item 3): path traversal and symlink tricks on the image routes, Jupyter's auth
on every route (the WebSocket included), origin checks, no secret in any file, event or log line,
and the standalone server's bind and token rules. Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hardening_helpers import threaded_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from server_helpers import recv, send, start_server, until_terminal
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from beamkit import cli, storage
from beamkit.server import standalone
from beamkit.server.handlers import ROUTES, SocketRoute

TOKEN = "tok-hardening-5b1e0c9d2f"
EVIL = "http://evil.example"

# -- image routes: traversal and symlinks -----------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Any:
    """A server with one finished job and a session folder full of traps."""
    root = tmp_path_factory.mktemp("images")
    outside = root / "outside"
    outside.mkdir()
    secret_png = outside / "secret.png"
    Image.new("RGB", (3, 3), (200, 0, 0)).save(secret_png)
    (outside / "notes.txt").write_text("private")
    with threaded_server(root / "out") as s:
        s.http("POST", "/api/beam-search", {"prompt": "a fox", "N": 2, "M": 1, "iterations": 1, "seed": 2,
                                            "providers": s.providers.name})
        s.lt.run(s.manager.idle())
        sessions = s.output / "sessions"
        job_id = next(p.name for p in sessions.iterdir())
        folder = sessions / job_id
        os.symlink(secret_png, folder / "iter5-cand5.png")                      # a file link out
        os.symlink(outside / "notes.txt", folder / "iter5-cand6.png")
        os.symlink("/etc/passwd", folder / "iter5-cand7.png")
        os.symlink(folder / "missing.png", folder / "iter5-cand8.png")          # dangling
        os.symlink(folder / "iter5-cand9.png", folder / "iter5-cand9.png")      # a loop
        (folder / "iter6-cand0.png").mkdir()                                    # a directory
        os.mkfifo(folder / "iter6-cand1.png")                                   # reading it would block
        (sessions / "job-evil").symlink_to(outside)                             # a session folder link out
        os.symlink(secret_png, outside / "iter0-cand0.png")
        (sessions / "job-evil2").symlink_to(outside)
        allowed = {f"{job_id}-iter0-cand{c}.png": (folder / f"iter0-cand{c}.png").read_bytes() for c in range(2)}
        yield s, job_id, allowed


pieces = st.sampled_from(["..", "/", "%2F", "%2f", "%2e%2e", ".", "\\", "%5C", "%00", "%0A", "\n", "~", "$HOME",
                          "etc", "passwd", "sessions", "metadata.json", "events.jsonl", ".png", "-iter0", "-cand0",
                          "-iter5-cand5.png", "-iter6-cand1.png", "job-evil", "job-evil2", "٠", "%D9%A0", "%20",
                          ";", "//", "%252F", "iter0-cand0.png", "\u2024", "\uff0e"])


@st.composite
def image_ids(draw: Any, job_id: str, real: list[str]) -> str:
    """Pieces of paths, encodings and look-alikes; often around a real image id."""
    mode = draw(st.sampled_from(["pieces", "job", "before", "after", "look-alike", "real"]))
    if mode in ("pieces", "job"):
        parts = draw(st.lists(st.one_of(pieces, st.just(job_id), st.text("ab01-_.", max_size=4)), max_size=6))
        return "".join([job_id, *parts] if mode == "job" else parts)
    image_id = draw(st.sampled_from(real))
    if mode == "before":
        return draw(pieces) + image_id
    if mode == "after":
        return image_id + draw(pieces)
    if mode == "look-alike":  # one character swapped for something that looks or parses alike
        swap = {"0": ["\u0660", "\u06f0", "\uff10", "%30"], "1": ["\u0661", "\u00b9"], ".": ["\u2024", "%2E", "\uff0e"],
                "-": ["\u2010", "%2D"]}
        i = draw(st.sampled_from([k for k, c in enumerate(image_id) if c in swap]))
        return image_id[:i] + draw(st.sampled_from(swap[image_id[i]])) + image_id[i + 1:]
    return image_id


STRICT = re.compile(r"job-[A-Za-z0-9_-]{1,64}-iter[0-9]{1,3}-cand[0-9]{1,3}\.png")


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_only_real_images_inside_the_output_folder_are_served(images, data):
    s, job_id, allowed = images
    image_id = data.draw(image_ids(job_id, sorted(allowed)))
    size = data.draw(st.sampled_from(["", "?size=2", "?size=4096"]))
    # Sent as a browser would: anything outside printable ASCII percent-encoded.
    path = "".join(c if 32 < ord(c) < 127 else quote(c) for c in image_id)
    answer = s.http("GET", "/api/images/" + path + size)
    assert answer.status != 500
    if answer.status == 200:
        assert answer.headers["content-type"] == "image/png"
        decoded = _decoded(image_id)
        assert STRICT.fullmatch(decoded) and decoded in allowed, image_id
        if not size:
            assert answer.body == allowed[decoded]
    else:
        assert answer.status in (400, 404), (answer.status, image_id)
        body = answer.json()
        assert body["code"] in ("NOT_FOUND", "INVALID_REQUEST") and body["error"]
        assert b"private" not in answer.body and b"root:" not in answer.body


def _decoded(image_id: str) -> str:
    from urllib.parse import unquote

    return unquote(image_id)


@pytest.mark.parametrize("trap", ["iter5-cand5.png", "iter5-cand6.png", "iter5-cand7.png", "iter5-cand8.png",
                                  "iter5-cand9.png", "iter6-cand0.png", "iter6-cand1.png"])
def test_symlink_tricks_in_a_session_are_404(images, trap):
    s, job_id, _ = images
    for query in ("", "?size=8"):
        answer = s.http("GET", f"/api/images/{job_id}-{trap}{query}", timeout=10)
        assert answer.status == 404 and answer.json()["code"] == "NOT_FOUND", answer.body


@pytest.mark.parametrize("image_id", ["job-evil-iter0-cand0.png", "job-evil2-iter0-cand0.png"])
def test_a_session_folder_that_links_out_is_404(images, image_id):
    s, _, _ = images
    assert s.http("GET", f"/api/images/{image_id}").status == 404


@pytest.mark.parametrize("suffix", ["%0A", "%0D", "%00", "%20", ".", "/"])
def test_near_miss_image_ids_do_not_alias_real_ones(images, suffix):
    """`$` also matches before a trailing newline, and \\d any Unicode digit: neither may alias an image."""
    s, job_id, allowed = images
    real = next(iter(allowed))
    assert s.http("GET", f"/api/images/{real}").status == 200
    assert s.http("GET", f"/api/images/{real}{suffix}").status == 404
    arabic_zero = real.replace("iter0", "iter" + quote("\u0660"))
    assert s.http("GET", f"/api/images/{arabic_zero}").status == 404


def test_resolve_image_refuses_everything_but_the_strict_form(tmp_path):
    folder = tmp_path / "sessions" / "job-abc"
    folder.mkdir(parents=True)
    Image.new("RGB", (2, 2)).save(folder / "iter0-cand0.png")
    assert storage.resolve_image(tmp_path, "job-abc-iter0-cand0.png") == (folder / "iter0-cand0.png").resolve()
    for image_id in ["job-abc-iter0-cand0.png\n", "job-abc-iter\u0660-cand0.png", "job-abc-iter0-cand\u0660.png",
                     "JOB-abc-iter0-cand0.png", "job-abc-iter0-cand0.PNG", "job-abc-iter0-cand0.png/"]:
        assert storage.resolve_image(tmp_path, image_id) is None, repr(image_id)
    with pytest.raises(ValueError):
        storage.session_folder(tmp_path, "job-abc\n")


# -- Jupyter: authentication on every route, the WebSocket included ----------------------------------


@pytest.fixture
def jp_server_config(tmp_path, providers):
    return {
        "ServerApp": {"jpserver_extensions": {"beamkit": True}},
        "BeamkitExtension": {"output_dir": str(tmp_path / "jout"), "providers": providers.name, "max_jobs": 2,
                             "max_connections": 3},
    }


def _beamkit_handlers(app: Any) -> list[tuple[str, type]]:
    """Every (path regex, handler class) of the Jupyter app that lives under /beamkit/."""
    found: list[tuple[str, type]] = []

    def walk(router: Any) -> None:
        for rule in getattr(router, "rules", []):
            target = rule.target
            if hasattr(target, "rules"):
                walk(target)
            elif isinstance(target, type) and "/beamkit/" in getattr(rule.matcher, "regex", re.compile("")).pattern:
                found.append((rule.matcher.regex.pattern, target))

    walk(app.default_router)
    walk(app.wildcard_router)
    return found


def _concrete(pattern: str) -> str:
    path = pattern.rstrip("$")
    path = path.replace("([^/]+)/cancel", "job-abc/cancel")
    return path.replace("images/([^/]+)", "images/job-abc-iter0-cand0.png").replace("([^/]+)", "job-abc")


async def test_every_beamkit_route_in_jupyter_needs_auth(jp_serverapp, jp_http_port, jp_base_url, http_server):
    token = jp_serverapp.identity_provider.token
    handlers = _beamkit_handlers(jp_serverapp.web_app)
    assert len(handlers) == len(ROUTES)  # every shared route is bound, nothing else is
    http = AsyncHTTPClient(force_instance=True)
    base = f"127.0.0.1:{jp_http_port}"
    try:
        for pattern, handler in handlers:
            path = _concrete(pattern)
            if issubclass(handler, SocketRoute):
                for headers, url in (({}, path), ({"Authorization": "token wrong"}, path), ({}, path + "?token=wrong")):
                    with pytest.raises(HTTPClientError) as info:
                        await websocket_connect(HTTPRequest(f"ws://{base}{url}", headers=headers))
                    assert info.value.code == 403, (path, headers)
                ws = await websocket_connect(HTTPRequest(f"ws://{base}{path}?token={token}"))
                ws.close()
                continue
            methods = [m for m in ("get", "post") if getattr(handler, m) is not getattr(__import__("tornado.web").web.RequestHandler, m)]
            assert methods, pattern
            for method in methods:
                body = b"{}" if method == "post" else None
                for headers in ({}, {"Authorization": "token wrong"}, {"Authorization": "Bearer wrong"}):
                    with pytest.raises(HTTPClientError) as info:
                        await http.fetch(HTTPRequest(f"http://{base}{path}", method=method.upper(), body=body,
                                                     headers=headers))
                    assert info.value.code == 403, (method, path, headers)
                try:
                    r = await http.fetch(HTTPRequest(f"http://{base}{path}", method=method.upper(), body=body,
                                                     headers={"Authorization": f"token {token}"}))
                    code = r.code
                except HTTPClientError as exc:
                    code = exc.code
                assert code != 403, (method, path)
    finally:
        http.close()


async def test_jupyter_refuses_cross_origin_cookie_sockets_and_cookie_posts_without_xsrf(jp_serverapp, jp_http_port,
                                                                                        jp_base_url, http_server):
    """A browser holds the login cookie, and sends it along with any page's requests: such requests from
    another origin must fail. (A request that carries the token itself proves it is no forgery, so
    Jupyter skips the origin check for it, by design.)"""
    token = jp_serverapp.identity_provider.token
    origin = f"http://127.0.0.1:{jp_http_port}"
    base = f"127.0.0.1:{jp_http_port}{jp_base_url.rstrip('/')}"
    http = AsyncHTTPClient(force_instance=True)
    try:
        r = await http.fetch(f"http://{base}/beamkit/api/jobs?token={token}")
        cookies = "; ".join(c.split(";", 1)[0] for c in r.headers.get_list("Set-Cookie"))
        assert "username-" in cookies
        cookie = {"Cookie": cookies}
        with pytest.raises(HTTPClientError) as info:
            await websocket_connect(HTTPRequest(f"ws://{base}/beamkit/ws", headers={**cookie, "Origin": EVIL}))
        assert info.value.code == 403
        same = await websocket_connect(HTTPRequest(f"ws://{base}/beamkit/ws", headers={**cookie, "Origin": origin}))
        await same.write_message(json.dumps({"type": "ping"}))
        assert json.loads(await same.read_message())["type"] == "pong"
        same.close()
        # No X-XSRFToken header: refused, from another origin (Jupyter answers those 404) and from its own.
        for headers, codes in (({**cookie, "Origin": EVIL}, (403, 404)), ({**cookie, "Origin": origin}, (403,)),
                               (cookie, (403,))):
            with pytest.raises(HTTPClientError) as info:
                await http.fetch(HTTPRequest(f"http://{base}/beamkit/api/beam-search", method="POST",
                                             body=json.dumps({"prompt": "x"}), headers=headers))
            assert info.value.code in codes, headers
        sessions = Path(jp_serverapp.root_dir) / "jout" / "sessions"
        assert not sessions.exists() or not any(sessions.iterdir())
    finally:
        http.close()


async def test_jupyter_refuses_sockets_past_its_limit(jp_serverapp, jp_http_port, jp_base_url, http_server):
    token = jp_serverapp.identity_provider.token
    url = f"ws://127.0.0.1:{jp_http_port}{jp_base_url}beamkit/ws?token={token}"
    opened = [await websocket_connect(HTTPRequest(url)) for _ in range(3)]
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(HTTPRequest(url))
    assert info.value.code == 429
    body = json.loads(info.value.response.body)
    assert body["code"] == "RATE_LIMIT" and body["maxConnections"] == 3
    for ws in opened:
        ws.close()


# -- the standalone server: origins --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_standalone_refuses_other_origins_on_the_websocket_and_on_post(tmp_path, providers):
    server = await start_server(tmp_path / "out", providers.name)
    try:
        host = f"127.0.0.1:{server.server.port}"
        for path in ("/ws", "/"):
            with pytest.raises(HTTPClientError) as info:
                await server.ws(path, headers={"Origin": EVIL})
            assert info.value.code == 403
            ws = await server.ws(path, headers={"Origin": f"http://{host}"})
            ws.close()
        body = {"prompt": "a fox", "N": 2, "M": 1, "iterations": 1}
        for headers in ({"Origin": EVIL}, {"Origin": "null"}, {"Origin": f"http://{host}.evil.example"},
                        {"Origin": EVIL, "Content-Type": "text/plain"}, {"Origin": "http://[::1"}):
            code, answer = await server.json("/api/beam-search", "POST", body, headers=headers)
            assert code == 403 and answer["code"] == "AUTH_ERROR" and "--allow-origin" in answer["error"], headers
            code, answer = await server.json("/api/job/job-abc/cancel", "POST", headers=headers)
            assert code == 403
        assert not (server.output / "sessions").exists()
        # Reading is not refused (a browser cannot read the answer without CORS headers, and gets none).
        r = await server.fetch("/api/jobs", headers={"Origin": EVIL})
        assert r.code == 200 and "Access-Control-Allow-Origin" not in r.headers
        code, answer = await server.json("/api/beam-search", "POST", body, headers={"Origin": f"http://{host}"})
        assert code == 200
        code, answer = await server.json("/api/beam-search", "POST", body)  # not a browser: no Origin
        assert code == 200
        await server.manager.idle()
    finally:
        await server.server.stop()


@pytest.mark.asyncio
async def test_allowed_origins_may_use_the_api_and_get_cors_headers(tmp_path, providers):
    lab = "http://localhost:8888"
    server = await start_server(tmp_path / "out", providers.name, allow_origins=(lab,))
    try:
        ws = await server.ws(headers={"Origin": lab})
        await send(ws, {"type": "ping"})
        assert (await recv(ws))["type"] == "pong"
        ws.close()
        r = await server.fetch("/api/beam-search", "OPTIONS", headers={"Origin": lab,
                                                                        "Access-Control-Request-Method": "POST"})
        assert r.code == 204 and r.headers["Access-Control-Allow-Origin"] == lab
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        assert "Content-Type" in r.headers["Access-Control-Allow-Headers"]
        code, answer = await server.json("/api/beam-search", "POST", {"prompt": "a fox", "N": 2, "M": 1, "iterations": 1},
                                         headers={"Origin": lab})
        assert code == 200
        r = await server.fetch(f"/api/job/{answer['jobId']}", headers={"Origin": lab})
        assert r.headers["Access-Control-Allow-Origin"] == lab and r.headers["Vary"] == "Origin"
        r = await server.fetch("/api/beam-search", "OPTIONS", headers={"Origin": EVIL})
        assert r.code == 204 and "Access-Control-Allow-Origin" not in r.headers
        with pytest.raises(HTTPClientError):
            await server.ws(headers={"Origin": EVIL})
        await server.manager.idle()
    finally:
        await server.server.stop()


def test_beamkit_serve_takes_allow_origin_and_max_connections(monkeypatch):
    seen: dict[str, Any] = {}
    monkeypatch.setattr(standalone, "serve", lambda **kw: seen.update(kw) or 0)
    assert cli.main(["serve", "--allow-origin", "http://localhost:8888", "--allow-origin", "https://lab.example",
                     "--max-connections", "7"]) == 0
    assert seen["allow_origins"] == ("http://localhost:8888", "https://lab.example")
    assert seen["max_connections"] == 7 and seen["host"] == "127.0.0.1"
    assert cli.main(["serve"]) == 0 and seen["allow_origins"] == () and seen["max_connections"] >= 200


# -- bind and token rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", "::ffff:127.0.0.1",
                                  "127.0.0.1.nip.io"])
def test_a_public_bind_without_a_token_is_refused_before_binding(host, monkeypatch, capsys):
    monkeypatch.delenv("BEAMKIT_TOKEN", raising=False)
    for token in (None, ""):
        assert standalone.serve(host=host, port=0, token=token) == 2
        assert "refusing" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_with_a_token_every_route_and_socket_rejects_requests_lacking_it(tmp_path, providers):
    server = await start_server(tmp_path / "out", providers.name, token=TOKEN)
    server.token = None  # send nothing unless told
    try:
        paths = [("/" + p.replace("([^/]+)/cancel", "job-abc/cancel").replace("images/([^/]+)", "images/x.png")
                  .replace("([^/]+)", "job-abc"), r) for p, r in ROUTES]
        for path, route in paths:
            if issubclass(route, SocketRoute):
                for url in (path, "/"):
                    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
                        with pytest.raises(HTTPClientError) as info:
                            await server.ws(url, headers=headers)
                        assert info.value.code == 401
                    (await server.ws(url, headers={"Authorization": f"Bearer {TOKEN}"})).close()
                continue
            for method in ("GET", "POST"):
                if getattr(route, method.lower(), None) is None:
                    continue
                for suffix, headers in (("", {}), ("?token=", {}), ("?token=nope", {}), ("", {"Authorization": "Bearer"}),
                                        ("", {"Authorization": f"Bearer {TOKEN[:-1]}"}),
                                        ("", {"Authorization": f"Bearer {TOKEN}x"})):
                    r = await server.fetch(path + suffix, method, {"prompt": "x"} if method == "POST" else None,
                                           headers=headers)
                    assert r.code == 401 and json.loads(r.body)["code"] == "AUTH_ERROR", (method, path, suffix, headers)
                    assert TOKEN not in r.body.decode()
        assert not (server.output / "sessions").exists()
    finally:
        await server.server.stop()


# -- no secret in any file, event, answer or log line ----------------------------------------------------


@pytest.mark.asyncio
async def test_no_secret_reaches_a_file_an_event_an_answer_or_a_log_line(tmp_path, providers, caplog, monkeypatch):
    from openai_server import TEST_KEY, FakeOpenAI

    caplog.set_level(logging.DEBUG)
    fake = await FakeOpenAI().start()
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("BEAMKIT_OPENAI_MAX_RETRIES", "0")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    wrong_key = "sk-wrong-key-for-hardening-7c2d9e4f1a"
    server = await start_server(tmp_path / "out", providers.name, token=TOKEN)
    answers: list[str] = []
    streams: list[Any] = []
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        jobs = []
        for key, provider_set, params in ((TEST_KEY, providers.name, {"N": 2, "M": 1, "iterations": 2}),
                                          (wrong_key, "openai", {"N": 2, "M": 1, "iterations": 1}),
                                          (TEST_KEY, "openai", {"N": 1, "M": 1, "iterations": 1})):
            r = await server.fetch("/api/beam-search", "POST", {"prompt": "a fox at dusk", "providers": provider_set,
                                                                "seed": 4, **params},
                                   headers={**auth, "X-OpenAI-API-Key": key})
            answers.append(r.body.decode())
            assert r.code == 200, r.body
            jobs.append(json.loads(r.body)["jobId"])
        for job_id in jobs:
            ws = await server.ws(f"/ws?token={TOKEN}")
            await send(ws, {"type": "subscribe", "jobId": job_id})
            streams.append(await until_terminal(ws, job_id, timeout=60))
            ws.close()
        await server.manager.idle()
        assert streams[0][-1]["type"] == "complete"
        assert streams[1][-1]["type"] == "error" and streams[1][-1]["error"]["code"] == "AUTH_ERROR"
        for path in ["/health", "/api/jobs", *[f"/api/job/{j}" for j in jobs], f"/api/job/{jobs[0]}/cancel",
                     "/api/job/job-nope", f"/health?token={TOKEN}", "/api/openapi.json"]:
            r = await server.fetch(path, "POST" if path.endswith("cancel") else "GET", headers=auth)
            answers.append(r.body.decode() + repr(dict(r.headers)))
        r = await server.fetch(f"/api/jobs?token={TOKEN}x")
        answers.append(r.body.decode())
        await server.fetch(f"/api/nothing?token={TOKEN}", headers=auth)
    finally:
        await server.server.stop()
        await fake.stop()
    assert any(r.headers.get("authorization") == f"Bearer {wrong_key}" for r in fake.requests)  # it did travel there
    secrets = [TOKEN, TEST_KEY, wrong_key, wrong_key[3:], TEST_KEY[3:]]
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(files) > 5
    haystacks = {str(p): p.read_bytes().decode("utf-8", "replace") for p in files}
    haystacks["events"] = json.dumps(streams)
    haystacks["answers"] = "\n".join(answers)
    haystacks["log"] = caplog.text + "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:6]}...) is in {where}"
