"""A person's pairwise ratings of candidates, the next pair worth asking about, and how far the
person agrees with the model's ranking (docs/human-in-the-loop.md).

A rating says which of two candidates the person prefers. The human ranking is wins minus
losses over the rated candidates (ties broken by the model's order, so that an unrated
difference does not count as a disagreement); the model ranking is the final beam's order
(the tournament's ``rank`` when the job used one, the score order otherwise) followed by
every other scored candidate in score order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .candidate import Candidate, ref_dict
from .errors import InvalidRequest
from .events import timestamp

Ref = tuple[int, int]
WINNERS = ("a", "b")
_REF_TEXT = re.compile(r"(0|[1-9][0-9]{0,3})-(0|[1-9][0-9]{0,3})")


def parse_ref(value: Any, name: str = "ref") -> Ref:
    """A candidate reference: ``(iteration, candidateId)``, ``"i-c"`` or ``{"iteration", "candidateId"}``."""
    if isinstance(value, str):
        m = _REF_TEXT.fullmatch(value)
        if m:
            return (int(m.group(1)), int(m.group(2)))
    elif isinstance(value, Mapping):
        it, cid = value.get("iteration"), value.get("candidateId")
        if isinstance(it, int) and isinstance(cid, int) and _index(it) and _index(cid):
            return (it, cid)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_index(v) for v in value):
        return (value[0], value[1])
    raise InvalidRequest(f"'{name}' must name a candidate as [iteration, candidateId], \"i-c\" or "
                         f"{{\"iteration\", \"candidateId\"}}, got {value!r:.80}", name)


def _index(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def make_rating(a: Any, b: Any, winner: Any, known: Iterable[Ref] | None = None) -> dict[str, Any]:
    """A rating as stored and sent: ``{"a", "b", "winner", "timestamp"}``; bad input is INVALID_REQUEST.

    ``known``, when given, holds the candidates that may be rated (the scored ones).
    """
    ra, rb = parse_ref(a, "a"), parse_ref(b, "b")
    if ra == rb:
        raise InvalidRequest(f"a candidate cannot be rated against itself ({ra[0]}-{ra[1]})", "b")
    if winner not in WINNERS:
        raise InvalidRequest(f"'winner' must be \"a\" or \"b\", got {winner!r:.40}", "winner")
    if known is not None:
        pool = set(known)
        for name, ref in (("a", ra), ("b", rb)):
            if ref not in pool:
                raise InvalidRequest(f"'{name}': no scored candidate {ref[0]}-{ref[1]} in this job", name)
    return {"a": ref_dict(ra), "b": ref_dict(rb), "winner": winner, "timestamp": timestamp()}


def outcomes(ratings: Iterable[Mapping[str, Any]]) -> list[tuple[Ref, Ref]]:
    """Each well-formed rating as (winner, loser); others are skipped."""
    out = []
    for r in ratings:
        try:
            a, b = parse_ref(r.get("a")), parse_ref(r.get("b"))
        except InvalidRequest:
            continue
        if a == b or r.get("winner") not in WINNERS:
            continue
        out.append((a, b) if r["winner"] == "a" else (b, a))
    return out


def model_order(candidates: Iterable[Candidate], final_beam: Sequence[Ref] = ()) -> list[Ref]:
    """The model's ranking: the final beam as the job ordered it, then the other scored candidates by score."""
    ok = sorted((c for c in candidates if c.ok), key=Candidate.rank_key)
    keys = {c.key for c in ok}
    head = [tuple(r) for r in final_beam if tuple(r) in keys]
    rest = [c.key for c in ok if c.key not in set(head)]
    return [(r[0], r[1]) for r in head] + rest


def net_wins(pairs: Iterable[tuple[Ref, Ref]]) -> dict[Ref, int]:
    score: dict[Ref, int] = {}
    for w, l in pairs:
        score[w] = score.get(w, 0) + 1
        score[l] = score.get(l, 0) - 1
    return score


