"""A real browser: JupyterLab on 127.0.0.1 with a token, headless Debian Chromium driven by Playwright.

- the quickstart: every thumbnail and the final best picture, kept + carried over = M in
  every row, and the dark theme's colours on the status pill and badges;
- a long job: thumbnails while it still runs, then its Cancel button stops it;
- a tall job (16, 4, 5) at 1366x768: the detail view opens inside the viewport, shows the
  critique, strengths and weaknesses, closes on Escape and on the backdrop; Enter, Space
  and the arrow keys work on the cards; the best panel stays in view while scrolling; the
  full-size view shows the stored PNG, Download gives its bytes, Copy prompt its prompt;
- the person in the loop: a tournament job's rank badges and, in a detail view, its wins and
  losses with the judge's reasons (an opponent opens on a click); compare mode rates a pair
  with its key; a steered job's review panel, whose *Keep proposed* moves the job on.

Screenshots go to ``artifacts/`` (and, with ``BEAMKIT_DOCS_SCREENSHOT=1``, to ``docs/img/``
for the docs).

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
        {
            "cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": [
                "try:\n",
                "    await job\n",
                "except Exception as exc:\n",
                "    print(f'job ended: {job.status}, {type(exc).__name__}')\n",
            ],
        },
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}
TALL = (16, 4, 5)  # N, M, iterations: the job of issue 11, 1,717 px tall before rows collapsed
TALL_JOB = {
    "cells": [
        {
            "cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": [
                "import beamkit\n",
                f"job = beamkit.start('a tall job: glass towers in a storm', N={TALL[0]}, M={TALL[1]}, iterations={TALL[2]}, seed=3)\n",
                "job",
            ],
        },
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": ["result = await job\n", "print('job ended:', result.status)"]},
    ]
    # text below the widget, so the notebook scrolls past it as a real one does
    + [{"cell_type": "markdown", "metadata": {}, "source": [f"Notes {i}.\n\n" * 6]} for i in range(4)],
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
    (work / "tall_job.ipynb").write_text(json.dumps(TALL_JOB))
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


def open_notebook(
    browser: Any, lab: dict[str, Any], name: str, *, width: int = 1300, height: int = 2000, permissions: list[str] | None = None
) -> tuple[Any, Any, list[str]]:
    ctx = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1, permissions=permissions or [])
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
    # not awaited in the page: the command's promise resolves only when the last cell has run
    for _ in range(3):
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
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


def wait_status(page: Any, status: str, timeout: float = 120_000) -> None:
    page.wait_for_function(
        f"() => document.querySelector(\"{PANEL} .bk-widget[data-source='live']\")?.dataset.status === '{status}'",
        timeout=timeout,
    )


def set_theme(page: Any, theme: str) -> None:
    page.evaluate(f"() => window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{theme}'}})")
    light = "true" if theme == "JupyterLab Light" else "false"
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=30_000)


# -- colours, to check the theme is followed ---------------------------------------------------


def rgba(css: str) -> tuple[float, float, float, float]:
    """A computed CSS colour (``rgb()``, ``rgba()`` or ``color(srgb ...)``) as 0..1 floats."""
    m = re.fullmatch(r"rgba?\(([^)]*)\)", css.strip())
    if m:
        p = [float(x) for x in re.split(r"[\s,/]+", m.group(1).strip()) if x]
        return p[0] / 255, p[1] / 255, p[2] / 255, p[3] if len(p) > 3 else 1.0
    m = re.fullmatch(r"color\(srgb ([^)]*)\)", css.strip())
    if m:
        p = [float(x) for x in re.split(r"[\s/]+", m.group(1).strip()) if x]
        return p[0], p[1], p[2], p[3] if len(p) > 3 else 1.0
    raise AssertionError(f"unexpected colour {css!r}")


def over(fg: tuple[float, float, float, float], bg: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    a = fg[3]
    return (fg[0] * a + bg[0] * (1 - a), fg[1] * a + bg[1] * (1 - a), fg[2] * a + bg[2] * (1 - a), 1.0)


def luminance(c: tuple[float, float, float, float]) -> float:
    lin = [x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in c[:3]]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: float, b: float) -> float:
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


def pill_colours(widget: Any) -> list[dict[str, Any]]:
    """Background luminance and text contrast of the status pill and the first badge of each kind."""
    raw = widget.evaluate(
        """w => {
            const pick = ['.bk-status', '.bk-badge-kept', '.bk-badge-pruned'].map(s => w.querySelector(s)).filter(Boolean);
            return {page: getComputedStyle(w).backgroundColor,
                    pills: pick.map(e => [e.className, getComputedStyle(e).backgroundColor, getComputedStyle(e).color])};
        }"""
    )
    page_bg = over(rgba(raw["page"]), (1.0, 1.0, 1.0, 1.0))
    out = []
    for cls, bg, fg in raw["pills"]:
        b = over(rgba(bg), page_bg)
        f = over(rgba(fg), b)
        out.append({"class": cls, "background": luminance(b), "contrast": contrast(luminance(b), luminance(f))})
    return out


# -- the tests ---------------------------------------------------------------------------------


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
                const best = w.querySelector('img.bk-best-image');
                return best && best.src.startsWith('blob:') && best.complete && best.naturalWidth > 0;
            }}""",
            timeout=120_000,
        )
        # the latest rows open, older ones collapsed to one line
        assert live.locator(".bk-row-collapsed").count() == ITERATIONS - 2
        live.locator("button.bk-rows-all").click()
        page.wait_for_function(
            f"""() => {{
                const w = document.querySelector("{PANEL} .bk-widget[data-source='live']");
                const thumbs = [...w.querySelectorAll('.bk-card[data-key] img.bk-thumb')].filter(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0);
                return !w.querySelector('.bk-row-collapsed') && thumbs.length === {N * ITERATIONS};
            }}""",
            timeout=60_000,
        )
        info = live.evaluate(
            """w => ({
                thumbs: [...w.querySelectorAll('.bk-card[data-key] img.bk-thumb')].map(i => [i.naturalWidth, i.naturalHeight]),
                best: (i => [i.naturalWidth, i.naturalHeight])(w.querySelector('img.bk-best-image')),
                rows: [...w.querySelectorAll('.bk-row')].map(r => ({
                    kept: r.querySelectorAll('.bk-card.bk-kept').length,
                    carried: r.querySelectorAll('.bk-card.bk-carried').length,
                    head: r.querySelector('.bk-row-head').textContent,
                })),
                pruned: w.querySelectorAll('.bk-card.bk-pruned').length,
                lineage: w.querySelectorAll('.bk-lineage .bk-step').length,
                chart: w.querySelectorAll('.bk-chart svg polyline').length,
                progress: w.querySelector('.bk-progress-text').textContent,
                cancelHidden: w.querySelector('.bk-cancel').hidden,
            })"""
        )
        assert len(info["thumbs"]) == N * ITERATIONS
        assert all(max(wh) <= 256 for wh in info["thumbs"]), info["thumbs"]
        assert max(info["best"]) > 256, info["best"]  # the full picture, in the best panel only
        assert len(info["rows"]) == ITERATIONS
        # every row accounts for the whole beam: its own kept candidates plus the parents carried over
        assert all(r["kept"] + r["carried"] == 3 for r in info["rows"]), info["rows"]
        assert all(("carried over" in r["head"]) == (r["carried"] > 0) for r in info["rows"]), info["rows"]
        assert info["pruned"] == N * ITERATIONS - sum(r["kept"] for r in info["rows"])
        assert info["lineage"] == ITERATIONS and info["chart"] == 2
        assert info["progress"].startswith(f"{N * ITERATIONS} / {N * ITERATIONS} candidates")
        assert info["cancelHidden"]
        live.locator("button.bk-rows-all").click()  # back to the default: older rows collapsed
        live.locator(".bk-row-collapsed").first.wait_for()
        # the loaded session further down renders too, statically
        loaded = page.locator(f"{PANEL} .bk-widget[data-source='loaded']").first
        loaded.wait_for(timeout=60_000)
        live.scroll_into_view_if_needed()
        light = pill_colours(live)
        shot(live, "widget.png", docs=True)
        shot(page, "quickstart-page.png")
        # the dark theme: pills and badges take the theme's colours, not light pastels
        set_theme(page, "JupyterLab Dark")
        dark = pill_colours(live)
        shot(live, "widget-dark.png", docs=True)
        assert all(p["background"] > 0.5 and p["contrast"] >= 4.5 for p in light), light
        assert all(p["background"] < 0.1 and p["contrast"] >= 4.5 for p in dark), dark
        assert not widget_errors(errors), errors
    finally:
        try:
            set_theme(page, "JupyterLab Light")  # the theme is a user setting: the next tests start light
        finally:
            ctx.close()


