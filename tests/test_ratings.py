"""A person's pairwise ratings: storage, Python, REST (across a server restart), and agreement vs scipy."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest
from scipy import stats
from server_helpers import start_server

import beamkit
from beamkit import storage
from beamkit.errors import InvalidRequest
from beamkit.ratings import agreement, make_rating, next_pair, parse_ref

SMALL = {"N": 3, "M": 2, "iterations": 2, "seed": 7}


def rating(a, b, winner="a"):
    return make_rating(a, b, winner)


# -- pure parts ---------------------------------------------------------------------------------


def test_refs_are_read_in_every_spelling_and_bad_ones_name_the_field():
    assert parse_ref((1, 2)) == parse_ref([1, 2]) == parse_ref("1-2") == parse_ref({"iteration": 1, "candidateId": 2})
    for bad in ("1_2", "01-2", (1,), (1, -2), {"iteration": 1}, None, (True, 2)):
        with pytest.raises(InvalidRequest) as info:
            parse_ref(bad, "a")
        assert info.value.context.get("field", "a") == "a"
    with pytest.raises(InvalidRequest):
        make_rating("0-1", "0-1", "a")
    with pytest.raises(InvalidRequest):
        make_rating("0-1", "0-2", "left")
    with pytest.raises(InvalidRequest):
        make_rating("0-1", "0-9", "a", known=[(0, 1), (0, 2)])


def test_agreement_matches_scipy_on_known_data():
    model = [(0, i) for i in range(5)]  # the model's ranking, best first
    # The person: 0-1 beats everyone, then 0-0 beats the rest; 0-3 beats 0-2; 0-4 loses all.
    wins = [("0-1", "0-0"), ("0-1", "0-2"), ("0-1", "0-3"), ("0-1", "0-4"), ("0-0", "0-2"), ("0-0", "0-3"),
            ("0-0", "0-4"), ("0-3", "0-2"), ("0-2", "0-4"), ("0-3", "0-4")]
    ratings = [rating(w, lose) for w, lose in wins]
    out = agreement(ratings, model, k=2)
    net = {0: 2, 1: 4, 2: -2, 3: 0, 4: -4}
    model_scores, human_scores = [-i for i in range(5)], [net[i] for i in range(5)]
    assert out["spearman"] == pytest.approx(stats.spearmanr(model_scores, human_scores).statistic)
    assert out["kendall"] == pytest.approx(stats.kendalltau(model_scores, human_scores).statistic)
    assert out["spearman"] == pytest.approx(0.8)
    assert out["kendall"] == pytest.approx(0.6)
    assert out["topK"] == 1.0  # {0-1, 0-0} on both sides
    assert [(d["winner"]["candidateId"], d["loser"]["candidateId"]) for d in out["disagreements"]] == [(1, 0), (3, 2)]
    assert [r["candidateId"] for r in out["humanOrder"]] == [1, 0, 3, 2, 4]


def test_agreement_with_too_little_data_is_null_not_nan():
    model = [(0, 0), (0, 1), (0, 2)]
    assert agreement([], model)["spearman"] is None
    one = agreement([rating("0-2", "0-0")], model, k=1)
    assert one["spearman"] == pytest.approx(-1.0) and one["topK"] == 0.0
    assert one["rated"] == 2 and len(one["disagreements"]) == 1


def test_next_pair_asks_neighbours_first_and_never_what_transitivity_decides():
    model = [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert next_pair(model, []) == ((0, 0), (0, 1))
    ratings = [rating("0-0", "0-1")]
    assert next_pair(model, ratings) == ((0, 1), (0, 2))
    ratings.append(rating("0-1", "0-2"))
    assert next_pair(model, ratings) == ((0, 2), (0, 3))
    ratings.append(rating("0-2", "0-3"))
    # 0-0 > 0-1 > 0-2 > 0-3: every other pair follows.
    assert next_pair(model, ratings) is None
    # A reversed rating: 0-1 beats 0-0 as well; still decided.
    assert next_pair(model, [rating("0-1", "0-0"), rating("0-3", "0-2")]) == ((0, 1), (0, 2))


# -- storage and Python -------------------------------------------------------------------------


def test_ratings_file_is_private_and_survives_a_torn_line(tmp_path):
    storage.append_rating(tmp_path, rating("0-0", "0-1"))
    assert stat.S_IMODE(os.stat(tmp_path / storage.RATINGS_FILE).st_mode) == 0o600
    with open(tmp_path / storage.RATINGS_FILE, "ab") as fh:
        fh.write(b'{"a": {"iter')
    storage.append_rating(tmp_path, rating("0-1", "0-2", "b"))  # the torn line stays alone on its line
    assert [r["winner"] for r in storage.read_ratings(tmp_path)] == ["a", "b"]


@pytest.mark.asyncio
async def test_rate_a_live_then_finished_then_loaded_job(tmp_path):
    job = beamkit.start("a red fox in snow", providers="offline", output=tmp_path, **SMALL)
    done = []
    async for e in job.events():
        if e["type"] == "candidate":
            done.append((e["iteration"], e["candidateId"]))
            if len(done) == 2:
                break
    live = job.rate(done[0], f"{done[1][0]}-{done[1][1]}", "b")  # through the Job, as soon as two are scored
    with pytest.raises(InvalidRequest):
        job.rate(done[0], (5, 5), "a")
    result = await job
    result.rate("0-1", "0-2", "a")
    loaded = beamkit.load(job.folder)
    assert [r["winner"] for r in loaded.ratings] == ["b", "a"]
    assert loaded.ratings[0] == live
    assert job.ratings == loaded.ratings
    loaded.rate("1-0", "0-0", "a")
    assert len(beamkit.load(job.folder).ratings) == 3
    figures = beamkit.load(job.folder).agreement()
    assert figures["ratings"] == 3 and figures["rated"] == 4


# -- REST, across a restart -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_ratings_over_rest_survive_a_restart(tmp_path, providers):
    out = tmp_path / "out"
    first = await start_server(out, providers.name)
    try:
        code, body = await first.json("/api/beam-search", "POST", {"prompt": "a red fox in snow", **SMALL})
        assert code == 200
        job_id = body["jobId"]
        await first.manager.idle()
        code, got = await first.json(f"/api/job/{job_id}/ratings")
        assert code == 200 and got["ratings"] == [] and got["nextPair"] is not None
        a, b = got["nextPair"]
        code, posted = await first.json(f"/api/job/{job_id}/ratings", "POST", {"a": a, "b": b, "winner": "b"})
        assert code == 200 and posted["ratings"] == 1 and posted["rating"]["winner"] == "b"
        code, bad = await first.json(f"/api/job/{job_id}/ratings", "POST", {"a": "0-0", "b": "9-9", "winner": "a"})
        assert code == 400 and bad["code"] == "INVALID_REQUEST" and "9-9" in bad["error"]
        code, bad = await first.json(f"/api/job/{job_id}/ratings", "POST", {"a": "0-0", "b": "0-1", "winner": "c"})
        assert code == 400 and bad["field"] == "winner"
        code, missing = await first.json("/api/job/job-nope/ratings")
        assert code == 404
    finally:
        await first.server.stop()
    second = await start_server(out, providers.name)
    try:
        code, got = await second.json(f"/api/job/{job_id}/ratings")
        assert code == 200 and len(got["ratings"]) == 1
        assert got["ratings"][0]["a"] == a and got["ratings"][0]["winner"] == "b"
        assert got["agreement"]["rated"] == 2
        assert got["nextPair"] != [a, b]
        code, posted = await second.json(f"/api/job/{job_id}/ratings", "POST",
                                         {"a": got["nextPair"][0], "b": got["nextPair"][1], "winner": "a"})
        assert code == 200 and posted["ratings"] == 2
    finally:
        await second.server.stop()
    assert len(await asyncio.to_thread(storage.read_ratings, out / "sessions" / job_id)) == 2
