"""Providers from plug-ins: a real ``*.dist-info`` with an ``entry_points.txt`` on sys.path."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import beamkit
from beamkit.errors import InvalidRequest
from beamkit.providers import ENTRY_POINT_GROUP, registry, resolve

PLUGIN = textwrap.dedent(
    '''
    """A tiny provider of every role, as a third-party package would ship it."""
    import io

    from PIL import Image

    from beamkit.providers import GeneratedImage, Limit, Provider, RoleHandle, Setting, VisionResult

    CALLS = []
    SEEN = []
    OPERATIONS = {"llm": ("expand", "refine", "combine", "critique"), "image": ("image",), "vision": ("vision",)}


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


    class Demo(Provider):
        roles = ("llm", "image", "vision")
        settings = (Setting("style", str, "plain", env=("DEMO_STYLE",), roles=("image",)),)

        def create(self, role, options):
            SEEN.append((role, dict(options.settings)))
            impl = {"llm": LLM, "image": Painter, "vision": Judge}[role]()
            ops = OPERATIONS[role]
            usage = lambda: {"models": {"demo": {"calls": sum(1 for c in CALLS if c in ops)}}, "totalCost": 0.0}
            return RoleHandle(impl, limit=Limit(concurrency=2) if role == "image" else Limit(), usage=usage)


    class Heavy(Provider):
        """Needs a module this machine lacks, as a GPU provider would."""
        roles = ("image",)
        requires = ("a_module_that_is_not_installed",)
        extra = "heavy"


    def not_a_provider(options):
        return None
    '''
)


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch):
    """Install, for this test only, a package with one good provider and broken ones."""
    (tmp_path / "beamkit_demo_plugin.py").write_text(PLUGIN)
    (tmp_path / "beamkit_broken_plugin.py").write_text("import a_module_that_does_not_exist\n")
    info = tmp_path / "beamkit_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: beamkit-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "demo = beamkit_demo_plugin:Demo\n"
        "broken = beamkit_broken_plugin:Broken [gpu]\n"  # its import fails; its extra says how to fix that
        "misnamed = beamkit_demo_plugin:NoSuchProvider\n"
        "factory = beamkit_demo_plugin:not_a_provider\n"  # a 0.1-style factory function
        "heavy = beamkit_demo_plugin:Heavy\n"
        "offline = beamkit_demo_plugin:Demo\n"  # may not shadow a built-in
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()  # forget what an earlier test discovered
    yield tmp_path
    registry.refresh()


def test_plugins_are_discovered_through_the_same_entry_point_group_as_the_builtins(plugins):
    names = registry.names()
    assert {"demo", "broken", "misnamed", "factory", "heavy", "offline", "openai"} <= set(names)
    assert {"demo", "offline", "openai"} <= set(registry.available())
    assert registry.entry("demo").origin == "plugin" and registry.entry("demo").dist == "beamkit-demo-plugin"
    # a plug-in cannot shadow a built-in: offline is still beamkit's own
    from beamkit.providers.offline import OfflineProvider

    assert registry.entry("offline").origin == "builtin" and isinstance(registry.get("offline"), OfflineProvider)


@pytest.mark.parametrize("name,reason,hint", [
    ("broken", "ModuleNotFoundError", "pip install beamkit-demo-plugin[gpu]"),
    ("misnamed", "AttributeError", None),
    ("factory", "not a beamkit Provider", None),
    ("heavy", "a_module_that_is_not_installed", "pip install beamkit-demo-plugin[heavy]"),
])
def test_a_provider_that_cannot_load_is_listed_as_unavailable_with_the_reason(plugins, name, reason, hint, caplog):
    row = next(r for r in registry.describe() if r["name"] == name)
    assert row["available"] is False and reason in row["reason"] and row["install"] == hint
    assert reason in registry.plugin_errors()[name]
    assert name not in registry.available()
    with pytest.raises(InvalidRequest) as info:
        resolve(name)
    assert info.value.field == "providers" and "not available" in info.value.message
    assert reason in info.value.message and (hint is None or hint in info.value.message)
    # the others are unharmed
    assert resolve("demo").providers == {"llm": "demo", "image": "demo", "vision": "demo"}


def test_the_cli_lists_providers_with_their_availability(plugins, capsys):
    from beamkit.cli import main

    assert main(["providers", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["providers"]}
    assert rows["demo"]["available"] and rows["demo"]["roles"] == ["llm", "image", "vision"]
    assert rows["demo"]["settings"][0] | {"help": ""} == {
        "name": "style", "type": "str", "default": "plain", "env": ["DEMO_STYLE"], "secret": False, "help": "",
        "roles": ["image"], "choices": [], "header": None, "minimum": None, "maximum": None, "nullable": False}
    assert rows["heavy"]["install"] == "pip install beamkit-demo-plugin[heavy]"
    assert main(["providers"]) == 0
    text = capsys.readouterr().out
    assert "heavy  [plugin, unavailable: the module 'a_module_that_is_not_installed' is not installed]" in text
    assert "install: pip install beamkit-demo-plugin[heavy]" in text


@pytest.mark.asyncio
async def test_a_job_runs_on_a_plugin_and_a_broken_one_fails_only_its_own_request(plugins, tmp_path, monkeypatch):
    import beamkit_demo_plugin  # the module the entry point loaded

    monkeypatch.setenv("DEMO_STYLE", "from-env")
    with pytest.raises(InvalidRequest):
        beamkit.start("a lighthouse", providers="broken", output=tmp_path / "out")
    with pytest.raises(InvalidRequest) as info:
        beamkit.start("a lighthouse", providers={"llm": "demo", "image": "heavy", "vision": "demo"},
                      output=tmp_path / "out")
    assert "heavy" in info.value.message and "pip install" in info.value.message
    result = await beamkit.search("a lighthouse", N=3, M=2, iterations=2, seed=5, providers="demo", output=tmp_path / "out")
    assert result.status == "completed" and result.best is not None
    calls = beamkit_demo_plugin.CALLS
    assert calls.count("expand") == 6 and calls.count("critique") == 2 and calls.count("refine") == 3
    assert calls.count("image") == calls.count("vision") == calls.count("combine") == 6
    assert result.usage["models"]["demo"]["calls"] == len(calls)  # the three roles' usage, added up
    assert ("image", {"style": "from-env"}) in beamkit_demo_plugin.SEEN  # the declared setting, from its env var
    sessions = list((tmp_path / "out" / "sessions").iterdir())
    assert len(sessions) == 1  # the broken requests left nothing on disk
    meta = json.loads((sessions[0] / "metadata.json").read_text())
    assert meta["config"]["providers"] == "demo"
