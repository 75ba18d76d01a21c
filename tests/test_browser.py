"""A real browser: JupyterLab on 127.0.0.1 with a token, headless Debian Chromium driven by Playwright.

It runs the quickstart notebook and waits until the widget shows N x iterations thumbnails
and the final best picture; then starts a long job, clicks its Cancel button and sees it
stop. Screenshots go to ``artifacts/`` (and, with ``BEAMKIT_DOCS_SCREENSHOT=1``, to
``docs/img/`` for the docs).

    pytest -m browser tests/test_browser.py

Skipped when no browser can start, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("BEAMKIT_ARTIFACTS", REPO / "artifacts"))
DOCS_IMG = REPO / "docs" / "img"
CHROMIUM = os.environ.get("BEAMKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
IN_CI = os.environ.get("CI", "").lower() == "true"
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
N, ITERATIONS = 9, 3  # the quickstart's job: the defaults

LONG_JOB = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["A long job, to be cancelled from its widget."]},
        {
            "cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": [
                "import beamkit\n",
                "job = beamkit.start('a very long search for a city of glass', N=24, M=4, iterations=20, seed=3)\n",
                "job",
            ],
        },
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """JupyterLab on 127.0.0.1 with a token, every Jupyter folder private to this run."""
    base = tmp_path_factory.mktemp("lab")
    work = base / "work"
    work.mkdir()
    shutil.copy(REPO / "notebooks" / "quickstart.ipynb", work / "quickstart.ipynb")
    (work / "long_job.ipynb").write_text(json.dumps(LONG_JOB))
    env = dict(os.environ)
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")):
        (base / sub).mkdir()
        env[var] = str(base / sub)
    env.pop("JUPYTER_PATH", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    settings = base / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = free_port(), secrets.token_hex(16)
    log = open(base / "lab.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
            "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False",
        ],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("JupyterLab did not start:\n" + (base / "lab.log").read_text(errors="replace")[-3000:])
            time.sleep(0.3)
        yield {"url": url, "token": token, "work": work, "log": base / "lab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    # One per test: Playwright's sync API marks its own loop as the running one between
    # calls, and pytest-jupyter's autouse loop fixture must not pick that loop up.
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable(f"playwright is not installed: {exc}")
    if not Path(CHROMIUM).exists():
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    pw = sync_playwright().start()
    try:
        try:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True, timeout=60_000)
        except Exception as exc:
            unavailable(f"Chromium did not start: {exc}")
        yield b
        b.close()
    finally:
        pw.stop()


def open_notebook(browser: Any, lab: dict[str, Any], name: str) -> tuple[Any, Any, list[str]]:
    ctx = browser.new_context(viewport={"width": 1300, "height": 2000}, device_scale_factor=1)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{lab['url']}/lab/workspaces/bk-{uuid.uuid4().hex[:8]}/tree/{name}?token={lab['token']}")
    page.wait_for_selector(f"{PANEL} .jp-Notebook", timeout=60_000)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # more room for the widget
    # the kernel is ready when the status bar says so
    page.wait_for_function(
        "() => /Idle/.test(document.querySelector('#jp-main-statusbar')?.textContent || '')", timeout=60_000
    )
    return ctx, page, errors


def run_all(page: Any) -> None:
    for _ in range(3):
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        try:
            page.wait_for_function(
                f"() => [...document.querySelectorAll('{PANEL} .jp-InputPrompt')].some(p => /\\[[*0-9]+\\]/.test(p.textContent))",
                timeout=15_000,
            )
            return
        except Exception:
            continue
    pytest.fail("Run All did not start the notebook")


def shot(target: Any, name: str, *, docs: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    target.screenshot(path=str(path))
    if docs and os.environ.get("BEAMKIT_DOCS_SCREENSHOT") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMG / name)
    return path


def widget_errors(errors: list[str]) -> list[str]:
    return [e for e in errors if re.search(r"anywidget|beamkit|bk-|widget", e, re.I)]


def test_quickstart_shows_every_thumbnail_and_the_best(browser: Any, lab: dict[str, Any]) -> None:
    ctx, page, errors = open_notebook(browser, lab, "quickstart.ipynb")
    try:
        run_all(page)
        live = page.locator(f"{PANEL} .bk-widget[data-source='live']").first
        live.wait_for(timeout=60_000)
        page.wait_for_function(
            f"""() => {{
                const w = document.querySelector("{PANEL} .bk-widget[data-source='live']");
                if (!w || w.dataset.status !== 'completed') return false;
                const thumbs = [...w.querySelectorAll('.bk-rows img.bk-thumb')].filter(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0);
                const best = w.querySelector('img.bk-best-image');
                return thumbs.length === {N * ITERATIONS} && best && best.src.startsWith('blob:') && best.complete && best.naturalWidth > 0;
            }}""",
            timeout=120_000,
        )
        info = live.evaluate(
            """w => ({
                thumbs: [...w.querySelectorAll('.bk-rows img.bk-thumb')].map(i => [i.naturalWidth, i.naturalHeight]),
                best: (i => [i.naturalWidth, i.naturalHeight])(w.querySelector('img.bk-best-image')),
                rows: w.querySelectorAll('.bk-row').length,
                kept: w.querySelectorAll('.bk-card.bk-kept').length,
                pruned: w.querySelectorAll('.bk-card.bk-pruned').length,
                lineage: w.querySelectorAll('.bk-lineage .bk-step').length,
                chart: w.querySelectorAll('.bk-chart svg polyline').length,
                progress: w.querySelector('.bk-progress-text').textContent,
                status: w.dataset.status,
                cancelHidden: w.querySelector('.bk-cancel').hidden,
            })"""
        )
        assert len(info["thumbs"]) == N * ITERATIONS
        assert all(max(wh) <= 256 for wh in info["thumbs"]), info["thumbs"]
        assert max(info["best"]) > 256, info["best"]  # the full picture, in the best panel only
        assert info["rows"] == ITERATIONS and info["kept"] == 3 * ITERATIONS and info["pruned"] == N * ITERATIONS - 3 * ITERATIONS
        assert info["lineage"] == ITERATIONS and info["chart"] == 2
        assert info["progress"].startswith(f"{N * ITERATIONS} / {N * ITERATIONS} candidates")
        assert info["cancelHidden"]
        # the loaded session further down renders too, statically
        loaded = page.locator(f"{PANEL} .bk-widget[data-source='loaded']").first
        loaded.wait_for(timeout=60_000)
        live.scroll_into_view_if_needed()
        shot(live, "widget.png", docs=True)
        shot(page, "quickstart-page.png")
        assert not widget_errors(errors), errors
    finally:
        ctx.close()


def test_cancel_button_stops_a_long_job(browser: Any, lab: dict[str, Any]) -> None:
    ctx, page, errors = open_notebook(browser, lab, "long_job.ipynb")
    try:
        run_all(page)
        w = page.locator(f"{PANEL} .bk-widget[data-source='live']").first
        w.wait_for(timeout=60_000)
        done = lambda: int(w.locator(".bk-progress-text").inner_text().split("/")[0])  # noqa: E731
        page.wait_for_function(
            f"() => parseInt(document.querySelector(\"{PANEL} .bk-widget .bk-progress-text\")?.textContent || '0') >= 5",
            timeout=60_000,
        )
        cancel = w.locator("button.bk-cancel")
        assert cancel.is_visible() and cancel.is_enabled()
        clicked_at = time.monotonic()
        cancel.click()
        page.wait_for_function(
            f"() => document.querySelector(\"{PANEL} .bk-widget\")?.dataset.status === 'cancelled'", timeout=15_000
        )
        stopped_after = time.monotonic() - clicked_at
        n1 = done()
        page.wait_for_timeout(2000)
        n2 = done()
        assert n1 == n2 < 24 * 20, (n1, n2)
        assert w.locator(".bk-error").inner_text().startswith("CANCELLED")
        assert cancel.is_hidden()
        assert stopped_after < 10, stopped_after
        shot(w, "widget-cancelled.png", docs=True)
        assert not widget_errors(errors), errors
    finally:
        ctx.close()
