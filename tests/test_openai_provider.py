"""The ``openai`` provider, with the real ``openai.AsyncOpenAI`` client over HTTP to a local test server."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
from typing import Any

import pytest
from openai_server import TEST_KEY, FakeOpenAI, openai_server  # noqa: F401 - the fixture
from PIL import Image

from beamkit.candidate import Candidate
from beamkit.errors import BeamkitError, ErrorCode, InvalidRequest
from beamkit.estimate import calls, estimate
from beamkit.providers import Limit, Roles, resolve
from beamkit.providers.openai.parse import ReplyError, clean_text, parse_scores

USER = "a red fox sleeping in fresh snow"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No key, URL, model or limit from the machine's environment."""
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "BEAMKIT_")):
            monkeypatch.delenv(name)


def make(server: FakeOpenAI, **settings: Any) -> Roles:
    base = {"api_key": TEST_KEY, "base_url": server.base_url, "max_retries": 2}
    return resolve("openai", {**base, **settings}, temperature=0.9, seed=11)


def parent() -> Candidate:
    return Candidate(
        0, 2, "what", what_prompt="a red fox curled up asleep in deep snow, dusk, quiet mood",
        how_prompt="soft blue light, low camera angle, muted palette, watercolour",
        combined_prompt="a red fox asleep in deep snow at dusk, soft blue light, watercolour",
        alignment_score=0.0, aesthetic_score=6.5, analysis="The fox is small and off-centre.",
        strengths=["calm mood"], weaknesses=["tiny subject"], status="ok",
    )


def assert_no_key(*texts: Any) -> None:
    for t in texts:
        assert TEST_KEY not in str(t)
        assert TEST_KEY[10:30] not in str(t)


# --- configuration ------------------------------------------------------------------------------

def test_no_key_is_a_fatal_auth_error():
    with pytest.raises(BeamkitError) as info:
        resolve("openai")
    assert info.value.code == ErrorCode.AUTH_ERROR and info.value.fatal
    assert "OPENAI_API_KEY" in info.value.message
    with pytest.raises(BeamkitError) as info:
        resolve("openai", {"api_key": "  "})
    assert info.value.code == ErrorCode.AUTH_ERROR
    # one role without a key is enough: it names the role and its own variable
    with pytest.raises(BeamkitError) as info:
        resolve("openai", {"llm": {"api_key": "k1"}, "vision": {"api_key": "k2"}})
    assert info.value.code == ErrorCode.AUTH_ERROR and "image role" in info.value.message
    assert "BEAMKIT_IMAGE_API_KEY" in info.value.message