def test_live_thumbnails_then_cancel_stops_a_long_job(browser: Any, lab: dict[str, Any]) -> None:
    ctx, page, errors = open_notebook(browser, lab, "long_job.ipynb")
    try:
        run_all(page)
        w = page.locator(f"{PANEL} .bk-widget[data-source='live']").first
        w.wait_for(timeout=60_000)
        # one look, in the page, at the same moment: still running, and pictures already there
        live = page.wait_for_function(
            f"""() => {{
                const w = document.querySelector("{PANEL} .bk-widget[data-source='live']");
                if (!w) return false;
                const thumbs = [...w.querySelectorAll('.bk-card[data-key] img.bk-thumb')].filter(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0);
                const done = parseInt(w.querySelector('.bk-progress-text')?.textContent || '0');
                return thumbs.length >= 3 && done >= 5 ? {{status: w.dataset.status, thumbs: thumbs.length, done}} : false;
            }}""",
            timeout=60_000,
        ).json_value()
        assert live["status"] == "running", live
        cancel = w.locator("button.bk-cancel")
        assert cancel.is_visible() and cancel.is_enabled()
        cancel.click()
        wait_status(page, "cancelled", timeout=15_000)
        # the kernel's side: the awaiting cell saw the job end as cancelled
        page.wait_for_function(
            f"() => [...document.querySelectorAll('{PANEL} .jp-OutputArea-output')].some(o => /job ended: cancelled/.test(o.textContent))",
            timeout=30_000,
        )
        done = int(w.locator(".bk-progress-text").inner_text().split("/")[0])
        assert live["done"] <= done < 24 * 20
        assert w.locator(".bk-error").inner_text().startswith("CANCELLED")
        assert cancel.is_hidden()
        shot(w, "widget-cancelled.png", docs=True)
        assert not widget_errors(errors), errors
    except BaseException:
        shot(page, "failed-long-job.png")
        raise
    finally:
        ctx.close()


