"""The notebook widget: its view model, the live/loaded/remote views, what crosses to the browser."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from openai_server import openai_server  # noqa: F401 - the fixture
from PIL import Image

import beamkit
import beamkit.widget as widget
from beamkit import storage
from beamkit.providers import register
from beamkit.providers.simulated import Simulation
from beamkit.widget import BeamWidget, ViewModel, view
from beamkit.widget.chart import line_chart, score_chart
from beamkit.widget.images import THUMB_SIZE, make_thumbnail, sniff_format
from beamkit.widget.measure import count_comms, measure_job

_names = itertools.count()


def sim_set(**kwargs: Any) -> str:
    sim = Simulation(**kwargs)
    name = f"wsim{next(_names)}"
    sim.name = name
    register(name, sim.provider)
    return name


async def cancel_once(job: Any, ready: Any) -> None:
    """Cancel ``job`` as soon as ``ready()`` holds (polled: a state to reach), and see it end cancelled."""
    while not ready():
        await asyncio.sleep(0.02)
    job.cancel()
    with pytest.raises(beamkit.JobCancelled):
        await job


def big_png(text: str, size: int = 512) -> bytes:
    """A real-sized picture, for thumbnail tests (the simulated set paints 8x8)."""
    im = Image.new("RGB", (size, size), (30, 60, 90))
    for x in range(0, size, 16):
        for y in range(0, size, 16):
            im.putpixel((x, y), (hash((text, x, y)) & 255, 120, 200))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def realistic_set(**kwargs: Any) -> str:
    """The simulated provider, but painting 512x512 pictures (the size of the offline provider's)."""
    from beamkit.providers.simulated import SimulatedProvider

    sim = Simulation(**kwargs)
    name = f"wsim{next(_names)}"
    sim.name = name

    class Realistic(SimulatedProvider):
        def create(self, role: str, options: Any) -> Any:
            handle = super().create(role, options)
            if role == "image":
                handle.impl.generate = _enlarged(handle.impl.generate)
            return handle

    register(name, Realistic(sim))
    return name


def _enlarged(gen: Any) -> Any:
    """An image role's ``generate`` whose pictures are 512x512."""

    def enlarge(png: bytes) -> bytes:
        small = Image.open(io.BytesIO(png))
        colour = small.convert("RGB").resize((512, 512), Image.Resampling.NEAREST)
        big = Image.blend(colour, _grain(), 0.3)  # texture, so it compresses like a painting
        out = io.BytesIO()
        big.save(out, "PNG", pnginfo=_pnginfo(small), compress_level=1)
        return out.getvalue()

    async def generate(prompt: str, *, seed: int) -> Any:
        img = await gen(prompt, seed=seed)
        img.png = await asyncio.to_thread(enlarge, img.png)
        return img

    return generate


_GRAIN: list[Image.Image] = []


def _grain() -> Image.Image:
    if not _GRAIN:
        _GRAIN.append(Image.effect_noise((512, 512), 40).convert("RGB"))
    return _GRAIN[0]


def _pnginfo(im: Image.Image) -> Any:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for k, v in getattr(im, "text", {}).items():
        info.add_text(k, v)
    return info


# -- import hygiene ------------------------------------------------------------------------------


def test_import_beamkit_does_not_import_widgets() -> None:
    code = "import sys, beamkit; bad=[m for m in sys.modules if m.split('.')[0] in ('ipywidgets','anywidget','IPython')]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_display_hook_outside_a_kernel_is_text(tmp_path: Path) -> None:
    async def go() -> dict[str, Any]:
        job = beamkit.start("a fox", providers=sim_set(), output=tmp_path, N=2, M=1, iterations=1)
        await job
        return job._repr_mimebundle_()

    bundle = asyncio.run(go())
    assert list(bundle) == ["text/plain"] and bundle["text/plain"].startswith("<Job job-")


# -- the view model ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_view_model_follows_the_engine(tmp_path: Path) -> None:
    job = beamkit.start("a red fox in snow", providers=sim_set(), output=tmp_path, seed=3)
    result = await job
    vm = ViewModel()
    changed = [vm.apply(e) for e in job.history]
    assert vm.status == "completed" and vm.done
    p = vm.progress()
    assert p["done"] == p["total"] == 27 and p["iteration"] == 2 and p["dimension"] == "how" and p["failed"] == 0
    rows = vm.rows()
    assert [r["iteration"] for r in rows] == [0, 1, 2] and vm.live_row() is None
    assert [(r["operation"], r["dimension"]) for r in rows] == [("expand", "what"), ("refine", "what"), ("refine", "how")]
    for r in rows:
        kept = {c["key"] for c in r["cards"] if c["kept"]}
        beam_of_iteration = {f"{i}-{c}" for i, c in result.beams[r["iteration"]]}
        assert kept == {k for k in beam_of_iteration if k.startswith(f"{r['iteration']}-")}
        assert all(c["kept"] in (True, False) for c in r["cards"])
    best = vm.best()
    assert best is not None and best["final"]
    assert (best["iteration"], best["candidateId"]) == result.best.key
    assert best["what"] == result.best.what_prompt and best["how"] == result.best.how_prompt
    assert best["combined"] == result.best.combined_prompt
    assert [(s["iteration"], s["candidateId"]) for s in best["lineage"]] == result.lineage()
    assert best["lineage"][0]["iteration"] == 0 and "what" in best["lineage"][0] and "how" in best["lineage"][0]
    series = vm.series()
    assert [s["iteration"] for s in series] == [0, 1, 2]
    assert [s["best"] for s in series] == [round(x, 2) for x in result.best_by_iteration()]
    assert all(a["best"] <= b["best"] for a, b in zip(series, series[1:]))
    assert all(s["mean"] <= s["best"] for s in series)
    assert vm.beam() == [f"{i}-{c}" for i, c in result.beams[2]]
    # the parts an event changes are the ones the widget resends
    assert changed[0] == {"header", "progress"}
    assert "rows" in changed[-2] and "beam" in changed[-2]


def test_view_model_marks_failures_with_their_reason() -> None:
    vm = ViewModel()
    vm.apply({"type": "started", "jobId": "job-x", "config": {"prompt": "p", "N": 2, "M": 1, "iterations": 1}})
    vm.apply({"type": "iteration", "jobId": "job-x", "iteration": 0, "totalIterations": 1, "dimension": "what", "operation": "expand", "status": "processing"})
    vm.apply({"type": "candidate", "jobId": "job-x", "iteration": 0, "candidateId": 1, "totalCandidates": 2, "status": "failed",
              "error": {"message": "content policy refusal", "code": "CONTENT_POLICY"}, "parent": None})
    row = vm.live_row()
    assert row is not None and row["status"] == "processing" and row["expected"] == 2
    (card,) = row["cards"]
    assert card["status"] == "failed" and card["error"]["code"] == "CONTENT_POLICY" and "kept" not in card
    assert vm.best() is None and vm.progress()["failed"] == 1
    vm.apply({"type": "error", "jobId": "job-x", "error": {"message": "Job was cancelled", "code": "CANCELLED"}})
    assert vm.status == "cancelled" and vm.live_row()["status"] == "stopped"



@pytest.mark.asyncio
async def test_cards_carry_strengths_weaknesses_and_the_critique_that_made_them(tmp_path: Path) -> None:
    job = beamkit.start("a red fox", providers=sim_set(), output=tmp_path, N=3, M=1, iterations=3, seed=2)
    await job
    vm = ViewModel()
    vm.apply_all(job.history)
    rows = vm.rows()
    assert all(c["critique"] is None for c in rows[0]["cards"])
    for r in rows[1:]:
        for card in r["cards"]:
            parent = vm.state.candidates[tuple(int(x) for x in card["parent"].split("-"))]
            assert card["critique"] == parent.critiques[f"iter{r['iteration']}-{r['dimension']}"]
            assert card["strengths"] == [] and card["weaknesses"] == []
    steps = vm.best()["lineage"]
    assert "critique" not in steps[0] and all(s["critique"].startswith("critique of") for s in steps[1:])
    detail = vm.detail((2, 0))
    assert detail["critique"] == rows[2]["cards"][0]["critique"] and detail["imageMetadata"]["seed"] is not None

def _ref(d: dict[str, Any]) -> tuple[int, int]:
    return (d["iteration"], d["candidateId"])


@pytest.mark.asyncio
async def test_a_tournament_job_shows_ranks_and_each_candidates_wins_and_losses(tmp_path: Path) -> None:
    from beamkit.widget.viewmodel import REASON_CHARS, key_str

    job = beamkit.start("a red fox in snow", providers="offline", output=tmp_path, N=4, M=2, iterations=3, seed=3,
                        ranking="tournament", votes=1)
    await job
    events = [dict(e) for e in job.history]
    vm = ViewModel()
    vm.apply_all(job.history)
    assert vm.header()["params"]["ranking"] == "tournament" and vm.header()["params"]["votes"] == 1

    # ranks: each row's beam as its completed iteration event numbered it, carried-over parents included
    by_event = {(e["iteration"], key_str(_ref(b))): b["rank"]
                for e in events if e["type"] == "iteration" and e["status"] == "completed" for b in e["beam"]}
    rows = vm.rows()
    assert {(r["iteration"], k): n for r in rows for k, n in r["ranks"].items()} == by_event
    for r in rows:
        for card in r["cards"]:
            assert card.get("rank") == by_event.get((r["iteration"], card["key"])), card
            assert ("rank" in card) == card["kept"]

    # wins and losses: one entry per comparison event the candidate was in, in their order
    comparisons = [e for e in events if e["type"] == "comparison"]
    assert comparisons
    both = 0
    for key in vm.state.candidates:
        t = vm.detail(key)["tournament"]
        mine = [c for c in comparisons if key in (_ref(c["a"]), _ref(c["b"]))]
        assert len(t["bouts"]) == len(mine) == t["wins"] + t["losses"]
        for bout, c in zip(t["bouts"], mine, strict=True):
            me = "a" if _ref(c["a"]) == key else "b"
            other = c["b"] if me == "a" else c["a"]
            assert bout == {"opponent": key_str(_ref(other)), "won": c["winner"] == me, "reason": c["reason"],
                            "iteration": c["iteration"], "shownFirst": c["shownFirst"] == me}
        assert t["wins"] == sum(c["winner"] == ("a" if _ref(c["a"]) == key else "b") for c in mine)
        assert t["ranks"] == [{"iteration": i, "rank": n} for (i, k), n in sorted(by_event.items()) if k == key_str(key)]
        both += t["wins"] > 0 and t["losses"] > 0
    assert both  # the seed gives candidates that won some and lost some

    # a session read back shows the same, and a click on a card sends the section
    w = await asyncio.to_thread(lambda: view(beamkit.load(job.folder)))
    assert w.rows == rows
    key = next(k for k in vm.state.candidates if vm.detail(k)["tournament"]["bouts"])
    w._on_msg(w, {"type": "select", "key": key_str(key)}, [])
    assert w.selected["tournament"] == vm.detail(key)["tournament"]

    # a long reason is cut, once, to the bound
    vm.apply({"type": "comparison", "jobId": job.id, "iteration": 2, "a": {"iteration": 2, "candidateId": 0},
              "b": {"iteration": 2, "candidateId": 1}, "shownFirst": "a", "winner": "b", "reason": "because " * 200})
    reason = vm.bouts((2, 0))[-1]["reason"]
    assert len(reason) == REASON_CHARS and reason.startswith("because because") and reason.endswith("…")


@pytest.mark.asyncio
async def test_an_open_detail_view_gains_the_verdicts_that_come_after_it_was_opened(tmp_path: Path) -> None:
    from beamkit.widget.images import LocalImages

    job = beamkit.start("a red fox in snow", providers="offline", output=tmp_path, N=4, M=2, iterations=3, seed=3,
                        ranking="tournament", votes=1)
    await job
    w = BeamWidget(ViewModel(), LocalImages(job.folder))
    history = list(job.history)
    first_end = next(n for n, e in enumerate(history) if e["type"] == "iteration" and e["status"] == "completed")
    for e in history[: first_end + 1]:
        w.ingest(e)
    top = history[first_end]["beam"][0]
    key = f"{top['iteration']}-{top['candidateId']}"
    w.select(key)  # opened after iteration 0: the parent competes again in the next iterations
    opened = len(w.selected["tournament"]["bouts"])
    for e in history[first_end + 1:]:
        w.ingest(e)
    mine = [e for e in history if e["type"] == "comparison" and key in
            (f"{e['a']['iteration']}-{e['a']['candidateId']}", f"{e['b']['iteration']}-{e['b']['candidateId']}")]
    assert len(w.selected["tournament"]["bouts"]) == len(mine) > opened
    w.close()


@pytest.mark.asyncio
async def test_a_score_ranked_job_shows_no_tournament(tmp_path: Path) -> None:
    job = beamkit.start("a red fox in snow", providers="offline", output=tmp_path, N=3, M=2, iterations=2, seed=3)
    await job
    vm = ViewModel()
    vm.apply_all(job.history)
    assert "ranking" not in vm.header()["params"] and not vm.state.comparisons
    assert all("ranks" not in r and all("rank" not in c for c in r["cards"]) for r in vm.rows())
    assert all("tournament" not in vm.detail(k) for k in vm.state.candidates)


# -- usage and cost ------------------------------------------------------------------------------

#: a ``complete`` event's usage as the openai set records it (beamkit.providers.openai.pricing)
OPENAI_USAGE = {
    "models": {
        "gpt-4o-mini": {"inputTokens": 41230, "outputTokens": 9120, "images": 0, "calls": 66, "cost": 0.011657},
        "gpt-image-1-mini": {"inputTokens": 1890, "outputTokens": 0, "images": 27, "calls": 27, "cost": 0.148},
        "gpt-4o-mini-vision": {"inputTokens": 30000, "outputTokens": 2400, "images": 0, "calls": 27, "cost": 0.009943},
    },
    "totalCost": 0.1696,
    "currency": "USD",
    "unpriced": [],
}


def _finished(vm: ViewModel, usage: Any, providers: str = "openai") -> set[str]:
    vm.apply({"type": "started", "jobId": "job-u", "config": {"prompt": "p", "N": 1, "M": 1, "iterations": 1, "providers": providers}})
    return vm.apply({"type": "complete", "jobId": "job-u", "result": {"bestCandidate": None, "duration": 10, "usage": usage}})


def test_usage_of_a_recorded_openai_complete_event() -> None:
    vm = ViewModel()
    assert vm.usage() is None  # nothing before the job ends
    assert "usage" in _finished(vm, OPENAI_USAGE)
    u = vm.usage()
    assert u is not None
    assert u["calls"] == 120 and u["inputTokens"] == 73120 and u["outputTokens"] == 11520 and u["images"] == 27
    assert u["cost"] == 0.1696 and u["currency"] == "USD" and u["costText"] == "$0.1696"
    assert [m["model"] for m in u["models"]] == list(OPENAI_USAGE["models"])
    assert u["models"][1] == {"model": "gpt-image-1-mini", "calls": 27, "inputTokens": 1890, "outputTokens": 0, "images": 27, "cost": 0.148}
    assert vm.snapshot()["usage"] == u
    json.dumps(u)

    # a model the price table does not know is named, not counted as free
    vm2 = ViewModel()
    _finished(vm2, {**OPENAI_USAGE, "totalCost": 0.0117, "unpriced": ["judge-x"]})
    assert vm2.usage()["costText"] == "$0.0117 + unpriced judge-x"


def test_usage_of_other_shapes() -> None:
    free = {"models": {"offline-llm": {"inputTokens": 0, "outputTokens": 0, "images": 0, "calls": 5, "cost": 0.0}},
            "totalCost": 0.0, "currency": "USD", "unpriced": []}
    vm = ViewModel()
    _finished(vm, free, providers="offline")
    assert vm.usage()["costText"] == "free (offline)" and vm.usage()["calls"] == 5
    for shape, expected in (({"calls": 7}, {"calls": 7, "models": []}), ({}, None), (None, None), ({"calls": 0}, None)):
        vm = ViewModel()
        changed = _finished(vm, shape, providers="sim")
        assert vm.usage() == expected, shape
        assert ("usage" in changed) == bool(shape)


@pytest.mark.asyncio
async def test_live_offline_job_shows_its_usage(tmp_path: Path) -> None:
    job = beamkit.start("a lighthouse", providers="offline", output=tmp_path, N=2, M=1, iterations=2, seed=1)
    w = view(job)
    assert w.usage is None  # shown once the job has ended
    result = await job
    await w.settled()
    u = w.usage
    assert u == w.view_model.usage() and w.view_model.usage_data == result.usage
    assert u["costText"] == "free (offline)" and u["cost"] == 0.0
    assert u["images"] == 4 and u["calls"] == sum(m["calls"] for m in result.usage["models"].values()) > 4
    assert {m["model"] for m in u["models"]} == {"offline-llm", "offline-painter", "offline-vision"}

    # (b) the same session loaded from disk: from its events.jsonl, or from metadata.json alone
    loaded = view(beamkit.load(job.folder))
    assert loaded.usage == u
    (job.folder / storage.EVENTS_FILE).unlink()
    assert view(beamkit.load(job.folder)).usage == u


@pytest.mark.asyncio
async def test_openai_job_shows_tokens_and_cost(tmp_path: Path, openai_server: Any) -> None:
    from openai_server import TEST_KEY

    settings = {"api_key": TEST_KEY, "base_url": openai_server.base_url, "max_retries": 1,
                "limits": {"image": {"concurrency": 4, "per_minute": 0}}}
    job = beamkit.start("a red fox in snow", providers="openai", output=tmp_path, N=2, M=1, iterations=2, seed=1,
                        provider_settings=settings)
    w = view(job)
    result = await job
    await w.settled()
    usage = result.usage
    assert usage["totalCost"] > 0
    u = w.usage
    assert u["costText"] == f"${usage['totalCost']:.4f}" and u["cost"] == usage["totalCost"]
    assert u["calls"] == sum(m["calls"] for m in usage["models"].values())
    assert u["inputTokens"] == sum(m["inputTokens"] for m in usage["models"].values()) > 0
    assert u["outputTokens"] == sum(m["outputTokens"] for m in usage["models"].values()) > 0
    assert u["images"] == 4
    assert {m["model"]: m["cost"] for m in u["models"]} == {k: m["cost"] for k, m in usage["models"].items()}
    assert view(beamkit.load(job.folder)).usage == u


@pytest.mark.asyncio
async def test_loaded_stopped_session_shows_usage_from_metadata(tmp_path: Path) -> None:
    job = beamkit.start("stopped", providers=sim_set(image_latency=0.05), output=tmp_path, N=4, iterations=10, seed=1)
    await cancel_once(job, lambda: any(e["type"] == "iteration" and e.get("status") == "completed" for e in job.history))
    meta = json.loads((job.folder / storage.METADATA_FILE).read_text())
    w = view(beamkit.load(job.folder))
    assert w.header["status"] == "cancelled"
    assert w.usage == {"calls": meta["usage"]["calls"], "models": []} and meta["usage"]["calls"] > 0


# -- thumbnails and the chart ------------------------------------------------------------------------


def test_thumbnails_are_small_and_compressed() -> None:
    png = big_png("x", 512)
    t = make_thumbnail(png)
    assert sniff_format(t) in ("webp", "jpeg")
    im = Image.open(io.BytesIO(t))
    assert max(im.size) == THUMB_SIZE and im.size == (256, 256)
    assert len(t) < len(png) / 4
    wide = io.BytesIO()
    Image.new("RGB", (1024, 300), (200, 10, 10)).save(wide, "PNG")
    assert Image.open(io.BytesIO(make_thumbnail(wide.getvalue()))).size == (256, 75)
    tiny = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiny, "PNG")
    assert Image.open(io.BytesIO(make_thumbnail(tiny.getvalue()))).size == (8, 8)  # never scaled up


