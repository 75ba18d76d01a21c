"""Reading model replies defensively.

A vision reply must yield two real numbers; anything that does not is a
:class:`ReplyError` with the reason, never a made-up score. A real 0 stays 0.
A comparison must name exactly one of the two pictures; a reply that names both,
or neither, is a :class:`ReplyError` too, never a guess.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

from ..base import Verdict, VisionResult

ALIGNMENT_KEYS = ("alignment", "alignmentScore", "alignment_score", "alignmentscore", "prompt_alignment", "alignment score")
AESTHETIC_KEYS = (
    "aesthetics", "aesthetic", "aestheticScore", "aesthetic_score", "aestheticsScore", "aesthetics_score", "aesthetic score",
)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n?(.*?)```", re.S)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


class ReplyError(ValueError):
    """A reply that cannot be read; the message says why."""


# --- JSON out of prose -------------------------------------------------------------------------

def _balanced_objects(text: str) -> list[str]:
    """Every top-level ``{...}`` span in ``text``, honouring strings and escapes."""
    spans, depth, start, in_str, esc, quote = [], 0, -1, False, False, ""
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == quote:
                in_str = False
            continue
        if ch in "\"'" and depth > 0:
            # single quotes only open a string right after a delimiter (so "don't" in prose is safe)
            if ch == '"' or text[i - 1] in "{[,: \t\n":
                in_str, quote = True, ch
            continue
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


def _loads(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except ValueError:
        pass
    repaired = re.sub(r",\s*([}\]])", r"\1", candidate)  # trailing commas
    try:
        return json.loads(repaired)
    except ValueError:
        pass
    try:  # single-quoted keys and strings, Python literals
        literal = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", repaired)))
        return ast.literal_eval(literal)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ReplyError("the JSON object is malformed") from None


def extract_json_object(text: str | None) -> dict[str, Any]:
    """The first JSON object in a reply: bare, inside a code fence, or surrounded by prose."""
    if text is None or not str(text).strip():
        raise ReplyError("the reply is empty")
    text = str(text).strip()
    pieces = [body for _, body in _FENCE.findall(text)] + [text]
    error: ReplyError | None = None
    for piece in pieces:
        piece = piece.strip()
        for candidate in ([piece] if piece.startswith("{") else []) + _balanced_objects(piece):
            try:
                value = _loads(candidate)
            except ReplyError as exc:
                error = exc
                continue
            if isinstance(value, dict):
                return value
    raise error or ReplyError("the reply holds no JSON object")


# --- numbers ------------------------------------------------------------------------------------

def _number(value: Any, name: str, top: float) -> float:
    """A score from a number or a string such as "85", "85%", "7/10" or "7.5 out of 10", clamped to 0..top."""
    if isinstance(value, bool) or value is None:
        raise ReplyError(f"'{name}' is {json.dumps(value)}, not a number")
    if isinstance(value, dict):
        for key in ("score", "value", "rating"):
            if key in value:
                return _number(value[key], name, top)
        raise ReplyError(f"'{name}' is an object without a score")
    if isinstance(value, (int, float)):
        x = float(value)
    elif isinstance(value, str):
        s = value.strip().lower().replace(",", ".")
        fraction = re.fullmatch(r"\s*([-+]?[\d.]+)\s*(?:/|out of|of)\s*([\d.]+)\s*", s)
        if fraction:
            num, den = float(fraction.group(1)), float(fraction.group(2))
            if den <= 0:
                raise ReplyError(f"'{name}' has a zero denominator: {value!r}")
            x = num / den * top
        else:
            found = _NUMBER.findall(s)
            if len(found) != 1:
                raise ReplyError(f"'{name}' is not a number: {value[:60]!r}")
            x = float(found[0])
    else:
        raise ReplyError(f"'{name}' is a {type(value).__name__}, not a number")
    if not math.isfinite(x):
        raise ReplyError(f"'{name}' is not finite")
    return min(max(x, 0.0), top)


def _pick(data: dict[str, Any], keys: tuple[str, ...]) -> tuple[bool, Any]:
    lowered = {str(k).lower().replace("-", "_"): v for k, v in data.items()}
    for key in keys:
        k = key.lower().replace("-", "_")
        if k in lowered:
            return True, lowered[k]
    for nest in ("scores", "score", "result", "evaluation"):
        inner = lowered.get(nest)
        if isinstance(inner, dict):
            found, value = _pick(inner, keys)
            if found:
                return found, value
    return False, None


def _text_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items = re.split(r"\n+|;\s*|(?:^|\s)[-*\u2022]\s+", value)
    elif isinstance(value, (list, tuple)):
        items = [v if isinstance(v, str) else json.dumps(v) for v in value]
    else:
        items = [str(value)]
    return [" ".join(i.split()).strip(" -*\u2022") for i in items if i and i.strip(" -*\u2022\n\t")]


def parse_scores(text: str | None) -> VisionResult:
    """Read ``{alignment, aesthetics, analysis, strengths, weaknesses}`` from a vision reply."""
    data = extract_json_object(text)
    found, alignment = _pick(data, ALIGNMENT_KEYS)
    if not found:
        raise ReplyError("the reply has no 'alignment' score")
    found, aesthetic = _pick(data, AESTHETIC_KEYS)
    if not found:
        raise ReplyError("the reply has no 'aesthetics' score")
    analysis = data.get("analysis") or data.get("explanation") or data.get("reasoning") or ""
    if not isinstance(analysis, str):
        analysis = json.dumps(analysis)
    return VisionResult(
        alignment_score=round(_number(alignment, "alignment", 100.0), 2),
        aesthetic_score=round(_number(aesthetic, "aesthetics", 10.0), 2),
        analysis=" ".join(analysis.split()),
        strengths=_text_list(data.get("strengths")),
        weaknesses=_text_list(data.get("weaknesses")),
    )


# --- verdicts of a comparison ------------------------------------------------------------------

WINNER_KEYS = ("winner", "better", "best", "choice", "chosen", "preferred", "preference", "pick", "selected",
               "answer", "verdict")
REASON_KEYS = ("reason", "reasoning", "explanation", "rationale", "why", "analysis")
#: a whole answer (or a winner's value) that names one picture: "a" is the first shown, "b" the second
_SIDE_WORDS = {"first": "a", "a": "a", "1": "a", "one": "a", "left": "a",
               "second": "b", "b": "b", "2": "b", "two": "b", "right": "b"}
_PICTURE = r"(?i:image|picture|photo|option|candidate|img)\s*#?\s*"
# A letter counts only in capitals: "image a lot sharper" names no picture, "image A" does.
_MENTIONS = {
    "a": re.compile(rf"\b(?i:first|left)\b|\b{_PICTURE}(?:(?i:1|one)|A)\b"),
    "b": re.compile(rf"\b(?i:second|right)\b|\b{_PICTURE}(?:(?i:2|two)|B)\b"),
}
_SHORT = re.compile(rf"(?:the\s+)?(?:{_PICTURE})?(\w+)(?:\s+(?:image|picture|photo|option|one))?")
_LABELLED = re.compile(
    r"\b(?:winner|answer|verdict|choice|preferred|pick)\b\W{0,4}(?:is\s+)?(?:the\s+)?"
    rf"({_PICTURE}(?:[12ab]|one|two)|first|second|left|right|[12ab])\b", re.I)


def _bare(text: str) -> str:
    """An answer without its quotes, emphasis and closing punctuation, in lower case."""
    return text.strip().strip("\"'`*.!:()[]").strip().lower()


def _named(text: str) -> set[str]:
    """The pictures a text mentions: {"a"}, {"b"}, both or neither."""
    return {side for side, pattern in _MENTIONS.items() if pattern.search(text)}


def _side(value: Any) -> str:
    """The picture a winner's value names: a word, a number, or a phrase naming exactly one."""
    if isinstance(value, bool) or value is None:
        raise ReplyError(f"'winner' is {json.dumps(value)}, not a picture")
    if isinstance(value, (int, float)) and value in (1, 2):
        return "a" if value == 1 else "b"
    if not isinstance(value, str):
        raise ReplyError(f"'winner' is {json.dumps(value)[:60]}, not a picture")
    short = _SHORT.fullmatch(_bare(value))  # "the second image", "picture b", "image #1", "first one"
    if short and short.group(1) in _SIDE_WORDS:
        return _SIDE_WORDS[short.group(1)]
    named = _named(value)
    if len(named) == 1:
        return named.pop()
    raise ReplyError(f"'winner' is {value[:60]!r}, which names {'both pictures' if named else 'neither picture'}")