def focused(page: Any) -> dict[str, Any]:
    return page.evaluate(
        "() => { const e = document.activeElement; const r = e.getBoundingClientRect();"
        " return {focus: e.dataset.focus || null, cls: e.className, top: r.top, left: r.left}; }"
    )


def dialog_open(page: Any, which: str, is_open: bool) -> None:
    page.wait_for_function(
        f"() => document.querySelector('{PANEL} dialog.{which}')?.open === {str(is_open).lower()}", timeout=15_000
    )


def test_tall_job_detail_view_keyboard_and_pictures_at_1366x768(browser: Any, lab: dict[str, Any]) -> None:
    vw, vh = 1366, 768
    ctx, page, errors = open_notebook(
        browser, lab, "tall_job.ipynb", width=vw, height=vh, permissions=["clipboard-read", "clipboard-write"]
    )
    try:
        run_all(page)
        w = page.locator(f"{PANEL} .bk-widget[data-source='live']").first
        w.wait_for(timeout=60_000)
        wait_status(page, "completed", timeout=300_000)
        n, m, iterations = TALL
        assert w.locator(".bk-row-collapsed").count() == iterations - 2
        w.locator("button.bk-rows-all").click()  # every row open: as tall as it gets
        page.wait_for_function(f"() => !document.querySelector('{PANEL} .bk-widget .bk-row-collapsed')")
        # Thumbnails go on arriving after the job's end, and each batch redraws the rows: a card
        # taken before the last one would be replaced under the click.
        page.wait_for_function(f"() => !document.querySelector(\"{PANEL} .bk-widget[data-source='live'] .bk-rows img.bk-loading\")",
                               timeout=60_000)
        assert w.bounding_box()["height"] > 1.5 * vh

        # -- a click on a card of iteration 3 opens the detail view where the user is looking
        card = w.locator(".bk-row[data-iteration='3'] .bk-card[data-key]").nth(5)
        key = card.get_attribute("data-key")
        card.scroll_into_view_if_needed()
        card.click()
        page.wait_for_function(
            f"() => {{ const i = document.querySelector(\"{PANEL} dialog.bk-detail[open] img.bk-detail-image\");"
            " return i && i.complete && i.naturalWidth > 0; }",
            timeout=30_000,
        )
        box = w.locator("dialog.bk-detail .bk-detail-card").bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= vh and box["x"] >= 0 and box["x"] + box["width"] <= vw, box
        detail = w.locator("dialog.bk-detail")
        assert detail.locator(".bk-section-title").first.inner_text().startswith(f"Iteration 3 · candidate #{key.split('-')[1]}")
        # critique -> refine: the parent's critique, the judge's strengths and weaknesses, and the lineage with its critiques
        assert detail.locator(".bk-critique .bk-text").inner_text().strip()
        assert detail.locator(".bk-strengths li, .bk-weaknesses li").count() >= 1
        steps = detail.locator(".bk-detail-lineage .bk-step")
        assert steps.count() >= 2
        assert steps.last.locator(".bk-step-critique").inner_text().strip()
        shot(page, "widget-detail.png", docs=True)

        # -- Escape closes it, and the keyboard is back on the card
        page.keyboard.press("Escape")
        dialog_open(page, "bk-detail", False)
        assert focused(page)["focus"] == key
        active_cell = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCellIndex")
        # -- arrow keys move between cards (not between notebook cells)
        page.keyboard.press("ArrowRight")
        right = focused(page)
        assert right["focus"] == f"3-{int(key.split('-')[1]) + 1}", right
        page.keyboard.press("ArrowLeft")
        assert focused(page)["focus"] == key
        page.keyboard.press("ArrowDown")
        down = focused(page)
        assert "bk-card" in down["cls"] and down["top"] > right["top"], (right, down)
        page.keyboard.press("ArrowUp")
        up = focused(page)
        assert "bk-card" in up["cls"] and up["top"] < down["top"], (down, up)
        page.keyboard.press("Home")
        assert focused(page)["focus"] == "0-0"
        page.keyboard.press("End")
        last = focused(page)["focus"]
        assert last and last.startswith(f"{iterations - 1}"), last
        card.focus()
        assert page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCellIndex") == active_cell
        # -- Enter opens the focused card; a click on the backdrop closes it
        page.keyboard.press("Enter")
        dialog_open(page, "bk-detail", True)
        page.wait_for_function(
            f"() => document.querySelector(\"{PANEL} dialog.bk-detail .bk-section-title\")?.textContent.startsWith('Iteration 3 · candidate #{key.split('-')[1]}')"
        )
        page.mouse.click(6, vh // 2)
        dialog_open(page, "bk-detail", False)
        # -- Space opens it too; the close button closes it
        page.keyboard.press(" ")
        dialog_open(page, "bk-detail", True)
        detail.locator("button.bk-close").click()
        dialog_open(page, "bk-detail", False)

        # -- the best panel stays in view while the rows scroll past
        w.locator(".bk-row").last.scroll_into_view_if_needed()
        page.wait_for_function(
            f"""() => {{
                const w = document.querySelector("{PANEL} .bk-widget[data-source='live']");
                const view = document.querySelector("{PANEL} .jp-WindowedPanel-outer").getBoundingClientRect();
                const best = w.querySelector('img.bk-best-image').getBoundingClientRect();
                return w.getBoundingClientRect().top < view.top - 400 && best.top >= view.top - 1 && best.bottom <= view.bottom + 1;
            }}""",
            timeout=15_000,
        )

        # -- the best picture at full size: the stored PNG, downloadable, with its prompt to copy
        prompt = w.locator(".bk-best .bk-combined .bk-text").inner_text()
        w.locator("img.bk-best-image").click()
        page.wait_for_function(
            f"() => {{ const i = document.querySelector(\"{PANEL} dialog.bk-viewer[open] img.bk-viewer-image[data-original='1']\");"
            " return i && i.complete && i.naturalWidth > 0; }",
            timeout=30_000,
        )
        viewer = w.locator("dialog.bk-viewer")
        vbox = viewer.bounding_box()
        assert vbox["y"] >= 0 and vbox["y"] + vbox["height"] <= vh, vbox
        natural = viewer.locator("img.bk-viewer-image").evaluate("i => [i.naturalWidth, i.naturalHeight]")
        with page.expect_download() as dl:
            viewer.locator("button.bk-download").click()
        name = dl.value.suggested_filename
        got = Path(dl.value.path()).read_bytes()
        m_name = re.fullmatch(r"(job-[0-9a-f]+)-iter(\d+)-cand(\d+)\.png", name)
        assert m_name, name
        stored = lab["work"] / "output" / "sessions" / m_name.group(1) / f"iter{m_name.group(2)}-cand{m_name.group(3)}.png"
        assert got == stored.read_bytes()  # the file itself, not a re-encoding
        from PIL import Image

        assert list(Image.open(stored).size) == natural
        viewer.locator("button.bk-copy").click()
        page.wait_for_function(f"() => document.querySelector(\"{PANEL} dialog.bk-viewer button.bk-copy\")?.textContent === 'Copied'")
        assert page.evaluate("() => navigator.clipboard.readText()") == prompt
        shot(page, "widget-fullsize.png")
        page.keyboard.press("Escape")
        dialog_open(page, "bk-viewer", False)
        assert not widget_errors(errors), errors
    except BaseException:
        shot(page, "failed-tall-job.png")
        print("browser errors:", errors)
        print("viewer:", page.evaluate(f"() => document.querySelector('{PANEL} dialog.bk-viewer')?.textContent"))
        raise
    finally:
        ctx.close()


# -- the person in the loop: a tournament's ranks and verdicts, compare mode, a steered review ----------

TOURNAMENT_PROMPT, STEERED_PROMPT = "a tournament: a fox in a snowy wood", "a steered job: a lighthouse"
TOURNAMENT = (4, 2, 2)  # N, M, iterations
PERSON_JOB = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "id": "tournament",
         "source": ["import beamkit\n",
                    f"job = beamkit.start({TOURNAMENT_PROMPT!r}, N={TOURNAMENT[0]}, M={TOURNAMENT[1]}, "
                    f"iterations={TOURNAMENT[2]}, seed=3, ranking='tournament', votes=1)\n", "job"]},
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "id": "wait",
         "source": ["result = await job\n", "print('tournament ended:', result.status)"]},
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "id": "steered",
         "source": [f"steered = beamkit.start({STEERED_PROMPT!r}, N=3, M=2, iterations=2, seed=11, steer=True)\n", "steered"]},
        # the review is answered while this cell awaits the job, as a person would
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "id": "wait-steered",
         "source": ["done = await steered\n", "print('steered ended:', done.status, done.iterations_done)"]},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def live_widget(prompt: str) -> str:
    """A JS expression: the live widget of the job with this prompt, or undefined."""
    return (f"[...document.querySelectorAll(\"{PANEL} .bk-widget[data-source='live']\")]"
            f".find(w => w.querySelector('.bk-prompt')?.textContent === {json.dumps(prompt)})")


