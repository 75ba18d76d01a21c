"""The messages sent to the chat model, one builder per operation.

Every LLM message keeps the WHAT / HOW split of SPEC section 2: WHAT is the content
(subjects, objects, action, setting, mood), HOW the visual execution (lighting,
composition, palette, texture, medium). A prompt of one dimension never takes on
words of the other; only ``combine`` joins them.
"""

from __future__ import annotations

import re
from typing import Any

from ...candidate import Candidate, Dimension

Message = dict[str, Any]

SYSTEM = (
    "You help write prompts for a text-to-image model. Each prompt is kept in two parts that are "
    "written and improved separately and joined only at the end.\n"
    "WHAT is the content: the subjects, objects, action, setting and mood of the picture.\n"
    "HOW is the visual execution: lighting, composition and camera, colour palette, texture, and the "
    "medium or style.\n"
    "A WHAT text never decides lighting, palette, composition, texture or medium, and a HOW text never "
    "adds, removes or changes subjects, objects, actions or setting. Stay faithful to the user's request: "
    "keep everything they asked for. Answer with the requested text only, with no title, label, quotes "
    "or commentary."
)

_DIMENSION = {
    "what": (
        "WHAT",
        "the content: who or what is in the picture, what they are doing, where, and the mood",
        "Do not mention lighting, colours, composition, camera, texture or artistic medium.",
    ),
    "how": (
        "HOW",
        "the visual execution: lighting, composition and camera, colour palette, texture, medium or style",
        "Do not describe, add or change any subject, object, action or setting.",
    ),
}


def _dim(dimension: Dimension) -> tuple[str, str, str]:
    try:
        return _DIMENSION[dimension]
    except KeyError:
        raise ValueError(f"unknown dimension {dimension!r} (expected 'what' or 'how')") from None


def _ask(text: str) -> list[Message]:
    """A chat request: the shared system message, then ``text`` as the user's."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def _request(user_prompt: str) -> str:
    return f"The user's request:\n<<<\n{user_prompt}\n>>>\n\n"


def expand(user_prompt: str, dimension: Dimension) -> list[Message]:
    name, scope, rule = _dim(dimension)
    return _ask(
        _request(user_prompt)
        + f"Write the {name} part of an image prompt for this request: {scope}. Keep every element of "
        f"the request and make it concrete and specific; you may add details that fit the user's intent. "
        f"{rule} Use one to three sentences and at most 80 words."
    )


def refine(prompt: str, dimension: Dimension, critique: str, user_prompt: str) -> list[Message]:
    name, scope, rule = _dim(dimension)
    return _ask(
        _request(user_prompt)
        + f"The current {name} part ({scope}):\n<<<\n{prompt}\n>>>\n\n"
        f"A critique of the image this prompt produced, about its {name} part:\n<<<\n{critique}\n>>>\n\n"
        f"Rewrite the {name} part so that the next image answers the critique, while staying true to "
        f"the user's request. Change only the {name} part. {rule} Use at most 80 words."
    )


def combine(what: str, how: str) -> list[Message]:
    return _ask(
        f"WHAT part (content):\n<<<\n{what}\n>>>\n\nHOW part (visual execution):\n<<<\n{how}\n>>>\n\n"
        "Join the two parts into one fluent prompt for a text-to-image model. Keep every subject, "
        "action and setting from WHAT and every visual choice from HOW; add nothing new. Where they "
        "conflict, WHAT decides the content and HOW decides the look. Use at most 120 words."
    )


def _score(value: float | None, scale: str) -> str:
    return "not scored" if value is None else f"{value:g} {scale}"


def critique(candidate: Candidate, dimension: Dimension, user_prompt: str) -> list[Message]:
    name, scope, rule = _dim(dimension)
    strengths = "; ".join(candidate.strengths) or "none listed"
    weaknesses = "; ".join(candidate.weaknesses) or "none listed"
    return _ask(
        _request(user_prompt)
        + f"WHAT part:\n<<<\n{candidate.what_prompt}\n>>>\nHOW part:\n<<<\n{candidate.how_prompt}\n>>>\n"
        f"Prompt sent to the image model:\n<<<\n{candidate.combined_prompt}\n>>>\n\n"
        f"How a judge scored the image: alignment with the request "
        f"{_score(candidate.alignment_score, 'of 100')}, aesthetics {_score(candidate.aesthetic_score, 'of 10')}.\n"
        f"The judge's analysis: {candidate.analysis or 'none'}\n"
        f"Strengths: {strengths}\nWeaknesses: {weaknesses}\n\n"
        f"Critique only the {name} part ({scope}). Say what keeps the image from matching the request "
        f"better and from looking better, and give two to four concrete, actionable changes to the "
        f"{name} part. Do not rewrite the prompt, and leave the other part alone. Use at most 120 words."
    )


VISION_SYSTEM = (
    "You are a careful, strict judge of images made by a text-to-image model. You answer with one JSON "
    "object and nothing else."
)


def _to_judge(text: str, *parts: dict[str, Any]) -> list[Message]:
    """The judge's messages: its system prompt, then one user message of ``text`` and ``parts``."""
    return [
        {"role": "system", "content": VISION_SYSTEM},
        {"role": "user", "content": [{"type": "text", "text": text}, *parts]},
    ]