def test_chart_is_an_svg_with_both_series() -> None:
    svg = score_chart([{"iteration": 0, "best": 60.0, "mean": 50.0}, {"iteration": 1, "best": 70.5, "mean": 61.0}], 3)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'class="bk-series-best"' in svg and 'class="bk-series-mean"' in svg
    assert svg.count("<circle") == 4
    many = line_chart({"a <b>": [(0, 1), (1, 2)], "c": [(0, 3)]}, title="t & u")
    assert "a &lt;b&gt;" in many and "t &amp; u" in many and "<b>" not in many


# -- the live widget ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_live_widget_shows_every_candidate_and_the_best(tmp_path: Path) -> None:
    job = beamkit.start("a lighthouse", providers=realistic_set(image_latency=0.02), output=tmp_path, seed=5)
    w = view(job)
    assert view(job) is w  # one widget per job: displaying twice shows two views of one model
    assert w.header["status"] in ("pending", "running") and w.cancellable
    result = await job
    await w.settled()
    assert w.thumbnail_count == 27
    for k, data in w.thumbnail_bytes().items():
        im = Image.open(io.BytesIO(data))
        assert max(im.size) <= 256 and im.format in ("WEBP", "JPEG"), (k, im.size, im.format)
    assert set(w.thumbs) == {f"{c.iteration}-{c.candidate_id}" for c in result.candidates}
    # the full picture only for the best
    best = result.best
    assert w.best_image_key == f"{best.iteration}-{best.candidate_id}"
    original = (job.folder / storage.image_file(*best.key)).read_bytes()
    shown = Image.open(io.BytesIO(w.best_image))
    assert shown.size == (512, 512) and shown.format == "WEBP" and w.best_image_format == "webp"
    assert len(w.best_image) < len(original) / 2  # full size, but not the PNG's weight
    assert w.best["key"] == w.best_image_key and w.best["final"]
    assert w.progress["done"] == 27 and w.header["status"] == "completed" and not w.cancellable
    assert len(w.rows) == 3 and w.live_row is None
    assert "<svg" in w.chart_svg
    # throttled: fewer sends than events, none of them slow
    assert w.stats["events"] == len(job.history)
    assert w.stats["flushes"] < w.stats["events"]


