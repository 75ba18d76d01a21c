"""One settings object for both servers: its defaults, `beamkit serve`'s options and config files, the docs."""

from __future__ import annotations

import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from server_helpers import until_terminal

import beamkit.api
from beamkit import settings as st
from beamkit.job import Job
from beamkit.server import settings_doc, standalone
from beamkit.server.manager import JobManager
from beamkit.server.standalone import ServeApp, Server
from beamkit.settings import BeamkitSettings

DOCS = Path(__file__).resolve().parent.parent / "docs"
SMALL = {"N": 3, "M": 2, "iterations": 2, "seed": 5}


def parse(*argv: str) -> BeamkitSettings:
    return ServeApp().settings_from(list(argv))


def test_each_default_is_the_one_constant():
    s = BeamkitSettings()
    assert (s.output, s.providers, s.max_jobs, s.max_connections, s.max_queue, s.host, s.port) == (
        st.DEFAULT_OUTPUT, st.DEFAULT_PROVIDERS, st.DEFAULT_MAX_JOBS, st.DEFAULT_MAX_CONNECTIONS, st.DEFAULT_MAX_QUEUE,
        st.DEFAULT_HOST, st.DEFAULT_PORT)
    assert s.provider_settings == {} and s.allow_origins == []
    # the Python API, the job and the manager take theirs from the same constants
    params = inspect.signature(beamkit.api.start).parameters
    assert params["output"].default is st.DEFAULT_OUTPUT and params["providers"].default is st.DEFAULT_PROVIDERS
    assert inspect.signature(Job).parameters["output"].default is st.DEFAULT_OUTPUT
    manager = inspect.signature(JobManager).parameters
    assert manager["output"].default is st.DEFAULT_OUTPUT and manager["max_jobs"].default is st.DEFAULT_MAX_JOBS
    assert manager["providers"].default is st.DEFAULT_PROVIDERS


def test_every_setting_has_an_option_and_help():
    for name, trait in BeamkitSettings.class_traits(config=True).items():
        assert trait.help and trait.metadata["flag"], name
        assert ServeApp.aliases[trait.metadata["flag"]] == f"BeamkitSettings.{name}"


def test_the_token_comes_from_the_environment_when_unset(monkeypatch):
    monkeypatch.setenv(st.TOKEN_ENV, "from-env")
    assert BeamkitSettings().token == "from-env"
    assert BeamkitSettings(token="given").token == "given"
    monkeypatch.delenv(st.TOKEN_ENV)
    assert BeamkitSettings().token is None and BeamkitSettings(token="").token is None


def test_todays_serve_options_still_work(monkeypatch):
    monkeypatch.delenv(st.TOKEN_ENV, raising=False)
    s = parse("--host", "0.0.0.0", "--port", "3001", "--output", "/tmp/out", "--providers", "sim", "--max-jobs", "2",
              "--token", "t0k", "--max-connections", "7", "--allow-origin", "http://localhost:8888/",
              "--allow-origin", "https://lab.example")
    assert s.values() == {
        "host": "0.0.0.0", "port": 3001, "output": "/tmp/out", "providers": "sim", "max_jobs": 2, "token": "t0k",
        "max_connections": 7, "allow_origins": ("http://localhost:8888", "https://lab.example"), "max_queue": 1000,
        "provider_settings": {}, "max_pending_bytes": 64 * 1024 * 1024, "replay_memory": 256 * 1024 * 1024,
    }
    assert parse("--port=0", "--max-jobs=3").max_jobs == 3


def test_providers_and_provider_settings_on_the_command_line():
    s = parse("--providers", "llm=openai,image=offline,vision=openai", "--provider-setting", "openai.llm_model=gpt-x",
              "--provider-setting", "openai.image.model=img-1", "--provider-setting", "offline.seed_offset=3")
    assert s.providers == {"llm": "openai", "image": "offline", "vision": "openai"}
    # values stay text, as with `beamkit run --set`: each provider reads them as its declared type
    assert s.provider_settings == {"openai": {"llm_model": "gpt-x", "image": {"model": "img-1"}}, "offline": {"seed_offset": "3"}}
    assert parse("--BeamkitSettings.max_queue=9").max_queue == 9  # the long form of every setting


@pytest.mark.parametrize("argv,needle", [
    (["--max-jobs", "0"], "max_jobs (--max-jobs) must be at least 1, got 0"),
    (["--max-connections", "0"], "max_connections (--max-connections) must be at least 1"),
    (["--max-jobs", "many"], "expected an int"),
    (["--port", "70000"], "port must be between 0 and 65535"),
    (["--max-job", "2"], "unknown option --max-job"),
    (["--show-config"], "unknown option --show-config"),
    (["--BeamkitSettings.max_jbos=2"], "unknown option --BeamkitSettings.max_jbos"),
    (["--provider-setting", "llm_model=x"], "is not PROVIDER.NAME=VALUE"),
    (["--providers", "llm=openai,image"], "--providers takes NAME or ROLE=NAME"),
    (["--providers", "llm=openai"], "'providers' gives no provider for the image role"),
    (["now"], "takes no arguments"),
    (["--config", "missing.py"], "no config file 'missing.py'"),
    (["--config", "settings.yaml"], "takes a .py or .json file"),
])
def test_bad_options_exit_2_with_one_clear_line(argv, needle, capsys, monkeypatch):
    def must_not_serve(**values):
        raise AssertionError(f"served despite a bad option: {values}")

    monkeypatch.setattr(standalone, "serve", must_not_serve)
    assert standalone.main(argv) == 2
    assert needle in capsys.readouterr().err