def test_settings_come_from_arguments_then_environment_then_defaults(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    ps = resolve("openai")
    assert ps.providers == {"llm": "openai", "image": "openai", "vision": "openai"}
    assert ps.info["llm"]["model"] == "gpt-4o-mini" and ps.info["image"]["model"] == "gpt-image-1-mini"
    assert ps.limits == {"llm": Limit(8), "image": Limit(3), "vision": Limit(4)}  # no per-minute cap by default

    monkeypatch.setenv("BEAMKIT_LLM_MODEL", "gpt-4.1-mini")
    monkeypatch.setenv("BEAMKIT_VISION_MODEL", "gpt-4.1-mini")
    monkeypatch.setenv("BEAMKIT_IMAGE_PER_MINUTE", "12")
    monkeypatch.setenv("BEAMKIT_OPENAI_TIMEOUT", "30")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    ps = resolve("openai", {"vision_model": "gpt-4o", "limits": {"llm": {"concurrency": 2, "per_minute": 0}}})
    assert ps.info["llm"]["model"] == "gpt-4.1-mini"
    assert ps.info["vision"]["model"] == "gpt-4o"  # the argument (by its 0.1 name) beats the environment
    assert ps.info["llm"]["timeout"] == 30.0 and ps.info["llm"]["baseUrl"] == "http://127.0.0.1:9/v1"
    assert ps.limits["image"] == Limit(3, 12) and ps.limits["llm"] == Limit(2, None)
    assert TEST_KEY not in repr(ps) and TEST_KEY not in json.dumps(ps.info)


def test_each_role_takes_its_own_base_url_key_and_model(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-shared-fallback")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:7/v1")
    monkeypatch.setenv("BEAMKIT_IMAGE_BASE_URL", "http://127.0.0.1:8/v1")
    monkeypatch.setenv("BEAMKIT_IMAGE_API_KEY", "sk-image-only")
    monkeypatch.setenv("BEAMKIT_IMAGE_MODEL", "flux-local")
    ps = resolve("openai", {"vision": {"model": "llava"}, "llm": {"base_url": "http://127.0.0.1:6/v1"}})
    assert {r: ps.info[r]["baseUrl"] for r in ("llm", "image", "vision")} == {
        "llm": "http://127.0.0.1:6/v1", "image": "http://127.0.0.1:8/v1", "vision": "http://127.0.0.1:7/v1"}
    assert {r: ps.info[r]["model"] for r in ("llm", "image", "vision")} == {
        "llm": "gpt-4o-mini", "image": "flux-local", "vision": "llava"}
    keys = {r: ps.handles[r].impl._b.config.api_key for r in ("llm", "image", "vision")}
    assert keys == {"llm": "sk-shared-fallback", "image": "sk-image-only", "vision": "sk-shared-fallback"}
    # roles on different servers have their own limiter; two jobs on one server share one per role
    assert len({ps.limit_keys[r] for r in ("llm", "image", "vision")}) == 3
    assert resolve("openai").limit_keys["vision"] == ps.limit_keys["vision"]
    assert resolve("openai").limit_keys["llm"] != ps.limit_keys["llm"]


@pytest.mark.parametrize(
    "settings,field",
    [({"llm_modle": "x"}, "llm_modle"), ({"timeout": "soon"}, "timeout"), ({"max_retries": -1}, "max_retries"),
     ({"limits": {"gpu": {}}}, "limits"), ({"prices": {"m": {"input": -1}}}, "prices"),
     ({"image": {"size": 512}}, "image.size"), ({"llm": {"quality": "high"}}, "llm.quality"),
     ({"send_image_seed": "maybe"}, "send_image_seed"), ({"vision": {"temperature": 3}}, "vision.temperature")],
)
def test_bad_settings_are_rejected_by_name(settings, field):
    with pytest.raises(InvalidRequest) as info:
        resolve("openai", {"api_key": TEST_KEY, **settings})
    assert info.value.field == field and info.value.fatal


def test_a_mistyped_key_is_named_but_never_shown():
    with pytest.raises(InvalidRequest) as info:
        resolve("openai", {"api_key": ["sk-secret-in-a-list"]})
    assert info.value.field == "api_key" and "sk-secret-in-a-list" not in info.value.message


# --- each method over HTTP ----------------------------------------------------------------------

@pytest.mark.asyncio
async def test_every_method_talks_to_the_server(openai_server):
    ps = make(openai_server)
    what = await ps.llm.expand(USER, "what", seed=1)
    how = await ps.llm.expand(USER, "how", seed=2)
    combined = await ps.llm.combine(what, how, seed=3)
    image = await ps.image.generate(combined, seed=4)
    vision = await ps.vision.analyze(image.png, USER, seed=5)
    critique = await ps.llm.critique(parent(), "how", USER, seed=6)
    refined = await ps.llm.refine(parent().how_prompt, "how", critique, USER, seed=7)
    await ps.aclose()

    assert USER in what and "golden-hour" in how
    assert not combined.startswith("Prompt") and not combined.startswith('"')  # label and quotes cleaned
    assert image.png.startswith(b"\x89PNG") and Image.open(io.BytesIO(image.png)).size == (64, 64)
    assert image.metadata["model"] == "gpt-image-1-mini"
    assert 0 <= vision.alignment_score <= 100 and 0 <= vision.aesthetic_score <= 10
    assert vision.strengths == ["clear subject", "pleasant colour"] and vision.analysis
    assert "Make the subject larger" in critique and "rim lighting" in refined

    reqs = openai_server.requests
    assert [r.operation for r in reqs] == [
        "expand-what", "expand-how", "combine", "image", "vision", "critique-how", "refine-how"]
    for r in reqs:
        assert r.headers["authorization"] == f"Bearer {TEST_KEY}"  # the key goes where it belongs, and only there
    chat = [r for r in reqs if r.kind != "image"]
    assert all(r.body["seed"] == s for r, s in zip(chat, [1, 2, 3, 5, 6, 7]))
    assert all(r.body["model"] == "gpt-4o-mini" for r in chat)
    assert [r.body.get("temperature") for r in chat] == [0.9, 0.9, 0.9, 0.0, 0.9, 0.9]

    # WHAT/HOW split in the prompts
    expand_what = reqs[0].body["messages"][1]["content"]
    expand_how = reqs[1].body["messages"][1]["content"]
    assert "WHAT part" in expand_what and "Do not mention lighting" in expand_what
    assert "HOW part" in expand_how and "Do not describe, add or change any subject" in expand_how
    crit = reqs[5].body["messages"][1]["content"]
    assert "alignment with the request 0 of 100" in crit  # a real 0 is shown as 0, not as missing
    assert "tiny subject" in crit and "Critique only the HOW part" in crit
    refine = reqs[6].body["messages"][1]["content"]
    assert critique in refine and USER in refine

    # the image request
    img = reqs[3].body
    assert img["model"] == "gpt-image-1-mini" and img["prompt"] == combined and img["n"] == 1
    assert "response_format" not in img  # GPT image models refuse it and always answer in base64

    # the vision request: the user's own prompt, a PNG data URL, the scores' JSON schema asked for
    vbody = reqs[4].body
    assert vbody["response_format"]["type"] == "json_schema"
    schema = vbody["response_format"]["json_schema"]["schema"]
    assert set(schema["required"]) == {"alignment", "aesthetics", "analysis", "strengths", "weaknesses"}
    parts = vbody["messages"][1]["content"]
    text = next(p["text"] for p in parts if p["type"] == "text")
    url = next(p["image_url"] for p in parts if p["type"] == "image_url")
    assert USER in text and combined not in text and "0 to 100" in text and "0 to 10" in text
    assert url["url"].startswith("data:image/png;base64,") and url["detail"] == "low"
    sent = base64.b64decode(url["url"].split(",", 1)[1])
    assert Image.open(io.BytesIO(sent)).format == "PNG"


@pytest.mark.asyncio
async def test_usage_counts_tokens_and_images_per_model_with_overridable_prices(openai_server):
    ps = make(openai_server, prices={"gpt-4o-mini": {"input": 1.0, "output": 2.0}}, vision_model="judge-x")
    await ps.llm.expand(USER, "what", seed=1)
    await ps.llm.combine("a", "b", seed=2)
    image = await ps.image.generate("a fox", seed=3)
    await ps.vision.analyze(image.png, USER, seed=4)
    usage = ps.usage()
    await ps.aclose()

    llm = usage["models"]["gpt-4o-mini"]
    chat = [r for r in openai_server.requests if r.kind == "llm"]
    assert llm["calls"] == 2 and llm["images"] == 0
    assert llm["inputTokens"] == sum(max(1, len(json.dumps(r.body["messages"])) // 4) for r in chat)
    assert llm["cost"] == pytest.approx((llm["inputTokens"] * 1.0 + llm["outputTokens"] * 2.0) / 1e6, abs=1e-6)
    img = usage["models"]["gpt-image-1-mini"]
    assert img == {"inputTokens": 40, "outputTokens": 272, "images": 1, "calls": 1, "cost": pytest.approx(0.005 + 40 * 2.0 / 1e6)}
    assert usage["models"]["judge-x"]["calls"] == 1 and usage["unpriced"] == ["judge-x"]
    assert usage["currency"] == "USD"
    assert usage["totalCost"] == pytest.approx(sum(m["cost"] for m in usage["models"].values()), abs=1e-6)
    json.dumps(usage)


@pytest.mark.asyncio
async def test_aclose_closes_each_roles_client(openai_server):
    ps = make(openai_server)
    backends = [ps.llm._b, ps.image._b, ps.vision._b]
    assert len({id(b.client) for b in backends}) == 3  # each role its own client: its own URL and key
    await ps.aclose()
    assert all(b.client.is_closed() for b in backends)
    await ps.aclose()  # twice is harmless


# --- faults -------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_a_429_is_retried_by_the_client_honouring_retry_after_ms(openai_server):
    ps = make(openai_server)
    openai_server.fail("429", on="image", times=2, retry_after_ms=30)
    image = await ps.image.generate("a fox", seed=1)
    assert image.png.startswith(b"\x89PNG")
    reqs = openai_server.of("image")
    assert [r.status for r in reqs] == [429, 429, 200]
    assert [r.headers.get("x-stainless-retry-count") for r in reqs] == ["0", "1", "2"]
    assert reqs[1].started - reqs[0].started >= 0.025  # waited as told, not the 0.5 s default
    await ps.aclose()


@pytest.mark.asyncio
async def test_a_429_after_the_retries_is_rate_limit(openai_server):
    ps = make(openai_server, max_retries=1)
    openai_server.fail("429", on="llm", times=5, retry_after_ms=5)
    with pytest.raises(BeamkitError) as info:
        await ps.llm.expand(USER, "what", seed=1)
    assert info.value.code == ErrorCode.RATE_LIMIT and not info.value.fatal
    assert len(openai_server.requests) == 2  # the first try and max_retries=1, and no loop of our own
    await ps.aclose()


@pytest.mark.asyncio
async def test_no_quota_is_a_fatal_rate_limit(openai_server):
    ps = make(openai_server, max_retries=0)
    openai_server.fail("insufficient_quota", on="llm")
    with pytest.raises(BeamkitError) as info:
        await ps.llm.expand(USER, "what", seed=1)
    assert info.value.code == ErrorCode.RATE_LIMIT and info.value.fatal
    await ps.aclose()


@pytest.mark.asyncio
async def test_a_500_is_retried_then_provider_error(openai_server):
    ps = make(openai_server, max_retries=1)
    openai_server.fail("500", on="vision", times=1)
    result = await ps.vision.analyze(openai_server.png, USER, seed=1)  # one 500, then fine
    assert result.alignment_score >= 40
    openai_server.fail("500", on="vision", times=2)
    with pytest.raises(BeamkitError) as info:
        await ps.vision.analyze(openai_server.png, USER, seed=1)
    assert info.value.code == ErrorCode.PROVIDER_ERROR and not info.value.fatal
    assert "HTTP 500" in info.value.message
    assert [r.status for r in openai_server.requests] == [500, 200, 500, 500]
    await ps.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["401", "403"])
async def test_401_and_403_are_fatal_auth_errors_without_retries(openai_server, fault):
    ps = make(openai_server, max_retries=3)
    openai_server.fail(fault, on="image")
    with pytest.raises(BeamkitError) as info:
        await ps.image.generate("a fox", seed=1)
    assert info.value.code == ErrorCode.AUTH_ERROR and info.value.fatal
    assert len(openai_server.requests) == 1
    assert_no_key(info.value, info.value.message, info.value.to_dict(), repr(info.value))
    await ps.aclose()


@pytest.mark.asyncio
async def test_a_wrong_key_echoed_by_the_server_is_scrubbed(openai_server, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "beamkit"):
        caplog.set_level(logging.DEBUG, logger=name)
    wrong = "sk-proj-WRONGKEY-abcdefghijklmnop0123"
    ps = resolve("openai", {"api_key": wrong, "base_url": openai_server.base_url})
    with pytest.raises(BeamkitError) as info:
        await ps.llm.expand(USER, "what", seed=1)
    await ps.aclose()
    assert info.value.code == ErrorCode.AUTH_ERROR
    assert wrong not in info.value.message and "WRONGKEY" not in info.value.message
    assert "Incorrect API key provided" in info.value.message
    assert wrong not in caplog.text and TEST_KEY not in caplog.text  # no log line carries a key


@pytest.mark.asyncio
async def test_a_slow_reply_is_a_timeout(openai_server):
    ps = make(openai_server, timeout=0.3, max_retries=0)
    openai_server.fail("slow", on="llm", delay=3)
    with pytest.raises(BeamkitError) as info:
        await ps.llm.expand(USER, "how", seed=1)
    assert info.value.code == ErrorCode.TIMEOUT and not info.value.fatal
    await ps.aclose()


@pytest.mark.asyncio
async def test_a_missing_model_is_a_fatal_configuration_error(openai_server):
    ps = make(openai_server)
    openai_server.fail("404", on="llm")
    with pytest.raises(BeamkitError) as info:
        await ps.llm.combine("a", "b", seed=1)
    assert info.value.code == ErrorCode.PROVIDER_ERROR and info.value.fatal
    assert "model" in info.value.message
    await ps.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("body,content_type", [("<html>bad gateway</html>", "text/html"), ("{not json", "application/json"),
                                               ('{"unexpected": true}', "application/json")])
@pytest.mark.parametrize("role", ["llm", "image", "vision"])
async def test_a_body_that_is_not_the_api_json_is_a_provider_error(openai_server, role, body, content_type):
    ps = make(openai_server)
    openai_server.fail("garbage", on=role, times=2, body=body, content_type=content_type)
    call = {"llm": lambda: ps.llm.expand(USER, "what", seed=1), "image": lambda: ps.image.generate("a fox", seed=1),
            "vision": lambda: ps.vision.analyze(openai_server.png, USER, seed=1)}[role]
    with pytest.raises(BeamkitError) as info:
        await call()
    assert info.value.code == ErrorCode.PROVIDER_ERROR and not info.value.fatal
    await ps.aclose()


@pytest.mark.asyncio
async def test_an_image_refused_on_content_grounds_is_rephrased_once(openai_server):
    ps = make(openai_server)
    openai_server.fail("content_policy", on="image")
    image = await ps.image.generate("a bloody battle between two knights", seed=1)
    assert image.png.startswith(b"\x89PNG")
    assert image.metadata["rephrased"] is True
    assert [r.operation for r in openai_server.requests] == ["image", "rephrase", "image"]
    first, second = openai_server.of("image")
    assert first.status == 400 and second.status == 200
    assert second.body["prompt"] == image.metadata["promptUsed"] != first.body["prompt"]
    await ps.aclose()


@pytest.mark.asyncio
async def test_a_second_refusal_is_content_policy_for_that_candidate(openai_server):
    ps = make(openai_server)
    openai_server.fail("content_policy", on="image", times=2)
    openai_server.fail("500", on="rephrase", times=5)  # the chat model cannot help: words are softened instead
    with pytest.raises(BeamkitError) as info:
        await ps.image.generate("a bloody battle", seed=1)
    assert info.value.code == ErrorCode.CONTENT_POLICY and not info.value.fatal
    first, second = openai_server.of("image")
    assert "bloody" not in second.body["prompt"] and "family-friendly" in second.body["prompt"]
    await ps.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["content_policy", "content_filter", "refusal"])
async def test_a_chat_refusal_gets_one_softened_retry(openai_server, fault):
    ps = make(openai_server)
    openai_server.fail(fault, on="expand")
    text = await ps.llm.expand("a violent war scene", "what", seed=1)
    assert "violent" in text or "scene" in text
    first, second = openai_server.requests
    assert second.body["seed"] != first.body["seed"]
    assert "general audience" in second.body["messages"][0]["content"]
    openai_server.fail(fault, on="expand", times=2)
    with pytest.raises(BeamkitError) as info:
        await ps.llm.expand("a violent war scene", "what", seed=1)
    assert info.value.code == ErrorCode.CONTENT_POLICY and not info.value.fatal
    await ps.aclose()


@pytest.mark.asyncio
async def test_an_unsupported_temperature_is_dropped_for_that_model(openai_server):
    ps = make(openai_server, llm_model="gpt-5.4-mini")
    openai_server.fail("unsupported_temperature", on="llm")
    await ps.llm.expand(USER, "what", seed=1)
    await ps.llm.expand(USER, "how", seed=2)
    bodies = [r.body for r in openai_server.requests]
    assert "temperature" in bodies[0] and "temperature" not in bodies[1] and "temperature" not in bodies[2]
    assert bodies[2]["seed"] == 2
    await ps.aclose()


@pytest.mark.asyncio
async def test_an_empty_llm_reply_is_asked_again_then_an_error(openai_server):
    ps = make(openai_server)
    openai_server.fail("empty", on="combine")
    assert await ps.llm.combine("a fox", "watercolour", seed=1)
    openai_server.fail("empty", on="combine", times=2)
    with pytest.raises(BeamkitError) as info:
        await ps.llm.combine("a fox", "watercolour", seed=1)
    assert info.value.code == ErrorCode.PROVIDER_ERROR and "empty" in info.value.message
    await ps.aclose()


# --- vision replies -----------------------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.parametrize(
    "content,alignment,aesthetic",
    [
        ('{"alignment": 0, "aesthetics": 0, "analysis": "nothing of it"}', 0.0, 0.0),
        ('{"alignment": "85", "aesthetics": "7/10", "analysis": "ok"}', 85.0, 7.0),
        ('{"alignment": 150, "aesthetics": -2}', 100.0, 0.0),
        ('Sure! ```json\n{"alignmentScore": 62.5, "aestheticScore": 12}\n``` Hope it helps.', 62.5, 10.0),
        ('My verdict: {"alignment": "90%", "aesthetics": 8, "strengths": "sharp; bright"} -- done', 90.0, 8.0),
    ],
)
async def test_vision_replies_are_read_defensively(openai_server, content, alignment, aesthetic):
    ps = make(openai_server)
    openai_server.fail("vision_reply", content=content)
    result = await ps.vision.analyze(openai_server.png, USER, seed=1)
    assert (result.alignment_score, result.aesthetic_score) == (alignment, aesthetic)
    assert len(openai_server.requests) == 1
    await ps.aclose()