@pytest.mark.asyncio
async def test_cancel_button_cancels_the_job(tmp_path: Path) -> None:
    job = beamkit.start("a long job", providers=sim_set(image_latency=0.2), output=tmp_path, N=12, iterations=20, seed=1)
    w = view(job)
    while w.progress.get("done", 0) < 3:
        await asyncio.sleep(0.05)
    t0 = time.monotonic()
    w._on_msg(w, {"type": "cancel"}, [])  # what the button's click sends
    assert w.cancel_requested
    with pytest.raises(beamkit.JobCancelled):
        await job
    assert time.monotonic() - t0 < 1.0
    await w.settled()
    assert job.status == "cancelled"
    assert w.header["status"] == "cancelled" and w.header["error"]["code"] == "CANCELLED"
    assert not w.cancellable
    assert w.progress["done"] < 12 * 20
    assert w.live_row is not None and w.live_row["status"] == "stopped"
    # no complete event, but what the job used so far is still shown
    assert job.result.usage["calls"] > 0 and w.usage == {"calls": job.result.usage["calls"], "models": []}


@pytest.mark.asyncio
async def test_failed_candidates_show_their_reason(tmp_path: Path) -> None:
    job = beamkit.start("flaky", providers=sim_set(fail_rate=0.25), output=tmp_path, N=8, M=2, iterations=2, seed=11)
    w = view(job)
    try:
        await job
    except beamkit.BeamkitError:
        pass  # an iteration may lose every candidate; the widget must still show why
    await w.settled()
    cards = [c for r in [*w.rows, *([w.live_row] if w.live_row else [])] for c in r["cards"]]
    failed = [c for c in cards if c["status"] == "failed"]
    assert failed, "the seed was chosen so that some candidates fail"
    assert all(c["error"]["code"] == "PROVIDER_ERROR" and "simulated failure" in c["error"]["message"] for c in failed)
    assert all(c["key"] not in w.thumbs for c in failed)  # no picture for a failed candidate
    assert w.thumbnail_count == len(cards) - len(failed)


