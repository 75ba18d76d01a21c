"""Provider sets from plug-ins: a real ``*.dist-info`` with an ``entry_points.txt`` on sys.path."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import beamkit
from beamkit.errors import InvalidRequest
from beamkit.providers import ENTRY_POINT_GROUP, ProviderOptions, registry

PLUGIN = textwrap.dedent(
    '''
    """A tiny provider set, as a third-party package would ship it."""
    import io

    from PIL import Image

    from beamkit.providers import GeneratedImage, Limit, ProviderSet, VisionResult

    CALLS = []


    class LLM:
        async def expand(self, prompt, dimension, *, seed):
            CALLS.append("expand")
            return f"{prompt} ({dimension} {seed % 100})"

        async def refine(self, prompt, dimension, critique, user_prompt, *, seed):
            CALLS.append("refine")
            return f"{prompt}, better"

        async def combine(self, what, how, *, seed):
            CALLS.append("combine")
            return f"{what}; {how}"

        async def critique(self, candidate, dimension, user_prompt, *, seed):
            CALLS.append("critique")
            return "more light"


    class Painter:
        async def generate(self, prompt, *, seed):
            CALLS.append("image")
            out = io.BytesIO()
            Image.new("RGB", (8, 8), (seed % 256, 90, 160)).save(out, format="PNG")
            return GeneratedImage(out.getvalue(), {"model": "demo"})


    class Judge:
        async def analyze(self, image, user_prompt, *, seed):
            CALLS.append("vision")
            return VisionResult(alignment_score=50 + seed % 50, aesthetic_score=5.0, analysis="fine")


    def create(options):
        return ProviderSet(
            name="demo", llm=LLM(), image=Painter(), vision=Judge(),
            limits={"image": Limit(concurrency=2)},
            usage=lambda: {"models": {"demo": {"calls": len(CALLS)}}, "totalCost": 0.0, "currency": "USD"},
        )
    '''
)


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch):
    """Install, for this test only, a package with one good and three broken provider-set entry points."""
    (tmp_path / "beamkit_demo_plugin.py").write_text(PLUGIN)
    (tmp_path / "beamkit_broken_plugin.py").write_text("import a_module_that_does_not_exist\n")
    info = tmp_path / "beamkit_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: beamkit-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "demo = beamkit_demo_plugin:create\n"
        "broken = beamkit_broken_plugin:create\n"
        "misnamed = beamkit_demo_plugin:no_such_factory\n"
        "offline = beamkit_demo_plugin:create\n"  # may not shadow a built-in
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # forget what an earlier test discovered
    monkeypatch.setattr(registry, "_plugins", None)
    monkeypatch.setattr(registry, "_plugin_errors", {})
    yield tmp_path


def test_plugins_are_discovered_through_the_entry_point_group(plugins):
    names = registry.available()
    assert {"demo", "broken", "misnamed", "offline", "openai"} <= set(names)
    ps = registry.create("demo", ProviderOptions(seed=3))
    assert ps.name == "demo"
    assert "offline" not in registry._discover()  # a plug-in cannot shadow a built-in set


@pytest.mark.parametrize("name,reason", [("broken", "ModuleNotFoundError"), ("misnamed", "AttributeError")])
def test_a_broken_plugin_is_reported_and_skipped(plugins, name, reason, caplog):
    with pytest.raises(InvalidRequest) as info:
        registry.create(name, ProviderOptions())
    assert info.value.field == "providers" and "failed to load" in info.value.message
    assert reason in registry.plugin_errors()[name]
    assert "failed to load" in caplog.text
    # the others are unharmed
    assert registry.create("demo", ProviderOptions()).name == "demo"
    assert set(registry.plugin_errors()) == {name}


@pytest.mark.asyncio
async def test_a_job_runs_on_a_plugin_and_a_broken_one_fails_only_its_own_request(plugins, tmp_path):
    import beamkit_demo_plugin  # the module the entry point loaded

    with pytest.raises(InvalidRequest):
        beamkit.start("a lighthouse", providers="broken", output=tmp_path / "out")
    result = await beamkit.search("a lighthouse", N=3, M=2, iterations=2, seed=5, providers="demo", output=tmp_path / "out")
    assert result.status == "completed" and result.best is not None
    calls = beamkit_demo_plugin.CALLS
    assert calls.count("expand") == 6 and calls.count("critique") == 2 and calls.count("refine") == 3
    assert calls.count("image") == calls.count("vision") == calls.count("combine") == 6
    sessions = list((tmp_path / "out" / "sessions").iterdir())
    assert len(sessions) == 1  # the broken request left nothing on disk
    meta = json.loads((sessions[0] / "metadata.json").read_text())
    assert meta["config"]["providers"] == "demo"