def output_says(page: Any, pattern: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{PANEL} .jp-OutputArea-output')].some(o => /{pattern}/.test(o.textContent))",
        timeout=timeout,
    )


def test_tournament_ranks_verdicts_compare_mode_and_a_steered_review(browser: Any, lab: dict[str, Any]) -> None:
    (lab["work"] / "person_job.ipynb").write_text(json.dumps(PERSON_JOB))
    vw, vh = 1366, 768
    ctx, page, errors = open_notebook(browser, lab, "person_job.ipynb", width=vw, height=vh)
    try:
        run_all(page)
        page.wait_for_function(f"() => {live_widget(TOURNAMENT_PROMPT)}?.dataset.status === 'completed'", timeout=120_000)
        output_says(page, "tournament ended: completed")
        w = page.locator(f"{PANEL} .bk-widget[data-source='live']").filter(has=page.get_by_text(TOURNAMENT_PROMPT, exact=True))
        n, m, iterations = TOURNAMENT
        # -- rank badges: in every row, its kept cards and the parents carried over rank 1..M
        page.wait_for_function(f"() => {live_widget(TOURNAMENT_PROMPT)}.querySelectorAll('.bk-row .bk-card .bk-rank').length >= {m * iterations}")
        rows = w.evaluate(
            """w => [...w.querySelectorAll('.bk-row')].map(r => ({
                ranks: [...r.querySelectorAll('.bk-card .bk-rank')].map(e => e.textContent.trim()).sort(),
                kept: r.querySelectorAll('.bk-card.bk-kept').length,
                keptRanked: r.querySelectorAll('.bk-card.bk-kept .bk-rank').length,
                prunedRanked: r.querySelectorAll('.bk-card.bk-pruned .bk-rank').length}))"""
        )
        assert len(rows) == iterations, rows
        for r in rows:
            assert r["ranks"] == [f"#{k}" for k in range(1, m + 1)] and r["keptRanked"] == r["kept"], rows
            assert r["prunedRanked"] == 0, rows
        assert "ranking tournament" in w.locator(".bk-params").inner_text()

        # -- the detail view of iteration 0's best: its ranks, then each win and loss with the judge's reason
        card = w.locator(".bk-row[data-iteration='0'] .bk-card[data-key]").filter(has=page.locator(".bk-rank", has_text="#1"))
        key = card.get_attribute("data-key")
        card.click()
        page.wait_for_function(
            f"() => {{ const i = document.querySelector(\"{PANEL} dialog.bk-detail[open] img.bk-detail-image\");"
            " return i && i.complete && i.naturalWidth > 0; }",
            timeout=30_000,
        )
        assert w.locator("dialog.bk-detail .bk-section-title").first.inner_text().startswith(
            f"Iteration 0 · candidate #{key.split('-')[1]}")
        section = w.locator("dialog.bk-detail .bk-detail-tournament")
        label = section.locator(".bk-label").inner_text()
        got = re.search(r"(\d+) wins?, (\d+) loss(?:es)?", label, re.I)
        assert got, label
        wins, losses = int(got.group(1)), int(got.group(2))
        bouts = section.locator(".bk-bout")
        assert bouts.count() == wins + losses >= 1
        assert section.locator(".bk-bout-won").count() == wins and wins >= 1  # the beam's best won something
        assert "#1 after iteration 0" in section.locator(".bk-tournament-ranks").inner_text()
        first = bouts.first
        assert re.match(r"(won|lost) against \d+-\d+ · iteration \d", first.locator(".bk-step-head").inner_text(), re.I)
        assert first.locator(".bk-bout-reason").inner_text().strip()
        section.evaluate("e => e.scrollIntoView({block: 'end'})")  # the dialog scrolls: the verdicts in the picture
        shot(page, "widget-tournament.png", docs=True)
        # an opponent opens on a click, as a lineage step does
        opponent = first.get_attribute("data-key")
        first.click()
        page.wait_for_function(
            f"() => document.querySelector(\"{PANEL} dialog.bk-detail .bk-section-title\")?.textContent"
            f".startsWith('Iteration {opponent.split('-')[0]} · candidate #{opponent.split('-')[1]}')",
            timeout=15_000,
        )
        page.keyboard.press("Escape")
        dialog_open(page, "bk-detail", False)

        # -- compare mode: a pair, its key for "left is better", one more rating (on disk too)
        kinds = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.map(c => c.model.type)")
        assert w.locator(".bk-rate-count").inner_text() == "0 ratings"
        w.locator("button.bk-compare-toggle").click()
        pane = w.locator(".bk-compare")
        pane.wait_for(timeout=15_000)
        assert pane.locator(".bk-compare-side").count() == 2
        pane.press("1")
        page.wait_for_function(f"() => {live_widget(TOURNAMENT_PROMPT)}.querySelector('.bk-rate-count')?.textContent === '1 rating'",
                               timeout=15_000)
        # the key was the widget's: JupyterLab did not make a cell a heading with it
        assert page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.map(c => c.model.type)") == kinds
        job_id = w.locator(".bk-jobid").inner_text()
        (rating,) = (lab["work"] / "output" / "sessions" / job_id / "ratings.jsonl").read_text().splitlines()
        assert json.loads(rating)["winner"] == "a"
        w.locator("button.bk-compare-toggle").click()  # "Close compare"
        pane.wait_for(state="detached", timeout=15_000)

        # -- the steered job waits for its review; "Keep proposed" moves it on
        s = page.locator(f"{PANEL} .bk-widget[data-source='live']").filter(has=page.get_by_text(STEERED_PROMPT, exact=True))
        review = s.locator(".bk-review")
        review.wait_for(timeout=120_000)
        assert review.locator(".bk-section-title").inner_text().startswith("Review of iteration 0")
        assert review.locator("input.bk-review-pick:checked").count() == 2
        review.scroll_into_view_if_needed()
        page.wait_for_function(
            f"() => [...{live_widget(STEERED_PROMPT)}.querySelectorAll('img.bk-review-thumb')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=30_000,
        )
        shot(s.locator(".bk-person"), "widget-review.png")
        review.locator("button.bk-review-keep").click()
        review.wait_for(state="detached", timeout=30_000)
        page.wait_for_function(f"() => {live_widget(STEERED_PROMPT)}?.dataset.status === 'completed'", timeout=120_000)
        output_says(page, "steered ended: completed 2")
        assert not widget_errors(errors), errors
    except BaseException:
        shot(page, "failed-person.png")
        print("browser errors:", errors)
        raise
    finally:
        ctx.close()