@pytest.mark.asyncio
async def test_a_fenced_vision_reply_from_the_server_is_read(openai_server):
    ps = make(openai_server)
    openai_server.fail("fenced")
    result = await ps.vision.analyze(openai_server.png, USER, seed=1)
    assert result.weaknesses == ["flat background"] and len(openai_server.requests) == 1
    await ps.aclose()


@pytest.mark.asyncio
async def test_an_unreadable_vision_reply_is_asked_again_once(openai_server):
    ps = make(openai_server)
    openai_server.fail("malformed")
    result = await ps.vision.analyze(openai_server.png, USER, seed=1)
    assert result.analysis
    first, second = openai_server.requests
    assert second.body["messages"][-2] == {"role": "assistant", "content": "The alignment is quite good, I would say around eighty, and it looks nice."}
    assert "could not be read" in second.body["messages"][-1]["content"]
    await ps.aclose()


@pytest.mark.asyncio
async def test_a_vision_reply_unreadable_twice_fails_with_the_reason_and_no_score(openai_server):
    ps = make(openai_server)
    openai_server.fail("malformed", times=1)
    openai_server.fail("vision_reply", content='{"alignment": null, "aesthetics": 7}')
    with pytest.raises(BeamkitError) as info:
        await ps.vision.analyze(openai_server.png, USER, seed=1)
    assert info.value.code == ErrorCode.PROVIDER_ERROR and not info.value.fatal
    assert "'alignment' is null" in info.value.message and "no JSON object" in info.value.message
    assert len(openai_server.requests) == 2
    await ps.aclose()


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"alignment": 0, "aesthetics": 0}', (0.0, 0.0)),
        ('{"scores": {"alignment": 55, "aesthetic": 6.5}}', (55.0, 6.5)),
        ("{'alignment': 70, 'aesthetics': 5,}", (70.0, 5.0)),
        ('{"alignment": "8 out of 10", "aesthetics": "6.5 / 10"}', (80.0, 6.5)),
        ('{"Alignment": {"score": 33}, "Aesthetics": "4"}', (33.0, 4.0)),
    ],
)
def test_parse_scores_accepts_many_shapes(text, expected):
    r = parse_scores(text)
    assert (r.alignment_score, r.aesthetic_score) == expected


