"""The openai judge (``compare``), the optional "judge" role, and what ``estimate`` counts of a tournament.

Every comparison goes through the real ``openai.AsyncOpenAI`` client to the local test server
(tests/openai_server.py), whose judge answers "the first picture" whatever it is shown, or garbage.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from openai_server import TEST_KEY, FakeOpenAI, make_png, openai_server  # noqa: F401 - the fixture
from server_helpers import send, start_server, until_terminal

import beamkit
from beamkit.engine.tournament import comparisons, upper_bound
from beamkit.errors import BeamkitError, ErrorCode, InvalidRequest
from beamkit.estimate import calls
from beamkit.params import json_schema, validate
from beamkit.providers import Limit, register, resolve, unregister
from beamkit.providers.base import Verdict
from beamkit.providers.cli import parse_set
from beamkit.providers.openai.parse import ReplyError, parse_verdict
from beamkit.providers.simulated import Simulation

USER = "a red fox sleeping in fresh snow"
OFFLINE = {"llm": "offline", "image": "offline"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No key, URL, model or limit from the machine's environment."""
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "BEAMKIT_")):
            monkeypatch.delenv(name)


def chat(server: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {"api_key": TEST_KEY, "base_url": server.base_url, "max_retries": 0, **extra}


def compared(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "comparison"]


def verdicts(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The comparisons of a job, without what changes from run to run, in a fixed order
    (merges of one level run at once, so their events may come in any order)."""
    keep = [(e["iteration"], json.dumps(e["a"]), json.dumps(e["b"]), e["shownFirst"], e["winner"],
             json.dumps(e.get("votes")), e.get("fallback")) for e in compared(events)]
    return sorted(keep)


# --- reading a verdict ----------------------------------------------------------------------------


@pytest.mark.parametrize("text,winner", [
    ('{"winner": "first", "reason": "sharper"}', "a"),
    ('{"winner": "second", "reason": "the fox is larger"}', "b"),
    ('{"winner": "FIRST"}', "a"),
    ('{"winner": "Second"}', "b"),
    ('{"winner": "a"}', "a"),
    ('{"winner": "B"}', "b"),
    ('{"winner": 1}', "a"),
    ('{"winner": "2"}', "b"),
    ('{"winner": "left"}', "a"),
    ('{"winner": "Right"}', "b"),
    ('{"Winner": "the second image", "Reason": "x"}', "b"),
    ('{"winner": "Image #1"}', "a"),
    ('{"result": {"winner": "second"}}', "b"),
    ('Here is my verdict:\n```json\n{"winner": "second", "reason": "calmer light"}\n```', "b"),
    ('I compared them. {"winner": "first", "reason": "clearer subject"} Hope this helps.', "a"),
    ("Second", "b"),
    ("A.", "a"),
    ("The first picture shows the request better.", "a"),
    ("Winner: picture B. The first one lacks the snow.", "b"),
    ("The winner is the second.", "b"),
])
def test_a_verdict_is_read_from_many_spellings(text, winner):
    verdict = parse_verdict(text)
    assert isinstance(verdict, Verdict) and verdict.winner == winner


def test_a_verdicts_reason_is_kept():
    assert parse_verdict('{"winner": "first", "reason": "  the fox\\n is larger "}').reason == "the fox is larger"
    assert "first picture" in parse_verdict("The first picture is better.").reason


@pytest.mark.parametrize("text,reason", [
    ("", "empty"),
    (None, "empty"),
    ('{"winner": "both"}', "neither picture"),
    ('{"winner": "tie", "reason": "equal"}', "neither picture"),
    ('{"winner": "the first and the second"}', "both pictures"),
    ('{"winner": true}', "not a picture"),
    ('{"winner": 3}', "not a picture"),
    ('{"winner": null}', "not a picture"),
    ('{"status": "ok", "result": "processed"}', "no 'winner'"),
    ("Both pictures have their merits.", "neither picture"),
    ("The first is sharp, but the second is closer to the request.", "both pictures"),
    ("I cannot tell.", "neither picture"),
])
def test_a_verdict_that_names_both_pictures_or_neither_is_refused(text, reason):
    with pytest.raises(ReplyError) as info:
        parse_verdict(text)
    assert reason in str(info.value)


# --- one comparison over HTTP ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_compare_sends_both_pictures_in_one_labelled_call_and_counts_its_usage(openai_server):
    roles = resolve("openai", chat(openai_server), seed=3)
    first, second = make_png(seed=1), make_png(seed=2)
    try:
        verdict = await roles.vision.compare(first, second, USER, seed=42)
        assert verdict == Verdict("a", "The first picture shows the request better.")
        openai_server.judge = "second"
        assert (await roles.judge.compare(first, second, USER, seed=43)).winner == "b"  # type: ignore[union-attr]
    finally:
        await roles.aclose()
    assert roles.judge is roles.vision  # no judge role: the vision object judges
    recs = openai_server.of("compare")
    assert len(recs) == 2 == len(openai_server.requests) and {r.kind for r in recs} == {"vision"}
    body = recs[0].body
    assert body["seed"] == 42 and body["temperature"] == 0.0
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "image_comparison"
    parts = body["messages"][-1]["content"]
    kinds = [p["type"] for p in parts]
    assert kinds == ["text", "text", "image_url", "text", "image_url"]  # instructions, then first, then second
    assert "FIRST" in parts[1]["text"] and "SECOND" in parts[3]["text"] and USER in parts[0]["text"]
    assert parts[2]["image_url"]["url"] != parts[4]["image_url"]["url"]
    assert all(p["image_url"]["detail"] == "low" for p in parts if p["type"] == "image_url")
    usage = roles.usage()["models"]["gpt-4o-mini"]
    assert usage["calls"] == 2 and usage["inputTokens"] > 0 and usage["outputTokens"] > 0 and usage["cost"] > 0


@pytest.mark.asyncio
async def test_compare_steps_down_the_answer_format_as_the_vision_analysis_does(openai_server):
    openai_server.json_object = "only"  # json_schema refused with a 400
    roles = resolve("openai", chat(openai_server))
    try:
        assert (await roles.vision.compare(make_png(), make_png(seed=5), USER, seed=1)).winner == "a"
        await roles.vision.compare(make_png(), make_png(seed=5), USER, seed=2)
    finally:
        await roles.aclose()
    formats = [r.body["response_format"]["type"] for r in openai_server.requests]
    assert formats == ["json_schema", "json_object", "json_object"]  # the refusal is remembered for the model


@pytest.mark.asyncio
async def test_an_unreadable_verdict_is_a_provider_error_with_the_reason(openai_server):
    openai_server.judge = "garbage"
    roles = resolve("openai", chat(openai_server))
    try:
        with pytest.raises(BeamkitError) as info:
            await roles.vision.compare(make_png(), make_png(seed=5), USER, seed=1)
    finally:
        await roles.aclose()
    assert info.value.code == ErrorCode.PROVIDER_ERROR and not info.value.fatal
    assert "no readable verdict" in info.value.message and "neither picture" in info.value.message
    assert len(openai_server.requests) == 1  # not asked again: the tournament counts it as no vote


# --- tournament jobs against the always-first judge ---------------------------------------------------


async def _tournament(server: FakeOpenAI, output: Path, *, votes: int = 1, seed: int = 7,
                      providers: dict[str, str] | None = None, settings: dict[str, Any] | None = None,
                      ) -> tuple[beamkit.Result, list[dict[str, Any]]]:
    job = beamkit.start(USER, N=6, M=2, iterations=2, seed=seed, ranking="tournament", votes=votes,
                        providers=providers or {**OFFLINE, "vision": "openai"}, output=output,
                        provider_settings=settings or chat(server))
    events = [e async for e in job.events()]
    return await job, events


@pytest.mark.asyncio
async def test_a_judge_that_always_picks_the_first_picture_gains_nothing(openai_server, tmp_path):
    result, events = await _tournament(openai_server, tmp_path)
    assert result.status == "completed"
    seen = compared(events)
    assert seen and len(openai_server.of("compare")) == len(seen)
    # The verdict follows the picture shown first, whichever candidate that was ...
    assert all(e["winner"] == e["shownFirst"] for e in seen)
    # ... and each order is shown, so neither of the two the ranking asked about is favoured.
    assert {e["shownFirst"] for e in seen} == {"a", "b"}
    assert {e["winner"] for e in seen} == {"a", "b"}
    assert all(e["reason"] == "The first picture shows the request better." for e in seen)
    assert all("fallback" not in e for e in seen)


@pytest.mark.asyncio
async def test_votes_ask_each_pair_that_many_times(openai_server, tmp_path):
    _, events = await _tournament(openai_server, tmp_path, votes=3)
    seen = compared(events)
    assert seen and len(openai_server.of("compare")) == 3 * len(seen)
    for e in seen:
        shown = [v["shownFirst"] for v in e["votes"]]
        assert len(shown) == 3 and all(v["winner"] == v["shownFirst"] for v in e["votes"])
        assert e["winner"] == max(("a", "b"), key=shown.count)  # the majority of the positions shown first
    seeds = [r.body["seed"] for r in openai_server.of("compare")]
    assert len(set(seeds)) == len(seeds)  # each vote its own seed


@pytest.mark.asyncio
async def test_the_same_seed_gives_the_same_verdicts(openai_server, tmp_path):
    _, first = await _tournament(openai_server, tmp_path / "a", votes=3, seed=11)
    _, again = await _tournament(openai_server, tmp_path / "b", votes=3, seed=11)
    _, other = await _tournament(openai_server, tmp_path / "c", votes=3, seed=12)
    assert verdicts(first) and verdicts(first) == verdicts(again)
    assert verdicts(first) != verdicts(other)


@pytest.mark.asyncio
async def test_a_judge_answering_garbage_does_not_end_the_job_the_score_decides(openai_server, tmp_path):
    openai_server.judge = "garbage"
    result, events = await _tournament(openai_server, tmp_path)
    assert result.status == "completed" and all(c.ok for c in result.candidates)
    seen = compared(events)
    assert seen and all(e["fallback"] == "score" for e in seen)
    assert all("no readable verdict" in e["reason"] for e in seen)
    by_key = {(c.iteration, c.candidate_id): c for c in result.candidates}
    for e in seen:  # the absolute score (then age) decided each pair
        a, b = (by_key[(x["iteration"], x["candidateId"])] for x in (e["a"], e["b"]))
        assert e["winner"] == ("a" if a.rank_key() < b.rank_key() else "b")


# --- the "judge" role ----------------------------------------------------------------------------------


def test_the_judge_role_is_optional_in_a_mapping():
    mapping = {**OFFLINE, "vision": "offline", "judge": "openai"}
    assert validate({"prompt": "x", "providers": mapping}).providers == mapping
    assert validate({"prompt": "x", "providers": {**OFFLINE, "vision": "offline"}}).providers == {
        **OFFLINE, "vision": "offline"}
    schema = json_schema()["properties"]["providers"]["oneOf"][1]
    assert schema["required"] == ["llm", "image", "vision"] and set(schema["properties"]) == {
        "llm", "image", "vision", "judge"}
    with pytest.raises(InvalidRequest) as info:
        validate({"prompt": "x", "providers": {**OFFLINE, "judge": "offline"}})
    assert "no provider for the vision role" in info.value.message
    assert parse_set(["judge.model=m", "vision.detail=high"]) == {"judge": {"model": "m"}, "vision": {"detail": "high"}}


@pytest.mark.asyncio
async def test_a_judge_role_has_its_own_client_settings_limits_and_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("BEAMKIT_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("BEAMKIT_JUDGE_API_KEY", "sk-judge-only-0123456789")
    monkeypatch.setenv("BEAMKIT_JUDGE_MODEL", "env-judge")
    monkeypatch.setenv("BEAMKIT_VISION_MODEL", "env-vision")
    roles = resolve({**OFFLINE, "vision": "openai", "judge": "openai"})
    per_role = resolve({**OFFLINE, "vision": "offline", "judge": "openai"},
                       {"judge": {"model": "set-judge", "concurrency": 2, "detail": "high"}})
    await roles.aclose()
    await per_role.aclose()
    assert roles.judge is roles.handles["judge"].impl and roles.judge is not roles.vision
    assert roles.info["judge"]["model"] == "env-judge" and roles.info["judge"]["baseUrl"] == "http://127.0.0.1:9/v1"
    assert roles.info["vision"]["model"] == "env-vision" and roles.info["vision"]["baseUrl"] is None
    assert roles.limits["judge"] == Limit(4) and roles.limit_keys["judge"] == "openai:judge:http://127.0.0.1:9/v1"
    assert roles.handles["judge"].impl._b.config.api_key == "sk-judge-only-0123456789"
    assert per_role.info["judge"]["model"] == "set-judge" and per_role.info["judge"]["detail"] == "high"
    assert per_role.limits["judge"] == Limit(2)
    with pytest.raises(InvalidRequest) as info:  # settings for a judge the job does not name would go nowhere
        resolve({**OFFLINE, "vision": "offline"}, {"judge": {"model": "x"}})
    assert info.value.field == "judge" and "names no judge" in info.value.message


@pytest.mark.asyncio
async def test_a_judge_role_of_its_own_judges_on_its_own_model(openai_server, tmp_path):
    settings = {"api_key": TEST_KEY, "base_url": openai_server.base_url, "judge": {"model": "judge-model"}}
    result, events = await _tournament(openai_server, tmp_path, votes=3, settings=settings,
                                       providers={**OFFLINE, "vision": "openai", "judge": "openai"})
    assert events[0]["config"]["providers"] == {**OFFLINE, "vision": "openai", "judge": "openai"}
    compares, looks = openai_server.of("compare"), [r for r in openai_server.requests if r.operation == "vision"]
    assert compares and {r.body["model"] for r in compares} == {"judge-model"}
    assert looks and {r.body["model"] for r in looks} == {"gpt-4o-mini"}
    assert len(compares) == 3 * len(compared(events))
    assert result.usage["models"]["judge-model"]["calls"] == len(compares)
    meta = json.loads((result.folder / "metadata.json").read_text())
    assert meta["config"]["providers"]["judge"] == "openai"


@pytest.mark.asyncio
async def test_the_judge_role_from_the_command_line(openai_server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BEAMKIT_"))}
    env.update(BEAMKIT_JUDGE_BASE_URL=openai_server.base_url, BEAMKIT_JUDGE_API_KEY=TEST_KEY)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "beamkit", "run", USER, "--N", "3", "--M", "1", "--iterations", "2", "--seed", "4",
        "--ranking", "tournament", "--providers", "llm=offline,image=offline,vision=offline,judge=openai",
        "--set", "judge.model=cli-judge", "--json", "--quiet", "--output", str(tmp_path),
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    data = json.loads(out)
    assert openai_server.requests and {r.operation for r in openai_server.requests} == {"compare"}
    assert {r.body["model"] for r in openai_server.requests} == {"cli-judge"}
    assert data["usage"]["models"]["cli-judge"]["calls"] == len(openai_server.requests)


def test_the_command_line_refuses_a_judge_it_cannot_use(tmp_path, capsys):
    from beamkit.cli import main

    base = ["run", "a fox", "--ranking", "tournament", "--output", str(tmp_path / "never"), "--providers"]
    assert main([*base, "llm=offline,image=offline,vision=offline,judge=nope"]) == 2
    assert "for the judge role: unknown provider 'nope'" in capsys.readouterr().err
    assert main([*base, "llm=offline,image=offline,vision=offline", "--set", "judge.model=x"]) == 2
    assert "names no judge" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


@pytest.fixture
def sim() -> Any:
    """A provider of llm, image and vision whose vision object cannot compare pictures."""
    s = Simulation()
    name = "judge-sim"
    register(name, s.provider)
    yield name
    unregister(name)


@pytest.mark.asyncio
async def test_rest_takes_a_judge_role_lists_judges_and_refuses_one_that_cannot_judge(openai_server, sim, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setenv("BEAMKIT_JUDGE_BASE_URL", openai_server.base_url)
    running = await start_server(tmp_path / "out", "offline")
    try:
        code, listing = await running.json("/api/providers")
        rows = {r["name"]: r for r in listing["providers"]}
        assert code == 200 and "judge" in rows["openai"]["roles"] and "judge" in rows["offline"]["roles"]
        assert "judge" not in rows[sim]["roles"]

        providers = {**OFFLINE, "vision": "offline", "judge": "openai"}
        job = {"prompt": USER, "N": 3, "M": 1, "iterations": 2, "seed": 2, "ranking": "tournament",
               "providers": providers}
        code, body = await running.json("/api/beam-search", "POST", job, headers={"X-OpenAI-API-Key": TEST_KEY})
        assert code == 200, body
        ws = await running.ws()
        await send(ws, {"type": "subscribe", "jobId": body["jobId"]})
        events = await until_terminal(ws, body["jobId"])
        assert events[-1]["type"] == "complete" and compared(events)
        assert events[1]["config"]["providers"] == providers
        assert {r.operation for r in openai_server.requests} == {"compare"}

        refused = [
            ({**providers, "judge": "nope"}, "for the judge role: unknown provider 'nope'"),
            ({**providers, "judge": sim}, f"provider '{sim}' does not offer the judge role"),
            ({**providers, "judge": "offline", "critic": "offline"}, "unknown role 'critic'"),
            ({**OFFLINE, "vision": sim}, "needs a judge"),  # no judge role, and the vision object cannot compare
        ]
        for bad, words in refused:
            code, err = await running.json("/api/beam-search", "POST", {**job, "providers": bad})
            assert code == 400 and err["code"] == "INVALID_REQUEST" and err["field"] == "providers", err
            assert words in err["error"]
        assert "judge role" in err["error"]
        assert len(list((tmp_path / "out" / "sessions").iterdir())) == 1  # the refused requests left nothing
    finally:
        await running.server.stop()


# --- estimate -------------------------------------------------------------------------------------------


def test_the_bound_is_the_merge_tournaments_and_holds_a_real_offline_job(tmp_path):
    assert comparisons(9, 3, 3) == [upper_bound(9, 3), upper_bound(12, 3), upper_bound(12, 3)]
    events: list[dict[str, Any]] = []
    beamkit.run(USER, N=9, M=3, iterations=2, seed=5, ranking="tournament", output=os.fspath(tmp_path),
                on_event=events.append)
    asked = [sum(1 for e in compared(events) if e["iteration"] == i) for i in range(2)]
    bound = comparisons(9, 3, 2)
    assert all(0 < n <= b for n, b in zip(asked, bound)), (asked, bound)
    assert sum(bound) <= 2 * sum(asked)  # an upper bound, and not a loose one
    est = beamkit.estimate(USER, N=9, M=3, iterations=2, ranking="tournament", votes=3)
    assert est["calls"]["compare"] == 3 * sum(bound) and est["calls"]["total"] == calls(9, 3, 2)["total"] + 3 * sum(bound)
    assert est["assumptions"]["comparisons"]["perIteration"] == bound


def test_estimate_prices_comparisons_on_the_role_that_judges():
    plain = beamkit.estimate(USER, N=9, M=3, iterations=3, providers="openai")
    assert plain["calls"]["compare"] == 0 and plain["cost"]["compare"] == 0.0
    by_vision = beamkit.estimate(USER, N=9, M=3, iterations=3, providers="openai", ranking="tournament")
    n = by_vision["calls"]["compare"]
    assert n == sum(comparisons(9, 3, 3)) and by_vision["assumptions"]["comparisons"]["judgedBy"] == "vision"
    assert by_vision["cost"]["compare"] > 0
    assert by_vision["totalCost"] == pytest.approx(plain["totalCost"] + by_vision["cost"]["compare"], abs=1e-3)
    tokens = by_vision["assumptions"]["tokensPerCall"]
    assert tokens["compare"]["input"] > 2 * 2833 and tokens["compare"]["output"] < tokens["vision"]["output"]
    # two pictures in and a short answer out: dearer per call than one analysis
    assert by_vision["cost"]["compare"] / n > by_vision["cost"]["vision"] / by_vision["calls"]["vision"]

    own = beamkit.estimate(USER, N=9, M=3, iterations=3, ranking="tournament", votes=3,
                           providers={**OFFLINE, "vision": "offline", "judge": "openai"},
                           provider_settings={"judge": {"model": "gpt-4.1-mini"}})
    assert own["calls"]["compare"] == 3 * n and own["models"]["judge"] == "gpt-4.1-mini"
    assert own["assumptions"]["comparisons"]["judgedBy"] == "judge"
    assert own["cost"]["compare"] > 0 and own["cost"]["vision"] == 0.0
    assert own["totalCost"] == pytest.approx(own["cost"]["compare"], abs=1e-4)