def test_a_config_file_python_or_json_and_the_command_line_wins(tmp_path):
    py = tmp_path / "beamkit_config.py"
    py.write_text("c.BeamkitSettings.max_jobs = 2\nc.BeamkitSettings.provider_settings = {'openai': {'llm_model': 'm'}}\n"
                  "c.BeamkitSettings.allow_origins = ['http://a.example']\n")
    s = parse("--config", str(py))
    assert (s.max_jobs, s.provider_settings, s.allow_origins) == (2, {"openai": {"llm_model": "m"}}, ["http://a.example"])
    assert parse("--config", str(py), "--max-jobs", "5").max_jobs == 5
    assert parse("--max-jobs", "5", "--config", str(py)).max_jobs == 5  # wherever it is on the line
    js = tmp_path / "beamkit.json"
    js.write_text(json.dumps({"BeamkitSettings": {"port": 4001, "providers": {"llm": "a", "image": "b", "vision": "c"}}}))
    s = parse("--config", str(js))
    assert s.port == 4001 and s.providers == {"llm": "a", "image": "b", "vision": "c"}
    (tmp_path / "broken.py").write_text("c.BeamkitSettings.max_jobs = 1 +\n")
    with pytest.raises(Exception, match="cannot read the config file"):
        parse("--config", str(tmp_path / "broken.py"))
    (tmp_path / "bad_value.json").write_text(json.dumps({"BeamkitSettings": {"max_jobs": 0}}))
    with pytest.raises(Exception, match="must be at least 1"):
        parse("--config", str(tmp_path / "bad_value.json"))


def test_serve_takes_settings_by_name(capsys, monkeypatch):
    monkeypatch.delenv(st.TOKEN_ENV, raising=False)
    assert standalone.serve(host="0.0.0.0", port=0) == 2  # the bind rule is checked on the settings
    assert "refusing" in capsys.readouterr().err
    assert standalone.serve(max_jbos=2) == 2
    assert "no setting named 'max_jbos'" in capsys.readouterr().err


def test_help_all_lists_every_setting():
    out = subprocess.run([sys.executable, "-m", "beamkit", "serve", "--help-all"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for name, trait in BeamkitSettings.class_traits(config=True).items():
        assert f"--BeamkitSettings.{name}" in out.stdout and trait.metadata["flag"] in out.stdout
    assert "--config" in out.stdout


@pytest.mark.asyncio
async def test_the_standalone_server_gives_its_provider_settings_to_jobs(tmp_path, providers):
    # From the command line through the settings to the job's provider: the extension does the same (test_extension).
    s = parse("--providers", providers.name, "--port", "0", "--output", str(tmp_path / "out"),
              "--provider-setting", f"{providers.name}.llm_model=from-the-command-line")
    server = await Server.from_settings(s).start()
    try:
        from tornado.httpclient import AsyncHTTPClient, HTTPRequest
        from tornado.websocket import websocket_connect

        r = await AsyncHTTPClient().fetch(HTTPRequest(server.url + "/api/beam-search", "POST",
                                                      body=json.dumps({"prompt": "a kite", **SMALL})))
        job_id = json.loads(r.body)["jobId"]
        ws = await websocket_connect(server.url.replace("http", "ws", 1) + "/ws")
        await ws.write_message(json.dumps({"type": "subscribe", "jobId": job_id}))
        assert (await until_terminal(ws, job_id))[-1]["type"] == "complete"
        ws.close()
        assert providers.settings_seen[-1] == {"llm_model": "from-the-command-line"}
        health = json.loads((await AsyncHTTPClient().fetch(server.url + "/health")).body)
        assert health["maxJobs"] == st.DEFAULT_MAX_JOBS
    finally:
        await server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_beamkit_serve_reads_a_config_file(tmp_path):
    port = _free_port()
    config = tmp_path / "beamkit_config.py"
    config.write_text(f"c.BeamkitSettings.max_jobs = 3\nc.BeamkitSettings.output = {str(tmp_path / 'from-config')!r}\n")
    env = {k: v for k, v in os.environ.items() if k != st.TOKEN_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "beamkit", "serve", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "beamkit serving" in line and str(tmp_path / "from-config") in line, line + proc.stderr.read()
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10).read())
        assert health["maxJobs"] == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0


# -- the docs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc,jupyter", [("server.md", False), ("jupyter.md", True)])
def test_the_docs_tables_are_generated_from_the_settings(doc, jupyter):
    assert settings_doc.documented_table(str(DOCS / doc)) == settings_doc.markdown_table(jupyter), \
        "run: python -m beamkit.server.settings_doc"
    listed = settings_doc.markdown_table(jupyter)
    for name in BeamkitSettings.class_trait_names(config=True):
        assert (f"`{name}`" in listed or f"`c.BeamkitSettings.{name}`" in listed) is not (jupyter and name in st.STANDALONE_ONLY)