@pytest.mark.asyncio
async def test_select_sends_one_full_picture(tmp_path: Path) -> None:
    job = beamkit.start("a boat", providers=realistic_set(), output=tmp_path, N=3, M=1, iterations=2, seed=2)
    w = view(job)
    await job
    await w.settled()
    w._on_msg(w, {"type": "select", "key": "1-2"}, [])
    await w.settled()
    assert w.selected["key"] == "1-2" and w.selected["whatPrompt"] and w.selected["lineage"][0].startswith("0-")
    assert Image.open(io.BytesIO(w.selected_image)).size == (512, 512)
    w._on_msg(w, {"type": "select", "key": None}, [])
    assert w.selected is None and w.selected_image == b""


@pytest.mark.asyncio
async def test_widget_does_not_hold_up_the_loop(tmp_path: Path) -> None:
    """Thumbnails are made in threads and sends are throttled: the widget's work on the loop is small.

    Measured in CPU time of the loop's thread, which other processes on a shared machine do not
    inflate; how long the loop as a whole waits is a figure for `python -m beamkit.widget.measure`.
    """
    job = beamkit.start("a busy job", providers=realistic_set(), output=tmp_path, N=16, M=4, iterations=3, seed=9)
    w = view(job)
    await job
    await w.settled()
    assert w.thumbnail_count == 48
    # the widget's own work on the loop comes in short slices (an event, a send, a new thumbnail):
    # a few milliseconds at most, some tens in all
    assert w.stats["loop_seconds_max"] < 0.02, w.stats
    assert w.stats["loop_seconds"] < 0.5, w.stats