@pytest.mark.parametrize(
    "text,reason",
    [
        ("", "empty"), ("no json here", "no JSON object"), ('{"aesthetics": 5}', "no 'alignment'"),
        ('{"alignment": 5}', "no 'aesthetics'"), ('{"alignment": true, "aesthetics": 5}', "not a number"),
        ('{"alignment": "high", "aesthetics": 5}', "not a number"), ('{"alignment": 5, "aesthetics": [1]}', "not a number"),
        ('{"alignment": 5, "aesthetics": "NaN"}', "not"),
    ],
)
def test_parse_scores_rejects_what_it_cannot_read(text, reason):
    with pytest.raises(ReplyError, match=reason):
        parse_scores(text)


@pytest.mark.parametrize(
    "text,expected",
    [
        ('"a fox in snow"', "a fox in snow"),
        ("Refined WHAT prompt: a fox in snow", "a fox in snow"),
        ("```\na fox in snow\n```", "a fox in snow"),
        ("**Prompt:** a fox", "a fox"),
        ("a fox: asleep", "a fox: asleep"),
    ],
)
def test_clean_text(text, expected):
    assert clean_text(text) == expected


# --- cancelling ---------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_cancelling_aborts_the_request_in_flight(openai_server):
    ps = make(openai_server)
    openai_server.fail("slow", on="image", delay=10)
    task = asyncio.create_task(ps.image.generate("a fox", seed=1))
    for _ in range(200):
        if openai_server.requests:
            break
        await asyncio.sleep(0.01)
    (rec,) = openai_server.requests
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the server sees the connection close, long before the reply was due
    await asyncio.wait_for(rec.closed.wait(), 2.0)
    assert rec.closed_early and rec.status is None
    assert len(openai_server.requests) == 1  # and nothing was sent again
    await ps.aclose()