def human_order(pairs: Sequence[tuple[Ref, Ref]], model: Sequence[Ref]) -> list[Ref]:
    """The rated candidates, most net wins first; ties in the model's order."""
    score = net_wins(pairs)
    pos = {r: i for i, r in enumerate(model)}
    return sorted(score, key=lambda r: (-score[r], pos.get(r, len(pos)), r))


def _beats(pairs: Iterable[tuple[Ref, Ref]]) -> dict[Ref, set[Ref]]:
    """Who the person's ratings say each candidate beats, directly or through others."""
    direct: dict[Ref, set[Ref]] = {}
    for w, l in pairs:
        direct.setdefault(w, set()).add(l)
    closure: dict[Ref, set[Ref]] = {}
    for start in direct:
        seen: set[Ref] = set()
        todo = list(direct[start])
        while todo:
            r = todo.pop()
            if r not in seen:
                seen.add(r)
                todo.extend(direct.get(r, ()))
        closure[start] = seen
    return closure


def next_pair(model: Sequence[Ref], ratings: Iterable[Mapping[str, Any]],
              skipped: Iterable[tuple[Ref, Ref]] = ()) -> tuple[Ref, Ref] | None:
    """The pair most worth asking about, or None when every pair is rated or implied.

    Neighbours in the model's ranking come first (near the top first), then pairs further
    apart; a pair the person's own ratings already decide, directly or by transitivity, is
    never asked, nor one in ``skipped`` (either order).
    """
    beats = _beats(outcomes(ratings))
    skip = {frozenset(p) for p in skipped}
    for gap in range(1, len(model)):
        for i in range(len(model) - gap):
            a, b = model[i], model[i + gap]
            if b not in beats.get(a, ()) and a not in beats.get(b, ()) and frozenset((a, b)) not in skip:
                return (a, b)
    return None


def _finite(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 6)


def agreement(ratings: Iterable[Mapping[str, Any]], model: Sequence[Ref], k: int = 3) -> dict[str, Any]:
    """How the person's ranking (net wins) agrees with the model's over the rated candidates.

    ``spearman`` and ``kendall`` (scipy.stats, null with fewer than two rated candidates or
    no spread), ``topK`` overlap (the share of the person's top k that is in the model's top
    k among the rated candidates), and ``disagreements``: each rating whose winner the
    model ranks below its loser.
    """
    try:
        from scipy import stats
    except ImportError as exc:  # scipy comes with the sweep and test extras
        raise ImportError("agreement needs scipy: pip install 'beamkit[sweep]'") from exc
    pairs = outcomes(ratings)
    pos = {r: i for i, r in enumerate(model)}
    pairs = [(w, l) for w, l in pairs if w in pos and l in pos]
    score = net_wins(pairs)
    rated = sorted(score, key=lambda r: pos[r])  # in the model's order
    human = human_order(pairs, model)
    body: dict[str, Any] = {"rated": len(rated), "ratings": len(pairs), "k": k, "spearman": None, "kendall": None,
                            "spearmanP": None, "kendallP": None, "topK": None,
                            "humanOrder": [ref_dict(r) for r in human], "modelOrder": [ref_dict(r) for r in rated]}
    if len(rated) >= 2:
        model_scores = [-pos[r] for r in rated]
        human_scores = [score[r] for r in rated]
        if len(set(human_scores)) > 1:
            rho = stats.spearmanr(model_scores, human_scores)
            tau = stats.kendalltau(model_scores, human_scores)
            body.update(spearman=_finite(rho.statistic), spearmanP=_finite(rho.pvalue),
                        kendall=_finite(tau.statistic), kendallP=_finite(tau.pvalue))
    if rated:
        kk = min(k, len(rated))
        body["topK"] = round(len(set(human[:kk]) & set(rated[:kk])) / kk, 6)
    body["disagreements"] = [{"winner": ref_dict(w), "loser": ref_dict(l), "modelRank": {"winner": pos[w] + 1,
                              "loser": pos[l] + 1}} for w, l in pairs if pos[w] > pos[l]]
    return body


__all__ = ["Ref", "WINNERS", "agreement", "human_order", "make_rating", "model_order", "net_wins", "next_pair",
           "outcomes", "parse_ref", "ref_dict"]
