"""The notebooks: committed clean, and what they send to a browser.

The notebooks themselves run as tests under nbval (``pytest notebooks --nbval-lax``,
part of scripts/test.sh); each asserts what it shows. This file adds what nbval cannot see:
that they are committed without outputs, the widget state a saved quickstart carries
(thumbnails only, at most 256 px), and the real-providers notebook's paid cells run
against a local OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
EXPECTED = {"quickstart.ipynb", "teaching.ipynb", "research.ipynb", "real-providers.ipynb"}
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def test_the_four_notebooks_are_there() -> None:
    assert EXPECTED <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    assert "widgets" not in nb.metadata, "saved widget state: clear it before committing"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: a cell has outputs"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "assert " in code, f"{path.name} must assert what it shows"
    assert "sk-" not in code, "no key in a notebook"


def run_notebook(path: Path, workdir: Path, timeout: int = 300) -> Any:
    from nbclient import NotebookClient

    shutil.copy(path, workdir / path.name)
    nb = nbformat.read(workdir / path.name, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return nb


def _state(nb: Any) -> dict[str, Any]:
    return nb.metadata["widgets"][WIDGET_STATE]["state"]


def _buffer(model: dict[str, Any], name: str) -> bytes | None:
    for b in model["state"].get("buffers", []) or model.get("buffers", []):
        if b["path"] == [name]:
            return base64.b64decode(b["data"])
    return None


def test_quickstart_saved_widget_state_has_thumbnails_only(tmp_path: Path) -> None:
    """Run the quickstart as a notebook server would, and read the widget state it saves."""
    from PIL import Image

    nb = run_notebook(REPO / "notebooks" / "quickstart.ipynb", tmp_path)
    state = _state(nb)
    beam_widgets = {k: v for k, v in state.items() if v["model_name"] == "AnyModel" and "header" in v["state"]}
    loaded = [v for v in beam_widgets.values() if v["state"]["header"]["source"] == "loaded"]
    assert len(loaded) == 1
    (w,) = loaded
    s = w["state"]
    assert s["header"]["status"] == "completed" and s["progress"]["done"] == 27
    assert len(s["rows"]) == 3 and sum(len(r["cards"]) for r in s["rows"]) == 27
    assert len(s["thumbs"]) == 27 and all(ref.startswith("IPY_MODEL_") for ref in s["thumbs"].values())
    sizes = []
    for ref in s["thumbs"].values():
        thumb = state[ref.removeprefix("IPY_MODEL_")]
        data = base64.b64decode(next(b["data"] for b in thumb["buffers"] if b["path"] == ["value"]))
        im = Image.open(io.BytesIO(data))
        assert im.format in ("WEBP", "JPEG") and max(im.size) <= 256
        sizes.append(len(data))
    best = base64.b64decode(next(b["data"] for b in w["buffers"] if b["path"] == ["best_image"]))
    assert Image.open(io.BytesIO(best)).size == (512, 512)  # the full picture: the best panel's only
    # no picture rides in the JSON state itself (the front end's code, _esm and _css, is no data)
    assert len(json.dumps({k: v for k, v in s.items() if k not in ("_esm", "_css")})) < 60_000
    assert sum(sizes) < 27 * 20_000


class _FakeOpenAIThread:
    """tests/openai_server.FakeOpenAI on its own loop in a thread, for a kernel in another process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Any:
        from openai_server import FakeOpenAI

        self.thread.start()
        self.fake = asyncio.run_coroutine_threadsafe(FakeOpenAI().start(), self.loop).result(10)
        return self.fake

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def fake_openai_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from openai_server import TEST_KEY

    with _FakeOpenAIThread() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.setenv("BEAMKIT_LOCAL_OPENAI_URL", fake.base_url)
        # the default image rate (a few a minute, for a new OpenAI account) would make this test wait
        monkeypatch.setenv("BEAMKIT_IMAGE_PER_MINUTE", "6000")
        monkeypatch.setenv("BEAMKIT_IMAGE_CONCURRENCY", "8")
        yield fake


def test_real_providers_paid_cells_run_against_a_compatible_server(tmp_path: Path, fake_openai_env: Any) -> None:
    """With a key in the environment the paid cells run (here against a local OpenAI-compatible server)."""
    nb = run_notebook(REPO / "notebooks" / "real-providers.ipynb", tmp_path)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "skipped: no OPENAI_API_KEY" not in text
    assert "skipped: set BEAMKIT_LOCAL_OPENAI_URL" not in text
    assert "OpenAI key: set" in text and "best:" in text
    ops = fake_openai_env.count()
    assert ops["image"] >= 8 and ops["vision"] >= 8, ops  # the paid job and the local-server job called it
    assert os.environ["OPENAI_API_KEY"] not in json.dumps(nb)  # the key shows nowhere in the saved notebook


SAVED_JOB = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "id": "start",
         "source": "import beamkit\njob = beamkit.start('a lighthouse in a storm', N=3, M=1, iterations=2, seed=4)\njob"},
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "id": "wait",
         "source": "result = await job\nprint(result.status)"},
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "id": "loaded",
         "source": "beamkit.load(job.folder)"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def _saved_job(workdir: Path) -> Any:
    """Run SAVED_JOB as a notebook server's runner does, without saving widget state (JupyterLab's default)."""
    from nbclient import NotebookClient

    nb = nbformat.from_dict(json.loads(json.dumps(SAVED_JOB)))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    path = workdir / "saved.ipynb"
    nbformat.write(nb, path)
    return nbformat.read(path, as_version=4)


def test_a_saved_notebook_keeps_the_final_static_view_of_a_job(tmp_path: Path) -> None:
    """The job's output, as saved, says how it ended and shows its best picture without a kernel."""
    from PIL import Image

    nb = _saved_job(tmp_path)
    live, static = nb.cells[0].outputs
    assert "application/vnd.jupyter.widget-view+json" in live.data  # the widget, for a running kernel
    assert "pending" not in live.data["text/plain"]
    # the display update sent when the job ended (from the job's own task, during the next cell) was kept
    text, page = static.data["text/plain"], static.data["text/html"]
    assert "completed, 6/6 candidates" in text and "best " in text
    assert 'class="bk-static"' in page and 'data-status="completed"' in page
    data_url = re.search(r'src="data:image/(webp|jpeg);base64,([^"]+)"', page)
    assert data_url is not None
    picture = Image.open(io.BytesIO(base64.b64decode(data_url.group(2))))
    assert max(picture.size) <= 256  # a small inline picture, not the full PNG
    assert page.count("<tr>") == 1 + 2  # the header and both iterations
    assert len(page) < 40_000
    # a loaded session carries its static view at once
    _, loaded = nb.cells[2].outputs
    assert 'data-status="completed"' in loaded.data["text/html"]


def test_nbconvert_shows_the_static_view_of_a_saved_notebook(tmp_path: Path) -> None:
    """nbconvert (and so nbviewer) has no widget state to draw from: it shows the static view."""
    from nbconvert import HTMLExporter

    nb = _saved_job(tmp_path)
    body, _ = HTMLExporter().from_notebook_node(nb)
    assert body.count('class="bk-static"') == 2
    assert "data:image/" in body and "completed" in body
