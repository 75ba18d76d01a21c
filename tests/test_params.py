"""Parameter validation (SPEC section 1): strict, naming the field."""

from __future__ import annotations

import pytest

from beamkit.errors import InvalidRequest
from beamkit.params import json_schema, validate


def test_defaults():
    p = validate({"prompt": "  a forest at dawn  "})
    assert (p.prompt, p.N, p.M, p.iterations, p.alpha, p.temperature, p.seed, p.providers) == (
        "a forest at dawn", 9, 3, 3, 0.7, 0.8, None, "offline")
    q = p.with_seed()
    assert q.seed is not None and q.with_seed() == q


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 4001}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "x", "N": 0}, "N"),
        ({"prompt": "x", "N": 65}, "N"),
        ({"prompt": "x", "N": True}, "N"),
        ({"prompt": "x", "N": "9"}, "N"),
        ({"prompt": "x", "N": 2.5}, "N"),
        ({"prompt": "x", "M": 0}, "M"),
        ({"prompt": "x", "N": 3, "M": 4}, "M"),
        ({"prompt": "x", "iterations": 21}, "iterations"),
        ({"prompt": "x", "alpha": 1.5}, "alpha"),
        ({"prompt": "x", "alpha": False}, "alpha"),
        ({"prompt": "x", "alpha": float("nan")}, "alpha"),
        ({"prompt": "x", "temperature": -0.1}, "temperature"),
        ({"prompt": "x", "seed": "abc"}, "seed"),
        ({"prompt": "x", "seed": True}, "seed"),
        ({"prompt": "x", "providers": 3}, "providers"),
        ({"prompt": "x", "providers": {"llm": "offline", "image": "offline"}}, "providers"),
        ({"prompt": "x", "providers": {"llm": "a", "image": "b", "vision": "c", "critic": "d"}}, "providers"),
        ({"prompt": "x", "providers": {"llm": "a", "image": "b", "vision": "c", "judge": ""}}, "providers"),
        ({"prompt": "x", "providers": {"llm": "a", "image": None, "vision": "c"}}, "providers"),
        ({"prompt": "x", "providers": {"llm": "a", "image": "\ud800", "vision": "c"}}, "providers"),
        ({"prompt": "x", "beamWidth": 3}, "beamWidth"),
    ],
)
def test_bad_input_names_the_field(body, field):
    with pytest.raises(InvalidRequest) as info:
        validate(body)
    assert info.value.field == field
    assert field in str(info.value)


def test_edges_are_accepted():
    p = validate({"prompt": "x" * 4000, "N": 64, "M": 64, "iterations": 20, "alpha": 0, "temperature": 2, "seed": -5})
    assert p.N == 64 and p.alpha == 0.0 and isinstance(p.alpha, float) and p.seed == -5
    assert validate({"prompt": "x", "N": 4.0}).N == 4  # JSON has one number type
    assert validate({"prompt": "x", "seed": None}).seed is None


def test_a_non_object_body():
    with pytest.raises(InvalidRequest):
        validate(["prompt"])  # type: ignore[arg-type]


def test_schema_matches_the_fields():
    schema = json_schema()
    assert schema["required"] == ["prompt"] and schema["additionalProperties"] is False
    assert schema["properties"]["N"] == {"type": "integer", "minimum": 1, "maximum": 64, "default": 9,
                                         "description": "candidates generated per iteration"}


def test_providers_is_a_name_or_one_per_role():
    assert validate({"prompt": "x", "providers": " openai "}).providers == "openai"
    p = validate({"prompt": "x", "providers": {"vision": "openai", "llm": "openai", "image": " offline "}})
    assert p.providers == {"llm": "openai", "image": "offline", "vision": "openai"}
    assert p.to_dict()["providers"] == p.providers and p.with_seed().providers == p.providers
    with pytest.raises(InvalidRequest) as info:
        validate({"prompt": "x", "providers": {"llm": "openai", "vision": "openai"}})
    assert "image role" in info.value.message
    schema = json_schema()["properties"]["providers"]
    assert schema["default"] == "offline" and [s["type"] for s in schema["oneOf"]] == ["string", "object"]
    assert schema["oneOf"][1]["required"] == ["llm", "image", "vision"]
    assert list(schema["oneOf"][1]["properties"]) == ["llm", "image", "vision", "judge"]  # the judge is optional
    judged = validate({"prompt": "x", "providers": {"judge": "openai", "vision": "offline", "llm": "a", "image": "b"}})
    assert judged.providers == {"llm": "a", "image": "b", "vision": "offline", "judge": "openai"}


def test_job_params_are_the_declared_fields_and_their_dict_is_a_copy():
    """``JobParams.to_dict`` lists FIELD_NAMES: a field added to one and not the other fails here."""
    from dataclasses import asdict, fields

    from beamkit.params import FIELD_NAMES, JobParams

    assert tuple(f.name for f in fields(JobParams)) == FIELD_NAMES
    p = JobParams("x", providers={"llm": "a", "image": "b", "vision": "c"}, stop_when={"score": 90.0})
    d = p.to_dict()
    assert d == asdict(p) and d["providers"] is not p.providers and d["stop_when"] is not p.stop_when