# --- estimate -----------------------------------------------------------------------------------

@pytest.mark.parametrize("N,M,iterations", [(9, 3, 3), (1, 1, 1), (7, 3, 4), (10, 4, 5)])
def test_estimate_counts_the_calls_of_spec_section_2(N, M, iterations):
    counts = calls(N, M, iterations)
    assert counts["expand"] == 2 * N
    assert counts["critique"] == M * (iterations - 1)
    assert counts["refine"] == N * (iterations - 1)
    assert counts["combine"] == counts["image"] == counts["vision"] == N * iterations
    assert counts["llm"] == counts["expand"] + counts["critique"] + counts["refine"] + counts["combine"]
    est = estimate("a fox", N=N, M=M, iterations=iterations, providers="openai")
    assert est["calls"] == counts and est["currency"] == "USD"
    assert est["totalCost"] == pytest.approx(est["cost"]["llm"] + est["cost"]["image"] + est["cost"]["vision"], abs=1e-4)
    assert est["cost"]["image"] == pytest.approx(0.005 * N * iterations + 150 * N * iterations * 2.0 / 1e6)


def test_estimate_takes_params_and_prices():
    base = estimate({"prompt": "a fox", "N": 4, "M": 2, "iterations": 2, "providers": "openai"})
    dearer = estimate("a fox", N=4, M=2, iterations=2, providers="openai",
                      provider_settings={"image_quality": "high", "prices": {"gpt-4o-mini": {"input": 10, "output": 10}}})
    assert dearer["cost"]["image"] > base["cost"]["image"] and dearer["cost"]["llm"] > base["cost"]["llm"]
    assert base["models"] == {"llm": "gpt-4o-mini", "image": "gpt-image-1-mini", "vision": "gpt-4o-mini"}
    offline = estimate("a fox", N=4, M=2, iterations=2)
    assert offline["totalCost"] == 0.0 and offline["calls"] == base["calls"]
    with pytest.raises(InvalidRequest):
        estimate("a fox", N=2, M=3)