def vision(user_prompt: str, data_url: str, detail: str | None) -> list[Message]:
    return _to_judge(
        f"The user asked for this picture:\n<<<\n{user_prompt}\n>>>\n\n"
        "Judge the attached image.\n"
        "- alignment: a number from 0 to 100 for how fully and faithfully the image shows what "
        "the user asked for, judged against the request above and nothing else (0: none of it, "
        "100: all of it, with nothing that contradicts it).\n"
        "- aesthetics: a number from 0 to 10 for visual quality regardless of the request: "
        "composition, lighting, colour, detail, coherence, absence of artefacts.\n"
        "- analysis: two to four sentences that explain both numbers.\n"
        "- strengths: up to three short phrases.\n"
        "- weaknesses: up to three short phrases.\n"
        'Reply with only this JSON object: {"alignment": <0-100>, "aesthetics": <0-10>, '
        '"analysis": "...", "strengths": ["..."], "weaknesses": ["..."]}',
        _image_part(data_url, detail),
    )


#: the judge's answer as a ``json_schema`` response format (strict: every field, nothing else)
SCORES_SCHEMA: dict[str, Any] = {
    "name": "image_scores",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {
            "alignment": {"type": "number", "description": "0-100: how fully the image shows what was asked"},
            "aesthetics": {"type": "number", "description": "0-10: visual quality regardless of the request"},
            "analysis": {"type": "string"},
            "strengths": {"type": "array", "items": {"type": "string"}},
            "weaknesses": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["alignment", "aesthetics", "analysis", "strengths", "weaknesses"],
        "additionalProperties": False,
    },
}


def _image_part(data_url: str, detail: str | None) -> dict[str, Any]:
    image: dict[str, Any] = {"url": data_url}
    if detail:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def compare(user_prompt: str, first_url: str, second_url: str, detail: str | None) -> list[Message]:
    """Which of two pictures better fits the user's request: one message carrying both, each labelled.

    The words say "first" and "second", never "A" and "B": the order is all the judge is told,
    and the engine maps its answer back to the candidates (it shows them in a seeded order).
    """
    return _to_judge(
        f"The user asked for this picture:\n<<<\n{user_prompt}\n>>>\n\n"
        "Two pictures made for this request follow: the FIRST picture, then the SECOND picture. "
        "Decide which of the two better shows what the user asked for: how fully and faithfully "
        "it shows the request, then its visual quality (composition, lighting, detail, absence "
        "of artefacts). Judge only the pictures; their order means nothing. You must pick one.\n"
        'Reply with only this JSON object: {"winner": "first" or "second", '
        '"reason": "one or two sentences"}',
        {"type": "text", "text": "The FIRST picture:"},
        _image_part(first_url, detail),
        {"type": "text", "text": "The SECOND picture:"},
        _image_part(second_url, detail),
    )


#: the comparison's answer as a ``json_schema`` response format
VERDICT_SCHEMA: dict[str, Any] = {
    "name": "image_comparison",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {
            "winner": {"type": "string", "enum": ["first", "second"],
                       "description": "the picture that better shows what was asked"},
            "reason": {"type": "string"},
        },
        "required": ["winner", "reason"],
        "additionalProperties": False,
    },
}


def vision_retry(reason: str) -> Message:
    """The follow-up when a vision reply could not be read."""
    return {
        "role": "user",
        "content": (
            f"Your reply could not be read ({reason}). Answer again with only the JSON object, with "
            '"alignment" as a number from 0 to 100 and "aesthetics" as a number from 0 to 10.'
        ),
    }


# --- content-policy rephrasing ------------------------------------------------------------------

SAFE_NOTE = (
    "Keep everything suitable for a general audience: replace anything graphic, violent, sexual, hateful "
    "or otherwise sensitive with tasteful, non-explicit alternatives that keep the user's intent."
)

_SOFTER = {
    r"\bblood(y|ied)?\b": "red",
    r"\bgor(e|y)\b": "dramatic",
    r"\b(kill(s|ed|ing)?|murder(s|ed|ing)?|slaughter(s|ed|ing)?)\b": "confronting",
    r"\b(dead|corpses?|bodies)\b": "still figures",
    r"\b(nude|naked|topless)\b": "clothed",
    r"\b(guns?|rifles?|pistols?|weapons?)\b": "props",
    r"\b(explosions?|explod(e|es|ed|ing))\b": "bursts of light",
    r"\b(war|battle|warfare)\b": "standoff",
    r"\b(wounds?|wounded|injur(y|ies|ed))\b": "weathered",
}


def soften(text: str) -> str:
    """A gentler wording of a prompt, for the one retry after a content-policy refusal."""
    out = text
    for pattern, gentle in _SOFTER.items():
        out = re.sub(pattern, gentle, out, flags=re.I)
    return "A tasteful, non-graphic, family-friendly depiction. " + out


def rephrase_for_image(prompt: str) -> list[Message]:
    """Ask the chat model to reword an image prompt that the image model refused."""
    return _ask(
        f"An image model refused this prompt on content-policy grounds:\n<<<\n{prompt}\n>>>\n\n"
        f"Rewrite it so that it is acceptable. {SAFE_NOTE} Keep the subjects, setting, mood and visual "
        "style as far as possible. Use at most 120 words."
    )


def softened(messages: list[Message]) -> list[Message]:
    """The same request with a safety note added and the user's text softened."""
    out: list[Message] = []
    for m in messages:
        if m["role"] == "system":
            out.append({**m, "content": f"{m['content']}\n{SAFE_NOTE}"})
        elif m["role"] == "user" and isinstance(m["content"], str):
            out.append({**m, "content": soften(m["content"])})
        elif m["role"] == "user" and isinstance(m["content"], list):
            parts = [
                {**p, "text": p["text"] + "\n(This is a neutral quality review of an artwork.)"} if p.get("type") == "text" else p
                for p in m["content"]
            ]
            out.append({**m, "content": parts})
        else:
            out.append(m)
    if not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system", "content": SAFE_NOTE})
    return out
