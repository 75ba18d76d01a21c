"""Stopping rules (stop_when), seed search (seeds_per_prompt) and unexpanded jobs (issue 14, items 3 and 5)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
from engine_helpers import run_job, use

import beamkit
from beamkit.errors import InvalidRequest, ProviderError
from beamkit.estimate import calls
from beamkit.params import json_schema, validate
from beamkit.providers import register
from beamkit.providers.base import RoleHandle, RoleOptions
from beamkit.providers.simulated import SimulatedProvider, Simulation

PROMPT = "a forest at dawn"


# -- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"stop_when": 3},
    {"stop_when": {"patience": 2}},
    {"stop_when": {"plateau": 0}},
    {"stop_when": {"plateau": 1.5}},
    {"stop_when": {"plateau": True}},
    {"stop_when": {"score": 101}},
    {"stop_when": {"score": "95"}},
    {"stop_when": {"images": 0}},
    {"stop_when": {"usd": 0}},
    {"stop_when": {"usd": float("inf")}},
    {"stop_when": {"images": 2}, "seeds_per_prompt": 3},
])
def test_bad_stop_when_names_the_field(body):
    with pytest.raises(InvalidRequest) as info:
        validate({"prompt": "x", **body})
    assert info.value.field == "stop_when"


@pytest.mark.parametrize("body,field", [
    ({"seeds_per_prompt": 0}, "seeds_per_prompt"),
    ({"seeds_per_prompt": 65}, "seeds_per_prompt"),
    ({"seeds_per_prompt": True}, "seeds_per_prompt"),
    ({"unexpanded": 1}, "unexpanded"),
    ({"unexpanded": "yes"}, "unexpanded"),
    ({"unexpanded": True}, "unexpanded"),  # with the default 3 iterations
])
def test_bad_seed_search_and_mode_name_the_field(body, field):
    with pytest.raises(InvalidRequest) as info:
        validate({"prompt": "x", **body})
    assert info.value.field == field


def test_good_values_are_normalised_and_in_the_schema():
    p = validate({"prompt": "x", "stop_when": {"plateau": 2.0, "score": 95, "images": 30, "usd": 0.5},
                  "seeds_per_prompt": 8, "unexpanded": True, "iterations": 1})
    assert p.stop_when == {"plateau": 2, "score": 95.0, "images": 30, "usd": 0.5}
    assert isinstance(p.stop_when["plateau"], int) and isinstance(p.stop_when["score"], float)
    assert (p.seeds_per_prompt, p.unexpanded) == (8, True)
    assert validate({"prompt": "x", "stop_when": {}}).stop_when is None  # no rule: run every iteration
    d = validate({"prompt": "x"})
    assert (d.stop_when, d.seeds_per_prompt, d.unexpanded) == (None, 1, False)
    props = json_schema()["properties"]
    assert set(props["stop_when"]["properties"]) == {"plateau", "score", "images", "usd"}
    assert props["seeds_per_prompt"]["maximum"] == 64 and props["unexpanded"]["type"] == "boolean"


def test_the_estimate_counts_every_seed_and_no_expansion_when_unexpanded():
    c = calls(4, 2, 3, seeds_per_prompt=3)
    assert c["image"] == c["vision"] == 36 and c["combine"] == 12
    u = calls(5, 1, 1, unexpanded=True)
    assert u["expand"] == u["combine"] == u["llm"] == 0 and u["image"] == 5


# -- stopping rules ----------------------------------------------------------------------------


async def test_plateau_stops_after_k_iterations_without_a_better_best(tmp_path):
    sim = Simulation(score=lambda prompt: (60.0, 5.0))  # every picture scores the same: no improvement ever
    job, events = await run_job(sim, tmp_path, N=3, M=2, iterations=6, stop_when={"plateau": 2})
    result = await job
    complete = events[-1]
    assert complete["type"] == "complete" and complete["result"]["stoppedBy"] == "plateau"
    assert result.status == "completed" and result.stopped_by == "plateau"
    assert result.iterations_done == 3  # iteration 0, then two that did not improve on it
    assert sim.count("image") == 9
    assert len(result.best_by_iteration()) == 3


async def test_score_stops_once_the_best_reaches_it_and_says_so_everywhere(tmp_path):
    job, events = await run_job(Simulation(), tmp_path, N=4, M=2, iterations=5, stop_when={"score": 1})
    result = await job
    assert result.iterations_done == 1 and result.best.total_score >= 1
    assert events[-1]["result"]["stoppedBy"] == "score"
    meta = json.loads((job.folder / "metadata.json").read_text())
    assert meta["status"] == "completed" and meta["stoppedBy"] == "score"
    loaded = beamkit.load(job.folder)
    assert loaded.stopped_by == "score" and loaded.to_dict()["stoppedBy"] == "score"


async def test_a_job_that_runs_every_iteration_was_stopped_by_nothing(tmp_path):
    job, events = await run_job(Simulation(), tmp_path, N=3, M=1, iterations=3, stop_when={"score": 100, "plateau": 20})
    result = await job
    assert result.iterations_done == 3 and result.stopped_by is None
    assert events[-1]["result"]["stoppedBy"] is None


async def test_the_image_budget_is_never_exceeded_and_the_last_iteration_shrinks_to_fit(tmp_path):
    sim = Simulation()
    # 4 candidates x 2 seeds = 8 pictures in iteration 0; 2 left: one candidate (one parent) in iteration 1
    job, _ = await run_job(sim, tmp_path, N=4, M=3, iterations=3, seeds_per_prompt=2, stop_when={"images": 10})
    result = await job
    assert result.stopped_by == "images" and result.status == "completed"
    assert sim.count("image") == 10 and sim.count("vision") == 10
    assert [sum(1 for c in result.candidates if c.iteration == i) for i in range(2)] == [4, 1]
    assert sim.count("critique") == 1  # parents left without a child are not critiqued
    assert result.iterations_done == 2


async def test_failed_image_calls_count_against_the_image_budget(tmp_path):
    made = itertools.count()

    def every_third_image_fails(op: str, args: tuple) -> ProviderError | None:
        return ProviderError("simulated image failure") if op == "image" and next(made) % 3 == 2 else None

    sim = Simulation(fault=every_third_image_fails)
    job, _ = await run_job(sim, tmp_path, N=5, M=2, iterations=4, stop_when={"images": 12})
    result = await job
    assert sim.count("image") == 12 and result.stopped_by == "images"
    assert sum(1 for c in result.candidates if c.status == "failed") == 4
    assert len(result.candidates) == 12


class PricedSimulation(SimulatedProvider):
    """The simulated services, with each picture priced as a paid image API prices it."""

    PRICE = 0.04

    def create(self, role: str, options: RoleOptions) -> RoleHandle:
        handle = super().create(role, options)
        if role == "image":
            sim = self.sim
            handle.usage = lambda: {"totalCost": self.PRICE * sim.count("image"), "currency": "USD"}
        return handle


async def test_a_dollar_budget_stops_at_the_iteration_end_that_spends_it(tmp_path):
    sim = Simulation()
    register("priced-sim", PricedSimulation(sim))
    # 3 pictures an iteration cost 0.12: after two iterations 0.24 >= 0.2
    result = await beamkit.start(PROMPT, N=3, M=1, iterations=5, seed=1, providers="priced-sim", output=tmp_path,
                                 stop_when={"usd": 0.2})
    assert result.stopped_by == "usd" and result.iterations_done == 2
    assert result.usage["totalCost"] == pytest.approx(0.24)
    assert sim.count("image") == 6


# -- seed search -------------------------------------------------------------------------------


async def test_each_combined_prompt_is_rendered_with_k_seeds_and_the_best_kept(tmp_path):
    job = beamkit.start(PROMPT, N=3, M=2, iterations=2, seed=3, output=tmp_path, seeds_per_prompt=3)
    result = await job
    plain = await beamkit.start(PROMPT, N=3, M=2, iterations=1, seed=3, output=tmp_path)
    assert result.usage["models"]["offline-painter"]["images"] == 3 * 2 * 3
    assert result.usage["models"]["offline-vision"]["calls"] == 3 * 2 * 3
    spread = False
    for c in result.candidates:
        search = c.image_metadata["seedSearch"]
        tried = search["seeds"]
        assert len(tried) == 3 and len({t["seed"] for t in tried}) == 3
        best = max(tried, key=lambda t: t["totalScore"])
        assert search["chosen"] == best["seed"] and c.total_score == best["totalScore"]
        spread = spread or len({t["totalScore"] for t in tried}) > 1
    assert spread, "different seeds should give different pictures and scores in the offline world"
    # seed 0 of the search is the picture a plain job renders, so more seeds can only add choices
    for c in plain.candidates:
        first = result.candidate(c.key).image_metadata["seedSearch"]["seeds"][0]
        assert first["totalScore"] == c.total_score
    on_disk = json.loads((job.folder / "metadata.json").read_text())
    assert all("seedSearch" in c["imageMetadata"] for c in on_disk["candidates"])


async def test_a_failed_seed_costs_that_seed_not_the_candidate(tmp_path):
    sim = Simulation(fail_rate=0.4)
    job, _ = await run_job(sim, tmp_path, N=6, M=2, iterations=1, seeds_per_prompt=4)
    result = await job
    tried = [t for c in result.candidates if c.ok for t in c.image_metadata["seedSearch"]["seeds"]]
    failed = [t for t in tried if "error" in t]
    assert failed and all(t["error"]["code"] == "PROVIDER_ERROR" for t in failed)
    for c in result.candidates:
        if c.ok:
            scored = [t["totalScore"] for t in c.image_metadata["seedSearch"]["seeds"] if "totalScore" in t]
            assert scored and c.total_score == max(scored)


# -- unexpanded ----------------------------------------------------------------------------------


async def test_unexpanded_renders_the_prompt_as_given_with_no_llm_call(tmp_path):
    sim = Simulation()
    job, _ = await run_job(sim, tmp_path, N=4, M=1, iterations=1, unexpanded=True)
    result = await job
    assert sim.count("expand") == sim.count("combine") == sim.count("critique") == 0
    assert sim.count("image") == 4
    assert all(c.combined_prompt == PROMPT and c.what_prompt == PROMPT and c.how_prompt == "" for c in result.candidates)


async def test_the_sweep_baselines_none_and_rewrite_once_run_at_equal_image_budget(tmp_path):
    from beamkit.sweeps import baselines

    config = {"N": 3, "M": 1, "iterations": 2}
    for kind, llm_calls in (("none", 0), ("rewrite-once", 3)):  # one expansion: WHAT, HOW, combine
        sim = Simulation()
        params = baselines.derive(kind, config)
        result = await beamkit.start(PROMPT, providers=use(sim), output=tmp_path, seed=1, **params)
        assert sim.count("image") == baselines.budget(config) == 6
        assert sim.count("expand") + sim.count("combine") + sim.count("critique") == llm_calls
        assert len(result.candidates) == 1 and result.stopped_by is None


def test_the_cli_takes_stop_when_and_seeds_per_prompt(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "beamkit", "run", PROMPT, "--N", "3", "--M", "1", "--iterations", "4", "--seed", "1",
         "--stop-when", "score=1", "--seeds-per-prompt", "2", "--output", str(tmp_path), "--json", "--quiet"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["stoppedBy"] == "score" and result["iterations"] == 1
    bad = subprocess.run([sys.executable, "-m", "beamkit", "run", PROMPT, "--stop-when", "plateau"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--stop-when" in bad.stderr