# -- a saved notebook, its kernel restarted (issue 11, item 4) -------------------------------------

SAVED_JOB = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "id": "start",
         "source": ["import beamkit\n", "job = beamkit.start('a harbour at night, saved', N=4, M=2, iterations=2, seed=7)\n", "job"]},
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "id": "wait",
         "source": ["result = await job\n", "print('job ended:', result.status)"]},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def static_views(page: Any) -> list[dict[str, Any]]:
    """Each static view of the open notebook: whether it shows, its status, its picture's size."""
    return page.evaluate(
        f"""() => [...document.querySelectorAll("{PANEL} .bk-static")].map(s => {{
            const r = s.getBoundingClientRect(), img = s.querySelector('img');
            return {{visible: r.width > 0 && r.height > 0, status: s.dataset.status,
                     picture: img ? [img.complete, img.naturalWidth] : null, text: s.textContent}};
        }})"""
    )


def test_saved_notebook_shows_the_static_view_after_a_kernel_restart(browser: Any, lab: dict[str, Any]) -> None:
    path = lab["work"] / "saved_job.ipynb"
    path.write_text(json.dumps(SAVED_JOB))
    ctx, page, errors = open_notebook(browser, lab, "saved_job.ipynb")
    try:
        run_all(page)
        wait_status(page, "completed")
        page.wait_for_function(
            f"() => [...document.querySelectorAll('{PANEL} .jp-OutputArea-output')].some(o => /job ended: completed/.test(o.textContent))",
            timeout=60_000,
        )
        # while the widget runs, its static twin is in the page but hidden
        page.wait_for_function(f"() => document.querySelector(\"{PANEL} .bk-static\")?.dataset.status === 'completed'",
                               timeout=30_000)
        (live,) = static_views(page)
        assert not live["visible"], live
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        deadline = time.monotonic() + 30
        while 'data-status=\\"completed\\"' not in path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)  # polling a file the browser writes through the server
        saved = json.loads(path.read_text())
        live_out, static_out = saved["cells"][0]["outputs"]
        assert "application/vnd.jupyter.widget-view+json" in live_out["data"]
        assert "completed, 8/8 candidates" in "".join(static_out["data"]["text/plain"])
        assert "widgets" not in saved["metadata"]  # JupyterLab's default: no widget state saved
        # not awaited: the command's promise waits for the dialog's answer
        page.evaluate("() => { window.jupyterapp.commands.execute('kernelmenu:restart'); }")
        page.locator(".jp-Dialog button.jp-mod-accept").click(timeout=30_000)
        page.wait_for_function(
            "() => /Idle/.test(document.querySelector('#jp-main-statusbar')?.textContent || '')", timeout=60_000
        )
    except BaseException:
        shot(page, "failed-saved-notebook.png")
        raise
    finally:
        ctx.close()
    # the notebook opened again, from disk, on the restarted kernel: no widget model is left
    ctx, page, errors = open_notebook(browser, lab, "saved_job.ipynb")
    try:
        page.wait_for_function(f"() => document.querySelector(\"{PANEL} .bk-static img\")?.naturalWidth > 0",
                               timeout=30_000)
        (view,) = static_views(page)
        assert view["visible"] and view["status"] == "completed" and view["picture"][1] > 0
        assert "a harbour at night, saved" in view["text"] and "best " in view["text"]
        # the widget output's "model not found" box is hidden by the static view's own style
        dead = page.evaluate(
            f"""() => [...document.querySelectorAll("{PANEL} .jp-OutputArea-output")]
                  .filter(o => /Error displaying widget/.test(o.textContent))
                  .map(o => o.getBoundingClientRect().height)"""
        )
        assert all(h == 0 for h in dead), dead
        shot(page.locator(f"{PANEL} .bk-static").first, "static-view.png", docs=True)
    except BaseException:
        shot(page, "failed-saved-notebook-reopened.png")
        raise
    finally:
        ctx.close()