# -- loaded results -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_loaded_result_replays_events_and_draws_without_a_loop(tmp_path: Path) -> None:
    job = beamkit.start("a castle", providers=realistic_set(), output=tmp_path, seed=4)
    result = await job
    live = view(job)
    await live.settled()

    def static(folder: Path) -> BeamWidget:
        return view(beamkit.load(folder))

    w = await asyncio.to_thread(static, job.folder)  # a thread with no loop: nothing to wait for
    assert w.header["source"] == "loaded" and w.header["status"] == "completed" and not w.cancellable
    assert w.thumbnail_count == 27 and w.best_image == live.best_image
    assert w.rows == live.rows and w.best == live.best and w.chart_svg == live.chart_svg

    # without events.jsonl the view is rebuilt from metadata.json's candidates and beams
    (job.folder / storage.EVENTS_FILE).unlink()
    w2 = await asyncio.to_thread(static, job.folder)
    assert w2.rows == live.rows and w2.best["key"] == live.best["key"]
    assert [s["key"] for s in w2.best["lineage"]] == [s["key"] for s in live.best["lineage"]]
    assert w2.thumbnail_count == 27
    assert result.best is not None


@pytest.mark.asyncio
async def test_loaded_cancelled_session(tmp_path: Path) -> None:
    job = beamkit.start("stopped", providers=sim_set(image_latency=0.1), output=tmp_path, N=6, iterations=10, seed=1)
    await cancel_once(job, lambda: sum(e["type"] == "candidate" for e in job.history) >= 8)
    w = view(beamkit.load(job.folder))
    assert w.header["status"] == "cancelled"
    assert w.live_row is None or w.live_row["status"] == "stopped"
    assert w.best is not None and len(w.rows) >= 1