# --- whole jobs through the engine --------------------------------------------------------------

def job_settings(server: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    limits = {"image": {"concurrency": 4, "per_minute": 0}}
    return {"api_key": TEST_KEY, "base_url": server.base_url, "max_retries": 1, "limits": limits, **extra}


def session_texts(output) -> str:
    """Everything a job wrote to disk, as text."""
    sessions = output / "sessions"
    return "\n".join(p.read_text() for p in sessions.rglob("*") if p.suffix in (".json", ".jsonl"))


@pytest.mark.asyncio
@pytest.mark.parametrize("N,M,iterations", [(4, 2, 3), (3, 3, 2)])
async def test_a_full_job_makes_exactly_the_calls_of_spec_section_2(openai_server, tmp_path, N, M, iterations):
    import beamkit

    job = beamkit.start(USER, N=N, M=M, iterations=iterations, seed=1, providers="openai", output=tmp_path,
                        provider_settings=job_settings(openai_server))
    events = [e async for e in job.events()]
    result = await job
    assert events[-1]["type"] == "complete" and result.status == "completed"

    count = openai_server.count()
    later = iterations - 1
    odd = sum(1 for i in range(1, iterations) if i % 2 == 1)  # WHAT is refined on odd iterations
    even = later - odd
    assert count["expand-what"] == N and count["expand-how"] == N
    assert count["critique-what"] == M * odd and count["critique-how"] == M * even
    assert count["refine-what"] == N * odd and count["refine-how"] == N * even
    assert count["combine"] == count["image"] == count["vision"] == N * iterations
    assert sum(count.values()) == calls(N, M, iterations)["total"]  # nothing else: no retries, no re-asks
    assert all(r.status == 200 for r in openai_server.requests)

    # the seeds the engine derived reach the server
    assert all(isinstance(r.body.get("seed"), int) for r in openai_server.requests if r.kind != "image")

    # usage and cost in the result and on disk
    usage = result.usage
    assert usage["models"]["gpt-4o-mini"]["calls"] == calls(N, M, iterations)["llm"] + N * iterations
    assert usage["models"]["gpt-image-1-mini"]["images"] == N * iterations
    assert usage["totalCost"] > 0 and usage["currency"] == "USD"
    assert events[-1]["result"]["usage"] == usage
    meta = json.loads((job.folder / "metadata.json").read_text())
    assert meta["usage"] == usage

    text = json.dumps(events) + session_texts(tmp_path)
    assert_no_key(text)


@pytest.mark.asyncio
async def test_a_bad_key_ends_the_job_at_once_with_an_auth_error_and_no_key_anywhere(openai_server, tmp_path, caplog):
    import beamkit

    caplog.set_level(logging.DEBUG)

    wrong = "sk-proj-WRONG-KEY-0123456789abcdefghij"
    job = beamkit.start(USER, N=6, M=2, iterations=3, seed=1, providers="openai", output=tmp_path,
                        provider_settings=job_settings(openai_server, api_key=wrong, max_retries=3))
    events = [e async for e in job.events()]
    with pytest.raises(BeamkitError) as info:
        await job
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == ErrorCode.AUTH_ERROR
    assert info.value.code == ErrorCode.AUTH_ERROR
    assert not any(e["type"] == "complete" for e in events)
    # the first refusal ends the job: no retries, no second round of calls
    assert len(openai_server.requests) <= 2 * 6
    assert all(r.status == 401 for r in openai_server.requests)
    assert all(r.headers.get("x-stainless-retry-count") == "0" for r in openai_server.requests)
    text = json.dumps(events) + session_texts(tmp_path) + info.value.message + repr(info.value) + caplog.text
    assert wrong not in text and "WRONG-KEY" not in text
    assert_no_key(text)


@pytest.mark.asyncio
async def test_faults_in_a_job_fail_single_candidates_and_the_job_completes(openai_server, tmp_path):
    import beamkit

    openai_server.fail("content_policy", on="image", times=2)  # one candidate refused twice
    openai_server.fail("500", on="rephrase", times=2)
    openai_server.fail("malformed", times=2)  # one vision reply unreadable twice
    # one image and one vision call at a time, so that both faults of a kind hit the same candidate
    settings = job_settings(openai_server, limits={"image": {"concurrency": 1, "per_minute": 0}, "vision": {"concurrency": 1}})
    result = await beamkit.search(USER, N=4, M=2, iterations=2, seed=1, providers="openai", output=tmp_path,
                                  provider_settings=settings)
    failed = [c for c in result.candidates if c.status == "failed"]
    codes = sorted(c.error["code"] for c in failed)
    assert codes == [ErrorCode.CONTENT_POLICY, ErrorCode.PROVIDER_ERROR]
    assert all(c.total_score is None and c.alignment_score is None for c in failed)  # no made-up score
    assert result.status == "completed" and result.best is not None


@pytest.mark.asyncio
async def test_cancelling_a_job_aborts_its_requests_in_flight(openai_server, tmp_path):
    import beamkit

    openai_server.fail("slow", on="image", times=100, delay=30)
    job = beamkit.start(USER, N=3, M=1, iterations=2, seed=1, providers="openai", output=tmp_path,
                        provider_settings=job_settings(openai_server))
    for _ in range(300):
        if len(openai_server.of("image")) == 3:
            break
        await asyncio.sleep(0.01)
    in_flight = openai_server.of("image")
    assert len(in_flight) == 3
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    job.cancel()
    events = [e async for e in job.events()]
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == ErrorCode.CANCELLED
    for rec in in_flight:
        await asyncio.wait_for(rec.closed.wait(), 2.0)
        assert rec.closed_early
    assert loop.time() - t0 < 1.0


# --- roles from different servers and providers ---------------------------------------------------

@pytest.mark.asyncio
async def test_a_fully_local_setup_llm_and_vision_on_one_server_images_on_another(openai_server, tmp_path, monkeypatch):
    import beamkit

    images = await FakeOpenAI(api_key="sk-image-server-0123456789").start()
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
        monkeypatch.setenv("BEAMKIT_IMAGE_BASE_URL", images.base_url)
        monkeypatch.setenv("BEAMKIT_IMAGE_API_KEY", images.api_key)
        monkeypatch.setenv("BEAMKIT_IMAGE_MODEL", "local-diffusion")
        monkeypatch.setenv("BEAMKIT_IMAGE_PER_MINUTE", "0")
        result = await beamkit.search(USER, N=3, M=2, iterations=2, seed=1, providers="openai", output=tmp_path,
                                      provider_settings={"max_retries": 0})
    finally:
        await images.stop()
    assert result.status == "completed" and result.best is not None
    assert {r.kind for r in openai_server.requests} == {"llm", "vision"}
    assert [r.kind for r in images.requests] == ["image"] * 6  # every picture, and nothing else, from the other
    assert all(r.body["model"] == "local-diffusion" for r in images.requests)
    # each server got its own key, and only it
    assert all(r.headers["authorization"] == f"Bearer {images.api_key}" for r in images.requests)
    assert all(r.headers["authorization"] == f"Bearer {TEST_KEY}" for r in openai_server.requests)
    # what the image provider said beside the picture is kept on the candidate and on disk
    assert result.best.image_metadata["model"] == "local-diffusion"
    meta = json.loads((result.folder / "metadata.json").read_text())
    assert all(c["imageMetadata"]["model"] == "local-diffusion" for c in meta["candidates"] if c["status"] == "ok")
    assert images.api_key not in session_texts(tmp_path)
    assert result.usage["models"]["local-diffusion"]["images"] == 6  # the roles' usage, merged
    assert result.usage["models"]["gpt-4o-mini"]["calls"] == calls(3, 2, 2)["llm"] + 6


@pytest.mark.asyncio
async def test_roles_of_two_providers_in_one_job(openai_server, tmp_path):
    import beamkit

    providers = {"llm": "openai", "image": "offline", "vision": "openai"}
    job = beamkit.start(USER, N=3, M=1, iterations=2, seed=1, providers=providers, output=tmp_path,
                        provider_settings={"api_key": TEST_KEY, "base_url": openai_server.base_url, "max_retries": 0})
    events = [e async for e in job.events()]
    result = await job
    assert result.status == "completed"
    assert events[0]["config"]["providers"] == providers  # echoed as it was asked
    assert {r.kind for r in openai_server.requests} == {"llm", "vision"}
    assert openai_server.count("kind")["vision"] == 6
    # offline painted the pictures, and said so beside each
    assert all(c.image_metadata["model"] == "offline-painter" for c in result.candidates if c.ok)
    assert set(result.usage["models"]) == {"gpt-4o-mini", "offline-painter"}


@pytest.mark.asyncio
async def test_what_the_image_server_says_beside_the_picture_is_kept(openai_server):
    ps = make(openai_server, image={"model": "dall-e-3", "quality": "none", "send_seed": True})
    image = await ps.image.generate("a fox", seed=42)
    await ps.aclose()
    assert image.metadata["model"] == "dall-e-3" and image.metadata["seed"] == 42
    assert image.metadata["revisedPrompt"] == "A detailed painting of a fox"
    assert image.metadata["quality"] is None and "quality" not in openai_server.requests[0].body
    assert openai_server.requests[0].body["response_format"] == "b64_json"  # not a GPT image model
    assert openai_server.requests[0].body["seed"] == 42


# --- compatible servers as they really answer (issue 13, item 3) --------------------------------

@pytest.mark.asyncio
async def test_an_image_answered_as_a_url_is_fetched(openai_server):
    ps = make(openai_server)
    openai_server.image_reply = "url"  # LiteLLM's image mock, llmock for gpt-image names
    image = await ps.image.generate("a fox", seed=1)
    served = list(openai_server.files.values())
    assert len(served) == 1 and image.png == served[0]
    await ps.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("url,reason", [
    ("file:///etc/passwd", "only http and https"),
    ("ftp://127.0.0.1/x.png", "only http and https"),
    ("/files/img-1.png", "no scheme"),
])
async def test_an_image_url_of_another_scheme_is_not_fetched(openai_server, url, reason):
    ps = make(openai_server)
    openai_server.image_reply, openai_server.image_url = "url", url
    with pytest.raises(BeamkitError) as info:
        await ps.image.generate("a fox", seed=1)
    assert info.value.code == ErrorCode.PROVIDER_ERROR and reason in info.value.message
    await ps.aclose()


@pytest.mark.asyncio
async def test_an_image_url_that_fails_or_is_too_large_is_a_provider_error(openai_server, monkeypatch):
    from beamkit.providers.openai import client

    ps = make(openai_server)
    openai_server.image_reply = "url"
    openai_server.image_url = f"http://127.0.0.1:{openai_server.port}/files/missing.png"
    with pytest.raises(BeamkitError, match="HTTP 404"):
        await ps.image.generate("a fox", seed=1)
    openai_server.image_url = None
    monkeypatch.setattr(client, "MAX_IMAGE_BYTES", 100)  # the test PNG is a few kB
    with pytest.raises(BeamkitError, match="more than the 100"):
        await ps.image.generate("a fox", seed=2)
    await ps.aclose()


@pytest.mark.asyncio
async def test_a_judge_that_ignores_json_object_still_scores_through_json_schema(openai_server):
    ps = make(openai_server)
    openai_server.json_object = "ignore"  # llmock: json_object gets an unrelated object, json_schema is honoured
    result = await ps.vision.analyze(openai_server.png, USER, seed=3)
    assert 0 <= result.alignment_score <= 100 and 0 <= result.aesthetic_score <= 10
    assert [r.body["response_format"]["type"] for r in openai_server.of("vision")] == ["json_schema"]
    await ps.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("mode,ladder,after", [
    ("only", ["json_schema", "json_object"], ["json_object"]),
    ("none", ["json_schema", "json_object", None], [None]),
])
async def test_a_judge_that_refuses_a_format_gets_the_next_and_it_is_remembered(openai_server, mode, ladder, after):
    ps = make(openai_server)
    openai_server.json_object = mode
    first = await ps.vision.analyze(openai_server.png, USER, seed=3)
    assert 0 <= first.alignment_score <= 100

    def asked() -> list[str | None]:
        return [(r.body.get("response_format") or {}).get("type") for r in openai_server.of("vision")]

    assert asked() == ladder
    openai_server.clear()
    await ps.vision.analyze(openai_server.png, USER, seed=4)
    assert asked() == after  # the same client asks straight away in the format that worked
    await ps.aclose()


@pytest.mark.asyncio
async def test_json_mode_off_asks_for_no_format(openai_server):
    ps = make(openai_server, json_mode=False)
    await ps.vision.analyze(openai_server.png, USER, seed=3)
    assert "response_format" not in openai_server.of("vision")[0].body
    await ps.aclose()