RERUN_JOB = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "id": "start",
         "source": ["import beamkit\n", "job = beamkit.start('a long search, started twice', N=24, M=4, iterations=20)\n", "job"]},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def test_rerunning_the_start_cell_names_the_job_left_running_and_cancels_it(browser: Any, lab: dict[str, Any]) -> None:
    (lab["work"] / "rerun_job.ipynb").write_text(json.dumps(RERUN_JOB))
    ctx, page, errors = open_notebook(browser, lab, "rerun_job.ipynb")
    try:
        run_all(page)
        wait_status(page, "running")
        first = page.locator(f"{PANEL} .bk-widget .bk-jobid").first.inner_text()
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(
            f"() => {{ const ids = [...document.querySelectorAll(\"{PANEL} .bk-widget .bk-jobid\")].map(e => e.textContent);"
            f" return ids.length === 1 && ids[0] !== '{first}'; }}",
            timeout=60_000,
        )
        w = page.locator(f"{PANEL} .bk-widget[data-source='live']").first
        others = w.locator(".bk-others")
        others.wait_for(timeout=30_000)
        assert first in others.inner_text() and "still running" in others.inner_text()
        shot(w.locator(".bk-header"), "widget-others.png")
        others.locator(f"[data-job='{first}'] button.bk-others-cancel").click()
        others.wait_for(state="detached", timeout=30_000)  # the first job ended: nothing left to name
        assert w.get_attribute("data-status") == "running"  # this widget's own job runs on
        w.locator("button.bk-cancel").click()
        wait_status(page, "cancelled", timeout=30_000)
        assert not widget_errors(errors), errors
    except BaseException:
        shot(page, "failed-rerun.png")
        raise
    finally:
        ctx.close()
