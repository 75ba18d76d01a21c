"""Prompt sets: the shipped PartiPrompts and a user's own files."""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import pytest

from beamkit import prompts
from beamkit.errors import InvalidRequest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "partiprompts" / "PartiPrompts.tsv"


def test_parti_is_shipped_whole_with_its_licence() -> None:
    parti = prompts.load("parti")
    assert len(parti) == 1632
    assert len(prompts.categories()) == 12
    folder = resources.files("beamkit.prompts").joinpath("data", "partiprompts")
    assert "Apache License" in folder.joinpath("LICENSE").read_text(encoding="utf-8")
    assert "google-research/parti" in folder.joinpath("SOURCE.md").read_text(encoding="utf-8")
    first = parti[0]
    assert (first.text, first.category, first.challenge, first.index) == ("bond", "Abstract", "Basic", 0)
    assert str(first) == "bond"


@pytest.mark.skipif(not SHARED.exists(), reason="the shared data folder is not beside this checkout")
def test_parti_matches_the_shared_source() -> None:
    with open(SHARED, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert [p.text for p in prompts.load("parti")] == [r["Prompt"].strip() for r in rows]


def test_filters_and_seeded_draws() -> None:
    animals = prompts.load("parti", category="Animals")
    assert animals and {p.category for p in animals} == {"Animals"}
    both = prompts.load("parti", category=["animals", "Vehicles"], challenge="Basic")
    assert {p.category for p in both} == {"Animals", "Vehicles"} and {p.challenge for p in both} == {"Basic"}
    a = prompts.load("parti", n=50, seed=3)
    b = prompts.load("parti", n=50, seed=3)
    c = prompts.load("parti", n=50, seed=4)
    assert a == b and a != c and len(a) == 50
    assert [p.index for p in a] == sorted(p.index for p in a)
    assert prompts.load("parti", n=5) == prompts.load("parti")[:5]


def test_a_typo_is_an_error_not_an_empty_set() -> None:
    with pytest.raises(InvalidRequest, match="unknown category 'Animal'.*Animals"):
        prompts.load("parti", category="Animal")
    with pytest.raises(InvalidRequest, match="no prompt set"):
        prompts.load("no-such-set")
    with pytest.raises(InvalidRequest):
        prompts.load("parti", n=0)


def test_user_files(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("a fox\n\n  a lighthouse in a storm \n", encoding="utf-8")
    assert [p.text for p in prompts.load(tmp_path / "p.txt")] == ["a fox", "a lighthouse in a storm"]
    (tmp_path / "p.csv").write_text('Text,category,seed\n"a fox, running",Animals,1\nan owl,Animals,2\n', encoding="utf-8")
    rows = prompts.load(tmp_path / "p.csv")
    assert [p.text for p in rows] == ["a fox, running", "an owl"] and rows[0].extra == {"seed": "1"}
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "a cat", "challenge": "Basic"}) + "\n" + json.dumps("a dog") + "\n",
                                      encoding="utf-8")
    assert [(p.text, p.challenge) for p in prompts.load(tmp_path / "p.jsonl")] == [("a cat", "Basic"), ("a dog", None)]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(InvalidRequest, match="bad.jsonl:2"):
        prompts.load(tmp_path / "bad.jsonl")
    (tmp_path / "nocol.tsv").write_text("a\tb\n1\t2\n", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="column"):
        prompts.load(tmp_path / "nocol.tsv")