def test_interrupted_session_shows_as_interrupted(tmp_path: Path) -> None:
    async def go() -> Path:
        job = beamkit.start("died", providers=sim_set(), output=tmp_path, N=3, M=1, iterations=2, seed=1)
        await job
        return job.folder

    folder = asyncio.run(go())
    lines = (folder / storage.EVENTS_FILE).read_text().splitlines()
    (folder / storage.EVENTS_FILE).write_text("\n".join(lines[:7]) + "\n")  # the process died mid-iteration 1
    (folder / storage.METADATA_FILE).unlink()
    w = view(beamkit.load(folder))
    assert w.header["status"] == "interrupted"
    assert len(w.rows) == 1 and w.live_row["status"] == "stopped"


# -- what crosses to the browser ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_bytes_to_the_front_end_for_a_default_job(tmp_path: Path) -> None:
    summary = await measure_job(prompt="a lighthouse on a cliff at dusk", providers=realistic_set(), output=str(tmp_path), seed=7)
    assert summary["candidates"] == 27 and summary["thumbnail_models"] == 27
    # every picture crosses once: thumbnails are their own models, the full picture only for the best
    assert summary["best_images_sent"] <= 4
    png = next(p for p in (tmp_path / "sessions").glob("*/iter0-cand0.png")).read_bytes()
    assert summary["full_image_bytes"] <= summary["best_images_sent"] * len(png) * 1.5
    assert summary["thumbnail_bytes"] < 27 * 30_000
    # no message resends pictures: the biggest message holds at most one full picture
    assert summary["total_bytes"] < 1_500_000, summary


def test_counting_comms_sees_state_and_buffers() -> None:
    from beamkit.widget import Thumbnail

    with count_comms() as traffic:
        t = Thumbnail(value=b"x" * 1000, key="0-0")
        t.key = "0-1"
    s = traffic.summary()
    assert s["thumbnail_models"] == 1 and s["buffer_bytes"] == 1000 and s["messages"] == 2
    json.dumps(s)


# -- the display hooks in a kernel ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_mimebundle_in_a_kernel_is_the_widget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(widget, "_in_kernel", lambda: True)
    job = beamkit.start("a hill", providers=sim_set(), output=tmp_path, N=2, M=1, iterations=1, seed=1)
    b1 = job._repr_mimebundle_()
    b2 = job._repr_mimebundle_()
    view_json = b1["application/vnd.jupyter.widget-view+json"]
    assert view_json["model_id"] == b2["application/vnd.jupyter.widget-view+json"]["model_id"] == view(job).model_id
    assert b1["text/plain"].startswith("<Job ")
    result = await job
    rb = result._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in rb and rb["text/plain"].startswith("<Result ")
    loaded = beamkit.load(job.folder)
    lb = loaded._repr_mimebundle_()
    assert lb["application/vnd.jupyter.widget-view+json"]["model_id"] == view(loaded).model_id


@pytest.mark.asyncio
async def test_original_pictures_on_request(tmp_path: Path) -> None:
    from beamkit.widget import for_job

    job = beamkit.start("a boat", providers=realistic_set(), output=tmp_path, N=3, M=1, iterations=1, seed=2)
    w = for_job(job, full_pictures="original")
    result = await job
    await w.settled()
    assert w.best_image == (job.folder / storage.image_file(*result.best.key)).read_bytes()
    assert w.best_image_format == "png"


def test_view_rejects_other_objects() -> None:
    with pytest.raises(TypeError):
        view(42)


# -- a job on a server (beamkit.watch) -----------------------------------------------------------


async def _server(tmp_path: Path, token: str | None = None) -> Any:
    from beamkit.server.manager import JobManager
    from beamkit.server.standalone import Server

    return await Server(JobManager(tmp_path), port=0, token=token).start()


