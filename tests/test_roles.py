"""Roles that compose: a job takes each role from a provider it names, settings are declared once."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
from typing import Any

import pytest
from server_helpers import send, start_server, until_terminal

import beamkit
from beamkit.errors import BeamkitError, ErrorCode, InvalidRequest
from beamkit.providers import (
    GeneratedImage,
    Limit,
    Provider,
    RoleHandle,
    RoleOptions,
    Setting,
    register,
    registry,
    resolve,
    unregister,
)
from beamkit.providers.base import check_providers, merge_usage
from beamkit.providers.cli import parse_providers, parse_set
from beamkit.providers.roles import plan
from beamkit.providers.simulated import Simulation

_names = itertools.count()
ALL = ("llm", "image", "vision")


def fresh(provider: Provider) -> str:
    name = f"roles{next(_names)}"
    register(name, provider)
    return name


class Painter(Provider):
    """Only images, with declared settings of every kind, noting what each role got."""

    roles = ("image",)
    settings = (
        Setting("model", str, "paint-1", env=("PAINT_MODEL",)),
        Setting("steps", int, 4, env=("PAINT_STEPS",), minimum=1, maximum=50),
        Setting("guidance", float, 7.5, minimum=0),
        Setting("tiled", bool, False),
        Setting("extra", dict),
        Setting("sampler", str, "euler", choices=("euler", "ddim")),
        Setting("token", str, secret=True, env=("PAINT_TOKEN",), header="X-Paint-Token"),
        Setting("negative", str, "blurry", nullable=True),
    )
    aliases = {"paint_model": "image.model"}

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.painted = 0

    def create(self, role: str, options: RoleOptions) -> RoleHandle:
        self.seen.append(dict(options.settings))
        provider = self

        class Image:
            async def generate(self, prompt: str, *, seed: int) -> GeneratedImage:
                provider.painted += 1
                return await sim_image.generate(prompt, seed=seed)

        return RoleHandle(Image(), limit=Limit(concurrency=1), info={"model": options.settings["model"]},
                          usage=lambda: {"models": {options.settings["model"]: {"images": 1, "cost": 0.25}}, "totalCost": 0.25})

    def estimate(self, role: str, calls: dict[str, int], options: RoleOptions) -> dict[str, Any]:
        return {"cost": {op: 0.01 * n * options.settings["steps"] for op, n in calls.items()},
                "model": options.settings["model"]}


sim_image = Simulation().provider.create("image", RoleOptions("image")).impl


@pytest.fixture
def painter() -> Any:
    p = Painter()
    name = fresh(p)
    yield name, p
    unregister(name)


@pytest.fixture
def sim() -> Any:
    s = Simulation()
    name = fresh(s.provider)
    s.name = name
    yield name, s
    unregister(name)


# -- which provider gives each role -----------------------------------------------------------------


@pytest.mark.parametrize("value,words", [
    ({"llm": "offline", "image": "offline"}, "no provider for the vision role"),
    ({"llm": "offline", "image": "offline", "vision": "offline", "critic": "x"}, "unknown role 'critic'"),
    ({"llm": "offline", "image": "offline", "judge": "offline"}, "no provider for the vision role"),
    ({"llm": "offline", "image": "offline", "vision": "offline", "judge": 3}, "for the judge role must be a provider"),
    ({"llm": "offline", "image": 3, "vision": "offline"}, "for the image role must be a provider name"),
    ({"llm": "offline", "image": " ", "vision": "offline"}, "for the image role must be 1 to 100"),
    (["offline"], "must be a provider name or an object"),
    ("", "must be 1 to 100"),
])
def test_a_providers_value_that_is_not_a_name_or_a_full_mapping_is_refused_naming_why(value, words):
    with pytest.raises(InvalidRequest) as info:
        check_providers(value)
    assert info.value.field == "providers" and words in info.value.message
    with pytest.raises(InvalidRequest):
        beamkit.params.validate({"prompt": "x", "providers": value})


def test_a_name_gives_every_role_and_a_mapping_one_each(painter, sim):
    name, _ = painter
    roles = resolve({"llm": sim[0], "image": name, "vision": sim[0]})
    assert roles.providers == {"llm": sim[0], "image": name, "vision": sim[0]}
    assert roles.limits["image"] == Limit(concurrency=1) and roles.info["image"] == {"provider": name, "model": "paint-1"}
    assert resolve(sim[0]).providers == dict.fromkeys(ALL, sim[0])
    assert check_providers({"vision": "b", "llm": "a", "image": "c"}) == {"llm": "a", "image": "c", "vision": "b"}
    assert check_providers({"judge": " d ", "vision": "b", "llm": "a", "image": "c"}) == {
        "llm": "a", "image": "c", "vision": "b", "judge": "d"}
    assert "judge" not in resolve(sim[0]).handles  # one name gives the roles a job needs; the vision role judges


def test_an_unknown_provider_or_one_without_the_role_is_refused(painter):
    name, _ = painter
    with pytest.raises(InvalidRequest) as info:
        resolve({"llm": "offline", "image": "no-such-provider", "vision": "offline"})
    assert "unknown provider 'no-such-provider'" in info.value.message and "offline" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        resolve(name)  # offers only images
    assert info.value.message == f"provider '{name}' does not offer the llm role (it offers image)"
    with pytest.raises(InvalidRequest) as info:
        resolve({"llm": "offline", "image": "offline", "vision": "offline", "judge": name})
    assert info.value.message == f"provider '{name}' does not offer the judge role (it offers image)"


class Blind(Provider):
    """Offers the judge role, but its object has no compare."""

    roles = ("judge",)

    def create(self, role: str, options: RoleOptions) -> RoleHandle:
        return Simulation().provider.create("vision", options)


def test_a_judge_role_whose_object_cannot_compare_is_refused_when_the_job_is_made():
    name = fresh(Blind())
    try:
        with pytest.raises(InvalidRequest) as info:
            resolve({"llm": "offline", "image": "offline", "vision": "offline", "judge": name})
        assert info.value.field == "providers" and "cannot compare two pictures" in info.value.message
    finally:
        unregister(name)


# -- declared settings ------------------------------------------------------------------------------


def test_values_are_read_as_their_declared_type(painter, sim):
    name, p = painter
    providers = {"llm": sim[0], "image": name, "vision": sim[0]}
    resolve(providers, {"image": {"steps": "12", "guidance": 3, "tiled": "yes", "extra": '{"a": 1}',
                                  "sampler": "ddim", "negative": "none"}})
    got = p.seen[-1]
    assert (got["steps"], got["guidance"], got["tiled"], got["extra"], got["sampler"]) == (12, 3.0, True, {"a": 1}, "ddim")
    assert got["negative"] is None and got["model"] == "paint-1" and got["token"] is None
    resolve(providers)
    assert p.seen[-1]["negative"] == "blurry"  # not given: the default; "none" above: no value at all


@pytest.mark.parametrize("settings,field,words", [
    ({"steps": "many"}, "steps", "must be a whole number"),
    ({"steps": 2.5}, "steps", "must be a whole number"),
    ({"steps": True}, "steps", "must be a whole number"),
    ({"image": {"steps": 99}}, "image.steps", "must be from 1 to 50"),
    ({"guidance": -1}, "guidance", "must be at least 0"),
    ({"tiled": "sometimes"}, "tiled", "must be true or false"),
    ({"extra": [1]}, "extra", "must be an object"),
    ({"sampler": "heun"}, "sampler", "must be one of euler, ddim"),
    ({"image": {"stpes": 3}}, "image.stpes", "has no setting 'stpes'"),
    ({"llm": {"steps": 3}}, "llm.steps", "llm role has no setting 'steps'"),
    ({"colour": "red"}, "colour", "unknown provider setting 'colour'"),
    ({"image": "fast"}, "image", "must be an object of the image role's settings"),
])
def test_an_unknown_or_mistyped_setting_is_refused_naming_it(painter, sim, settings, field, words):
    with pytest.raises(InvalidRequest) as info:
        resolve({"llm": sim[0], "image": painter[0], "vision": sim[0]}, settings)
    assert info.value.field == field and words in info.value.message and info.value.fatal


def test_a_secret_is_never_quoted_in_an_error(painter, sim):
    with pytest.raises(InvalidRequest) as info:
        resolve({"llm": sim[0], "image": painter[0], "vision": sim[0]}, {"token": ["tok-0123456789-secret"]})
    assert info.value.field == "token" and "tok-0123456789" not in info.value.message
    assert next(s for s in Painter.settings if s.name == "token").describe()["default"] is None


def test_a_role_takes_the_first_value_of_job_role_job_flat_header_server_environment_default(painter, sim, monkeypatch):
    name, p = painter
    providers = {"llm": sim[0], "image": name, "vision": sim[0]}

    def model(settings: Any = None, **kw: Any) -> Any:
        resolve(providers, settings, **kw)
        return p.seen[-1]["model"], p.seen[-1]["token"]

    assert model() == ("paint-1", None)
    monkeypatch.setenv("PAINT_MODEL", "env-model")
    monkeypatch.setenv("PAINT_TOKEN", "env-token")
    assert model() == ("env-model", "env-token")
    server = {name: {"model": "server-flat", "image": {"token": "server-token"}}}
    assert model(server=server) == ("server-flat", "server-token")
    server[name]["image"]["model"] = "server-role"
    assert model(server=server) == ("server-role", "server-token")
    assert model(server=server, headers={"x-paint-token": "header-token"}) == ("server-role", "header-token")
    assert model({"model": "job-flat"}, server=server, headers={"X-Paint-Token": "h"}) == ("job-flat", "h")
    assert model({"model": "job-flat", "image": {"model": "job-role"}}, server=server) == ("job-role", "server-token")
    assert model({"paint_model": "by-its-older-name"}) == ("by-its-older-name", "env-token")


def test_a_flat_setting_goes_to_every_role_whose_provider_declares_it(painter, sim):
    name, p = painter
    before = len(sim[1].created)
    resolve({"llm": sim[0], "image": name, "vision": sim[0]}, {"model": "everywhere", "llm_model": "llm-only"})
    assert p.seen[-1]["model"] == "everywhere"
    made = {o.role: o.settings for o in sim[1].created[before:]}
    assert made["llm"] == {"api_key": None, "llm_model": "llm-only"}  # the sim has no "model": it takes none
    assert made["vision"] == {"api_key": None}


def test_the_server_settings_are_checked_too(painter, sim):
    with pytest.raises(InvalidRequest) as info:
        resolve({"llm": sim[0], "image": painter[0], "vision": sim[0]}, server={painter[0]: {"steps": "x"}})
    assert info.value.field == "steps"
    with pytest.raises(InvalidRequest) as info:
        resolve({"llm": sim[0], "image": painter[0], "vision": sim[0]}, server={painter[0]: {"nope": 1}})
    assert "server's settings" in info.value.message and info.value.field == "nope"


# -- what the engine gets ---------------------------------------------------------------------------


def test_usage_of_every_role_is_added_up():
    a = {"models": {"m": {"calls": 2, "cost": 0.1, "operations": {"expand": 2}}}, "totalCost": 0.1, "currency": "USD",
         "unpriced": ["x"]}
    b = {"models": {"m": {"calls": 3, "cost": 0.2, "operations": {"expand": 1, "refine": 2}}, "n": {"calls": 1}},
         "totalCost": 0.2, "currency": "USD", "unpriced": ["y", "x"]}
    assert merge_usage([a, b]) == {
        "models": {"m": {"calls": 5, "cost": 0.3, "operations": {"expand": 3, "refine": 2}}, "n": {"calls": 1}},
        "totalCost": 0.3, "currency": "USD", "unpriced": ["x", "y"]}
    assert merge_usage([]) == {}


def test_roles_on_different_providers_have_their_own_limiters(painter, sim):
    roles = resolve({"llm": sim[0], "image": painter[0], "vision": sim[0]})
    assert roles.limit_keys == {"llm": f"{sim[0]}:llm", "image": f"{painter[0]}:image", "vision": f"{sim[0]}:vision"}


@pytest.mark.asyncio
async def test_a_job_with_roles_from_two_providers(painter, sim, tmp_path):
    name, p = painter
    providers = {"llm": sim[0], "image": name, "vision": sim[0]}
    job = beamkit.start("a fox", N=3, M=1, iterations=2, seed=3, providers=providers, output=tmp_path,
                        provider_settings={"image": {"model": "paint-2"}})
    events = [e async for e in job.events()]
    result = await job
    assert result.status == "completed" and events[0]["config"]["providers"] == providers
    assert p.painted == 6 and sim[1].count("image") == 0 and sim[1].count("vision") == 6
    assert result.usage["models"]["paint-2"] == {"images": 1, "cost": 0.25} and result.usage["totalCost"] == 0.25
    meta = json.loads((job.folder / "metadata.json").read_text())
    assert meta["config"]["providers"] == providers


# -- process-level open and close -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_provider_is_opened_once_for_jobs_that_start_together_and_closed_with_the_process(sim, tmp_path):
    name, s = sim
    s.open_delay = 0.05  # the jobs' first calls wait for one open, not each its own
    jobs = [beamkit.start("a fox", N=2, M=1, iterations=1, seed=i, providers=name, output=tmp_path) for i in range(3)]
    await asyncio.gather(*jobs)
    assert s.opens == 1 and s.closes == 0
    await beamkit.search("a fox", N=2, M=1, iterations=1, seed=9, providers=name, output=tmp_path)
    assert s.opens == 1
    await registry.close_all()
    assert s.closes == 1
    await beamkit.search("a fox", N=2, M=1, iterations=1, seed=9, providers=name, output=tmp_path)
    assert s.opens == 2  # opened again after a close
    await registry.close_all()


class Failing(Provider):
    roles = ALL

    def __init__(self) -> None:
        self.tries = 0

    def open(self) -> None:
        self.tries += 1
        if self.tries == 1:
            raise OSError("no GPU memory left")

    def create(self, role: str, options: RoleOptions) -> RoleHandle:
        return Simulation().provider.create(role, options)


@pytest.mark.asyncio
async def test_a_provider_that_fails_to_open_fails_the_job_and_is_tried_again_by_the_next(tmp_path):
    p = Failing()
    name = fresh(p)
    try:
        job = beamkit.start("a fox", N=2, M=1, iterations=1, seed=1, providers=name, output=tmp_path)
        events = [e async for e in job.events()]
        assert [e["type"] for e in events] == ["started", "error"]
        assert events[-1]["error"]["code"] == ErrorCode.PROVIDER_ERROR
        assert "could not be opened: OSError: no GPU memory left" in events[-1]["error"]["message"]
        with pytest.raises(BeamkitError):
            await job
        result = await beamkit.search("a fox", N=2, M=1, iterations=1, seed=1, providers=name, output=tmp_path)
        assert result.status == "completed" and p.tries == 2
    finally:
        await registry.close_all()
        unregister(name)


@pytest.mark.asyncio
async def test_the_server_closes_its_providers_when_it_stops(sim, tmp_path):
    name, s = sim
    running = await start_server(tmp_path / "out", name)
    try:
        code, body = await running.json("/api/beam-search", "POST", {"prompt": "a fox", "N": 2, "M": 1, "iterations": 1})
        assert code == 200
        ws = await running.ws()
        await send(ws, {"type": "subscribe", "jobId": body["jobId"]})
        await until_terminal(ws, body["jobId"])
        assert s.opens == 1 and s.closes == 0
    finally:
        await running.server.stop()
    assert s.closes == 1


# -- estimate, for any provider ---------------------------------------------------------------------------


def test_estimate_asks_each_roles_provider(painter, sim):
    name, _ = painter
    est = beamkit.estimate("a fox", N=4, M=2, iterations=2, providers={"llm": sim[0], "image": name, "vision": sim[0]},
                           provider_settings={"image": {"steps": 10}})
    assert est["calls"]["image"] == 8 and est["cost"]["image"] == pytest.approx(0.8)
    assert est["models"] == {"image": "paint-1"} and est["totalCost"] == pytest.approx(0.8)
    assert est["note"] == f"not priced, counted at 0: llm ({sim[0]}), vision ({sim[0]})"
    offline = beamkit.estimate("a fox", N=4, M=2, iterations=2)
    assert offline["totalCost"] == 0.0 and "note" not in offline and offline["models"]["image"] == "offline-painter"
    with pytest.raises(InvalidRequest):
        beamkit.estimate("a fox", providers=name, provider_settings={"steps": 0})


# -- the command line --------------------------------------------------------------------------------------


def test_cli_values_for_providers_and_settings():
    assert parse_providers("openai") == "openai"
    assert parse_providers("llm=openai, image=offline,vision=openai") == {"llm": "openai", "image": "offline",
                                                                         "vision": "openai"}
    assert parse_set(["image.model=flux", "model=m", "limits.image=3", "timeout=30"]) == {
        "image": {"model": "flux"}, "model": "m", "limits.image": "3", "timeout": "30"}
    for bad in ("llm=", "llm=a,llm=b", "=x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_providers(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_set(["model"])


def test_cli_run_takes_a_provider_per_role_and_settings(painter, sim, tmp_path, capsys):
    from beamkit.cli import main

    name, p = painter
    code = main(["run", "a fox", "--N", "2", "--M", "1", "--iterations", "1", "--seed", "1", "--quiet", "--json",
                 "--providers", f"llm={sim[0]},image={name},vision={sim[0]}", "--set", "image.steps=9",
                 "--set", "model=cli-model", "--output", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    assert p.seen[-1]["steps"] == 9 and p.seen[-1]["model"] == "cli-model"
    assert json.loads(capsys.readouterr().out)["candidatesEvaluated"] == 2
    code = main(["run", "a fox", "--providers", f"llm={sim[0]},image={name}", "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "no provider for the vision role" in err and "INVALID_REQUEST" in err
    code = main(["run", "a fox", "--providers", name, "--output", str(tmp_path)])
    assert code == 2 and "does not offer the llm role" in capsys.readouterr().err
    code = main(["run", "a fox", "--providers", f"llm={sim[0]},image={name},vision={sim[0]}", "--set",
                 "image.steps=lots", "--output", str(tmp_path / "never")])
    assert code == 2 and "'image.steps' must be a whole number" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


# -- REST ----------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rest_takes_a_provider_per_role_and_lists_providers(painter, sim, tmp_path):
    name, p = painter
    running = await start_server(tmp_path / "out", sim[0])
    try:
        code, body = await running.json("/api/providers")
        assert code == 200
        rows = {r["name"]: r for r in body["providers"]}
        assert rows[name]["roles"] == ["image"] and rows[name]["available"] is True
        token = next(s for s in rows[name]["settings"] if s["name"] == "token")
        assert token["secret"] and token["header"] == "X-Paint-Token" and token["default"] is None
        assert rows["openai"]["origin"] == "builtin" and "X-OpenAI-API-Key" in {s["header"] for s in rows["openai"]["settings"]}

        providers = {"llm": sim[0], "image": name, "vision": sim[0]}
        job = {"prompt": "a fox", "N": 2, "M": 1, "iterations": 1, "seed": 2, "providers": providers}
        code, body = await running.json("/api/beam-search", "POST", job, headers={"X-Paint-Token": "tok-per-request"})
        assert code == 200, body
        assert p.seen[-1]["token"] == "tok-per-request"  # a header a provider declares reaches that provider
        ws = await running.ws()
        await send(ws, {"type": "subscribe", "jobId": body["jobId"]})
        events = await until_terminal(ws, body["jobId"])
        assert events[1]["type"] == "started" and events[1]["config"]["providers"] == providers
        assert events[-1]["type"] == "complete"
        code, status = await running.json(f"/api/job/{body['jobId']}")
        assert status["config"]["providers"] == providers
        assert "tok-per-request" not in json.dumps(events) + json.dumps(status)

        for bad, words in (({"llm": sim[0], "vision": sim[0]}, "no provider for the image role"),
                           ({"llm": sim[0], "image": "nope", "vision": sim[0]}, "unknown provider 'nope'"),
                           (name, "does not offer the llm role")):
            code, err = await running.json("/api/beam-search", "POST", {"prompt": "a fox", "providers": bad})
            assert code == 400 and err["code"] == "INVALID_REQUEST" and err["field"] == "providers"
            assert words in err["error"]
        assert len(list((tmp_path / "out" / "sessions").iterdir())) == 1  # refused requests left nothing
    finally:
        await running.server.stop()


class NeedsAGpu(Provider):
    roles = ("image",)
    requires = ("no_such_gpu_module",)
    extra = "diffusers"


@pytest.mark.asyncio
async def test_an_unavailable_provider_is_listed_and_refused_with_its_install_hint(sim, tmp_path):
    name = fresh(NeedsAGpu())
    running = await start_server(tmp_path / "out", sim[0])
    try:
        code, body = await running.json("/api/providers")
        row = next(r for r in body["providers"] if r["name"] == name)
        assert row == {**row, "available": False, "reason": "the module 'no_such_gpu_module' is not installed",
                       "install": "pip install beamkit[diffusers]", "roles": ["image"]}
        providers = {"llm": sim[0], "image": name, "vision": sim[0]}
        code, err = await running.json("/api/beam-search", "POST", {"prompt": "a fox", "providers": providers})
        assert code == 400 and err["code"] == "INVALID_REQUEST"
        assert err["error"] == (f"for the image role: provider '{name}' is not available: the module "
                                "'no_such_gpu_module' is not installed; pip install beamkit[diffusers]")
    finally:
        await running.server.stop()
        unregister(name)


def test_plan_builds_nothing(painter, sim):
    before = len(painter[1].seen)
    plans = plan({"llm": sim[0], "image": painter[0], "vision": sim[0]}, {"steps": 3})
    assert plans["image"].options.settings["steps"] == 3 and plans["image"].provider is painter[1]
    assert len(painter[1].seen) == before


def test_register_takes_a_provider_class_or_instance_and_nothing_else():
    name = fresh(Painter)  # a class is made once
    try:
        assert isinstance(registry.get(name), Painter)
        with pytest.raises(TypeError):
            register(name, lambda options: None)  # type: ignore[arg-type]
    finally:
        unregister(name)