def _from_prose(text: str) -> Verdict:
    word = _bare(text)
    if word in _SIDE_WORDS:  # a bare "Second" or "A"
        return Verdict(_SIDE_WORDS[word])  # type: ignore[arg-type]
    reason = " ".join(text.split())[:300]
    labelled = _LABELLED.search(text)
    if labelled:
        return Verdict(_side(labelled.group(1)), reason)  # type: ignore[arg-type]
    named = _named(text)
    if len(named) != 1:
        raise ReplyError(f"the reply names {'both pictures' if named else 'neither picture'}: {reason[:80]!r}")
    return Verdict(named.pop(), reason)  # type: ignore[arg-type]


def parse_verdict(text: str | None) -> Verdict:
    """Which picture a comparison reply prefers: ``"a"`` the first shown, ``"b"`` the second.

    Read from ``{"winner": ..., "reason": ...}`` (bare, fenced or inside prose; ``winner`` as
    first/second, a/b, 1/2 or left/right in any case, or a phrase naming one picture), else
    from plain text that names exactly one picture. Anything else is a :class:`ReplyError`.
    """
    if text is None or not str(text).strip():
        raise ReplyError("the reply is empty")
    text = str(text)
    try:
        data = extract_json_object(text)
    except ReplyError:
        return _from_prose(text)  # no JSON at all (a server without a JSON mode): the words decide
    found, value = _pick(data, WINNER_KEYS)
    if not found:
        raise ReplyError("the reply has no 'winner'")
    _, reason = _pick(data, REASON_KEYS)
    reason = reason if isinstance(reason, str) else "" if reason is None else json.dumps(reason)
    return Verdict(_side(value), " ".join(reason.split()))  # type: ignore[arg-type]


# --- prompts from the LLM -----------------------------------------------------------------------

_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:(?:new|refined|revised|improved|final|combined|expanded|updated)\s+)?"
    r"(?:what|how|image|combined)?\s*(?:prompt|part|description|critique)\s*(?:\*\*)?\s*:\s*(?:\*\*)?\s*",
    re.I,
)


def clean_text(text: str | None) -> str:
    """A prompt or critique as the model wrote it, without fences, labels and wrapping quotes."""
    if text is None:
        raise ReplyError("the reply is empty")
    s = str(text).strip()
    fenced = _FENCE.findall(s)
    if fenced:
        s = fenced[0][1].strip()
    s = _LABEL.sub("", s, count=1).strip()
    while len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'`" or (s[:1], s[-1:]) in {("\u201c", "\u201d"), ("\u00ab", "\u00bb")}:
        s = s[1:-1].strip()
    if not s:
        raise ReplyError("the reply is empty")
    return s