@pytest.mark.asyncio
async def test_watch_a_job_on_a_server(tmp_path: Path) -> None:
    from beamkit.client import Client

    name = realistic_set(image_latency=0.01)
    server = await _server(tmp_path, token="s3cret-token")
    try:
        async with Client(server.url, token="s3cret-token") as client:
            job_id = await client.start("a lighthouse", providers=name, N=4, M=2, iterations=2, seed=3)
            w = beamkit.watch(job_id, url=server.url, token="s3cret-token")
            assert isinstance(w, BeamWidget) and w.header["source"] == "remote" and w.cancellable
            await w.settled()
            info = await client.get_job(job_id)
        assert w.header["status"] == "completed" and w.header["params"]["N"] == 4
        assert w.thumbnail_count == 8
        for data in w.thumbnail_bytes().values():
            assert max(Image.open(io.BytesIO(data)).size) <= 256
        best = info["result"]["bestCandidate"]
        assert w.best["key"] == f"{best['iteration']}-{best['candidateId']}" == w.best_image_key
        assert w.best["total"] == best["totalScore"]
        assert Image.open(io.BytesIO(w.best_image)).size == (512, 512)
        assert [s["key"] for s in w.best["lineage"]] == [f"{x['iteration']}-{x['candidateId']}" for x in best["lineage"]]
        # the simulated set only counts calls: the usage line says just that
        assert info["result"]["usage"]["calls"] > 0
        assert w.usage == {"calls": info["result"]["usage"]["calls"], "models": []}
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_watch_cancel_button_cancels_on_the_server(tmp_path: Path) -> None:
    from beamkit.client import Client

    name = sim_set(image_latency=0.2)
    server = await _server(tmp_path)
    try:
        async with Client(server.url) as client:
            job_id = await client.start("a long one", providers=name, N=8, iterations=20, seed=1)
        w = beamkit.watch(job_id, url=server.url)
        while w.progress.get("done", 0) < 2:
            await asyncio.sleep(0.05)
        w._on_msg(w, {"type": "cancel"}, [])
        await w.settled(timeout=10)
        assert w.header["status"] == "cancelled" and w.header["error"]["code"] == "CANCELLED"
        async with Client(server.url) as client:
            assert (await client.get_job(job_id))["status"] == "cancelled"
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_watch_unknown_job_says_so(tmp_path: Path) -> None:
    server = await _server(tmp_path)
    try:
        w = beamkit.watch("job-doesnotexist", url=server.url)
        await w.settled(timeout=10)
        assert w.header["status"] == "error" and w.header["error"]["code"] == "NOT_FOUND"
        assert not w.cancellable
    finally:
        await server.stop()


