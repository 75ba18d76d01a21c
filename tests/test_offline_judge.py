"""The offline judge marks down content that crowds out what the user asked for."""

from __future__ import annotations

import pytest

from beamkit.providers.offline.painter import paint
from beamkit.providers.offline.vision import CROWD_PENALTY, LEAD_PENALTY, judge


def _judge(prompt: str, user: str):
    png, _ = paint(prompt, 7)
    return judge(png, user)


def test_a_picture_taken_over_by_unrequested_content_loses_alignment() -> None:
    user = "a forest at dawn"
    clean = _judge("a forest at dawn, soft light", user)
    crowded = _judge("an ancient castle, sailing across the water, a forest at dawn, soft light", user)
    assert clean.alignment >= 95
    # the castle leads the picture: that costs the lead penalty, less what the pixels happen to give back
    assert crowded.alignment <= clean.alignment - LEAD_PENALTY + 2
    assert crowded.alignment < 90
    assert any(w.startswith("crowded out: the picture leads with 'castle'") for w in crowded.weaknesses)
    assert "leads the picture" in crowded.analysis


@pytest.mark.parametrize("extra", ["a deer", "a lone tree"])
def test_one_added_subject_after_the_request_is_free(extra: str) -> None:
    user = "a forest at dawn"
    clean = _judge("a forest at dawn, soft light", user)
    enriched = _judge(f"a forest at dawn, {extra}, soft light", user)
    assert enriched.alignment >= clean.alignment - 3  # the structure term still notices it, a little
    assert not any(w.startswith("crowded out") for w in enriched.weaknesses)


def test_more_unrequested_content_costs_more() -> None:
    user = "a forest at dawn"
    scores = [
        _judge(prompt, user).alignment
        for prompt in (
            "a forest at dawn, a deer",
            "a forest at dawn, a deer, a lighthouse, a castle",
            "a forest at dawn, a deer, a lighthouse, a castle, a dragon, a ship",
        )
    ]
    assert scores[0] > scores[1] > scores[2]
    assert scores[0] - scores[2] <= CROWD_PENALTY + 15