def test_cancel_reaches_a_kernel_whose_cell_awaits_the_job(tmp_path: Path) -> None:
    """In a real kernel, the button's message is handled even while another cell awaits the job."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        ids: list[str] = []
        kc.execute_interactive(
            "import beamkit\nfrom beamkit.widget import view\n"
            "job = beamkit.start('long', N=12, iterations=20, seed=1)\nprint(view(job).comm.comm_id)",
            output_hook=lambda m: ids.append(m["content"]["text"].strip()) if m["msg_type"] == "stream" else None,
            timeout=60,
        )
        msg_id = kc.execute(
            "print('awaiting', flush=True)\ntry:\n    await job\nexcept beamkit.JobCancelled:\n"
            "    print('cancelled with', job.progress['candidatesProcessed'], 'of', job.progress['totalCandidates'])"
        )
        out = ""

        def read_until(marker: str) -> None:
            nonlocal out
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and marker not in out:
                m = kc.get_iopub_msg(timeout=60)
                if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream":
                    out += m["content"]["text"]

        read_until("awaiting")  # the cell is now inside `await job`
        click = kc.session.msg("comm_msg", {"comm_id": ids[0], "data": {"method": "custom", "content": {"type": "cancel"}}})
        kc.shell_channel.send(click)
        read_until("cancelled with")
        assert "cancelled with" in out, out
        done, total = out.split("cancelled with")[1].split(" of ")
        assert int(done) < int(total) == 240  # stopped before the end
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# -- cost as it happens, other jobs, freed models (issue 11) ------------------------------------------


@pytest.mark.asyncio
async def test_openai_job_header_shows_the_estimate_then_the_cost_so_far(tmp_path: Path, openai_server: Any) -> None:
    from openai_server import TEST_KEY

    settings = {"api_key": TEST_KEY, "base_url": openai_server.base_url, "max_retries": 1,
                "limits": {"image": {"concurrency": 4, "per_minute": 0}}}
    openai_server.latency = {"image": 0.05}  # long enough to look at the header between iterations
    job = beamkit.start("a red fox in snow", providers="openai", output=tmp_path, N=2, M=1, iterations=3, seed=1,
                        provider_settings=settings)
    expected = beamkit.estimate(job.params.to_dict(), provider_settings=settings)
    w = view(job)
    cost = w.header["cost"]
    assert cost["estimate"] == f"${expected['totalCost']:.4f}" and not cost["final"]  # before any call
    while not (0 in w.view_model.state.rows and w.view_model.state.rows[0].completed):
        await asyncio.sleep(0.02)
    w.flush()
    during = w.header["cost"]
    assert not job.done and not during["final"]
    spent = float(during["spent"].lstrip("$"))
    assert 0 < spent  # what the first iteration cost, while the job still runs
    result = await job
    await w.settled()
    end = w.header["cost"]
    assert end["final"] and end["spent"] == f"${result.usage['totalCost']:.4f}" and spent < result.usage["totalCost"]


@pytest.mark.asyncio
async def test_offline_job_header_has_no_cost_line(tmp_path: Path) -> None:
    job = beamkit.start("free", providers="offline", output=tmp_path, N=2, M=1, iterations=1, seed=1)
    w = view(job)
    await job
    await w.settled()
    assert w.header["cost"] is None


@pytest.mark.asyncio
async def test_a_new_jobs_widget_names_the_others_still_running_and_cancels_them(tmp_path: Path) -> None:
    slow = sim_set(image_latency=0.05)
    first = beamkit.start("the first", providers=slow, output=tmp_path, N=4, iterations=20, seed=1)
    second = beamkit.start("the second", providers=slow, output=tmp_path, N=4, iterations=20, seed=2)
    w = view(second)
    assert w.others == [{"jobId": first.id, "prompt": "the first"}]
    assert view(first).others == [{"jobId": second.id, "prompt": "the second"}]
    w._on_msg(w, {"type": "cancel_other", "jobId": "job-notinthelist"}, [])
    assert not first.done
    w._on_msg(w, {"type": "cancel_other", "jobId": first.id}, [])
    with pytest.raises(beamkit.JobCancelled):
        await first
    assert w.others == [] and not second.done
    second.cancel()
    with pytest.raises(beamkit.JobCancelled):
        await second


@pytest.mark.asyncio
async def test_closing_a_widget_frees_every_model_it_made(tmp_path: Path) -> None:
    from ipywidgets.widgets.widget import _instances

    before = set(_instances)
    job = beamkit.start("a harbour", providers=sim_set(), output=tmp_path, N=4, M=2, iterations=2, seed=1)
    w = view(job)
    await job
    await w.settled()
    assert w.thumbnail_count == 8 and len(set(_instances) - before) >= 8 + 2
    w.close()
    assert set(_instances) - before == set()


@pytest.mark.asyncio
async def test_the_static_view_tells_how_a_job_ended(tmp_path: Path) -> None:
    from beamkit.widget import static_bundle
    from beamkit.widget.static_view import summary

    job = beamkit.start("stopped <b>early</b>", providers=sim_set(image_latency=0.05), output=tmp_path, N=4,
                        iterations=10, seed=1)
    await cancel_once(job, lambda: job.state.beams)
    b = static_bundle(job)
    assert b["text/plain"] == summary(job.state) and "cancelled" in b["text/plain"]
    page = b["text/html"]
    assert 'data-status="cancelled"' in page and "CANCELLED: Job was cancelled" in page
    assert "stopped &lt;b&gt;early&lt;/b&gt;" in page and "<b>early</b>" not in page  # the prompt is escaped
    assert "stopped</td>" in page  # the iteration the cancel cut short
    assert static_bundle(beamkit.load(job.folder))["text/plain"] == b["text/plain"]


# -- past sessions: beamkit.sessions() ------------------------------------------------------------


@pytest.mark.asyncio
async def test_sessions_gallery_lists_every_folder_and_opens_one_as_load_does(tmp_path: Path) -> None:
    from beamkit.widget.gallery import GalleryView

    name = realistic_set()
    done = await beamkit.search("a lighthouse", providers=name, output=tmp_path, N=3, M=1, iterations=2, seed=1)
    stopped = beamkit.start("a stopped one", providers=sim_set(image_latency=0.05), output=tmp_path, N=4,
                            iterations=10, seed=2)
    await cancel_once(stopped, lambda: stopped.state.candidates)
    broken = tmp_path / "sessions" / "job-broken"
    broken.mkdir()
    (broken / storage.METADATA_FILE).write_text("{not json")
    (tmp_path / "sessions" / "not-a-session").mkdir()  # not a job id: not listed

    found = beamkit.sessions(tmp_path)
    by_id = {s.job_id: s for s in found}
    assert set(by_id) == {done.job_id, stopped.id, "job-broken"}
    assert [s.job_id for s in found if s.problem is None] == [stopped.id, done.job_id]  # newest first
    s = by_id[done.job_id]
    assert (s.status, s.prompt, s.best_score, s.candidates, s.total) == ("completed", "a lighthouse",
                                                                       done.best.total_score, 6, 6)
    assert s.best_image is not None and s.date is not None and s.date.startswith("20")
    assert by_id[stopped.id].status == "cancelled"
    assert by_id["job-broken"].status == "corrupt" and "metadata.json" in (by_id["job-broken"].problem or "")
    assert found.open(done.job_id).to_dict() == beamkit.load(done.folder).to_dict()
    assert "3 sessions in" in repr(found)

    g = found.widget()
    assert isinstance(g, GalleryView)
    await g._thumbs_task  # pictures are made off the loop, then sent
    assert set(g.gallery.thumbs) == {done.job_id, stopped.id} and all(
        u.startswith("data:image/") for u in g.gallery.thumbs.values())
    assert [d["jobId"] for d in g.gallery.sessions] == [s.job_id for s in found]
    g.gallery._handle_custom_msg({"type": "open", "jobId": done.job_id}, [])
    (opened,) = g.holder.children
    assert isinstance(opened, BeamWidget) and g.gallery.opened == done.job_id
    assert opened.header["source"] == "loaded" and opened.header["jobId"] == done.job_id
    assert opened.header["status"] == "completed" and opened.thumbnail_count == 6
    g.gallery._handle_custom_msg({"type": "open", "jobId": "job-broken"}, [])
    assert opened.comm is None  # the one shown before is closed
    (note,) = g.holder.children
    assert "cannot be read" in note.value
    g.close()


def test_sessions_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    found = beamkit.sessions(tmp_path / "nothing-here")
    assert len(found) == 0 and "no beamkit session" in repr(found)
