"""Ranking by comparison (``ranking="tournament"``): the top M of a pool, asking a judge about pairs.

The pool is the surviving parents and their children. Selection is a merge tournament: every
candidate starts as a list of one, and lists are merged pairwise, level by level, each merge cut at M. The
merges of one level run at once. A pair whose order follows from earlier verdicts (A beat B,
B beat C) is never asked; what the verdicts imply among the parents is kept into the next iteration.

Because only undecided pairs are asked, the known order never holds a cycle. A comparison
the judge could not answer falls back to the absolute score, then age (``Candidate.rank_key``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..candidate import Candidate, Key, ref_dict
from ..errors import BeamkitError
from ..providers.base import judging_role

Side = Literal["a", "b"]
#: asks which of two candidates (in this order) is better: "a" or "b"
Ask = Callable[[Key, Key], Awaitable[Side]]


class Known:
    """The order that the verdicts so far imply: a strict partial order over candidate keys."""

    def __init__(self, transitive: bool = True) -> None:
        self.transitive = transitive
        #: key -> the keys it is known to beat (closed under transitivity when ``transitive``)
        self.beats: dict[Key, set[Key]] = {}

    def decided(self, a: Key, b: Key) -> Side | None:
        if b in self.beats.get(a, ()):
            return "a"
        if a in self.beats.get(b, ()):
            return "b"
        return None

    def add(self, winner: Key, loser: Key) -> None:
        if not self.transitive:
            self.beats.setdefault(winner, set()).add(loser)
            return
        below = {loser} | self.beats.get(loser, set())
        for beaten in list(self.beats.values()):
            if winner in beaten:
                beaten |= below
        self.beats.setdefault(winner, set()).update(below)

    def keep(self, keys: set[Key]) -> None:
        """Forget every candidate but ``keys`` (what is implied among them stays).

        Without inference (a baseline for tests and the benchmark) nothing is carried over.
        """
        self.beats = {k: v & keys for k, v in self.beats.items() if k in keys} if self.transitive else {}


async def merge(x: list[Key], y: list[Key], m: int, known: Known, ask: Ask) -> list[Key]:
    """The best ``m`` of two lists each best first; asks only the pairs ``known`` leaves open."""
    out: list[Key] = []
    i = j = 0
    while len(out) < m and i < len(x) and j < len(y):
        side = known.decided(x[i], y[j]) or await ask(x[i], y[j])
        if side == "a":
            out.append(x[i])
            i += 1
        else:
            out.append(y[j])
            j += 1
    out += (x[i:] + y[j:])[: m - len(out)]
    return out


async def top(lists: list[list[Key]], m: int, known: Known, ask: Ask) -> list[Key]:
    """The best ``m`` of ``lists`` (each best first), best first."""
    lists = [lst[:m] for lst in lists if lst]
    while len(lists) > 1:
        pairs = list(zip(lists[0::2], lists[1::2]))
        merged = await asyncio.gather(*(merge(x, y, m, known, ask) for x, y in pairs))
        lists = list(merged) + ([lists[-1]] if len(lists) % 2 else [])
    return lists[0] if lists else []


def all_pairs(n: int) -> int:
    return n * (n - 1) // 2


def upper_bound(n: int, m: int) -> int:
    """The most comparisons ``top`` can ask for a pool of ``n`` singletons (no verdict known)."""
    sizes = [1] * n
    asked = 0
    while len(sizes) > 1:
        nxt = []
        for a, b in zip(sizes[0::2], sizes[1::2]):
            out = min(m, a + b)
            asked += min(out, a + b - 1)  # each question outputs one; the last of the shorter list is free
            nxt.append(out)
        sizes = nxt + ([sizes[-1]] if len(sizes) % 2 else [])
    return asked


@dataclass
class Vote:
    shown_first: Side
    winner: Side | None  # None: the judge's answer could not be used
    reason: str

    def to_wire(self) -> dict[str, Any]:
        return {"shownFirst": self.shown_first, "winner": self.winner, "reason": self.reason}


@dataclass
class Comparison:
    """One asked pair, ``a`` and ``b`` in the order the ranking asked."""

    iteration: int
    a: Key
    b: Key
    winner: Side
    votes: list[Vote] = field(default_factory=list)
    #: "score" when no vote could be used and the absolute score decided
    fallback: str | None = None

    @property
    def reason(self) -> str:
        for v in self.votes:
            if v.winner == self.winner:
                return v.reason
        return self.votes[0].reason if self.votes else ""

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "iteration": self.iteration,
            "a": ref_dict(self.a),
            "b": ref_dict(self.b),
            "shownFirst": self.votes[0].shown_first if self.votes else "a",
            "winner": self.winner,
            "reason": self.reason,
        }
        if len(self.votes) > 1:
            out["votes"] = [v.to_wire() for v in self.votes]
        if self.fallback:
            out["fallback"] = self.fallback
        return out


#: one call of the judge: (first image, second image, seed) -> (position of the better one: "a" the
#: first shown, "b" the second; None when its answer could not be read, and the reason)
JudgeCall = Callable[[bytes, bytes, int], Awaitable[tuple[Side | None, str]]]


class Tournament:
    """The tournament of one job: keeps the verdicts among the beam from one iteration to the next."""

    def __init__(self, judge: JudgeCall, seed: Callable[..., int], votes: int = 1,
                 on_comparison: Callable[[Comparison], None] | None = None, transitive: bool = True) -> None:
        self.judge = judge
        self.seed = seed
        self.votes = votes
        self.on_comparison = on_comparison or (lambda c: None)
        self.known = Known(transitive)
        #: comparisons asked per iteration
        self.asked: dict[int, int] = {}

    async def select(self, iteration: int, parents: list[Candidate], children: list[Candidate], m: int,
                     pngs: dict[Key, bytes]) -> list[Candidate]:
        """The best ``m`` of parents (best first) and children, best first."""
        by_key = {c.key: c for c in parents + children}

        async def ask(a: Key, b: Key) -> Side:
            self.asked[iteration] = self.asked.get(iteration, 0) + 1
            comparison = await self._compare(iteration, by_key[a], by_key[b], pngs)
            winner, loser = (a, b) if comparison.winner == "a" else (b, a)
            self.known.add(winner, loser)
            self.on_comparison(comparison)
            return comparison.winner

        # Every candidate starts alone (a balanced bracket); what is known of the parents' order
        # from the last iteration spares those questions.
        best = await top([[c.key] for c in parents + children], m, self.known, ask)
        self.known.keep(set(best))
        return [by_key[k] for k in best]

    async def _compare(self, iteration: int, a: Candidate, b: Candidate, pngs: dict[Key, bytes]) -> Comparison:
        # The pair's seed ignores the iteration: the same two pictures get the same verdict.
        pair = sorted((a.key, b.key))

        async def vote(k: int) -> Vote:
            s = self.seed("compare", *pair[0], *pair[1], k)
            shown: Side = "a" if s & 1 == 0 else "b"
            first, second = (a, b) if shown == "a" else (b, a)
            try:
                said, reason = await self.judge(pngs[first.key], pngs[second.key], s)
            except BeamkitError as exc:
                if exc.fatal:  # a refused key fails every later call too: the job ends
                    raise
                return Vote(shown, None, exc.message)
            except Exception as exc:  # noqa: BLE001 - a failed vote falls back to the others, then the score
                return Vote(shown, None, f"{type(exc).__name__}: {exc}")
            if said is None:
                return Vote(shown, None, reason)
            # The judge speaks of positions; map its answer back to the candidates.
            picked = first if said == "a" else second
            return Vote(shown, "a" if picked is a else "b", reason)

        votes = list(await asyncio.gather(*(vote(k) for k in range(self.votes))))
        tally = [v.winner for v in votes if v.winner is not None]
        na, nb = tally.count("a"), tally.count("b")
        if na != nb:
            return Comparison(iteration, a.key, b.key, "a" if na > nb else "b", votes)
        winner: Side = "a" if a.rank_key() < b.rank_key() else "b"
        return Comparison(iteration, a.key, b.key, winner, votes, fallback="score")


class KeepingRecorder:
    """A Recorder that also keeps each picture's bytes in memory, for the judge.

    The engine has each picture when it scores it; keeping the bytes of the pool (at most N
    children and M parents) saves reading them back. ``keep`` drops all but the beam.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.pngs: dict[Key, bytes] = {}

    def image_path(self, iteration: int, candidate_id: int) -> str:
        return str(self.inner.image_path(iteration, candidate_id))

    def save_image(self, iteration: int, candidate_id: int, png: bytes) -> asyncio.Future[None]:
        self.pngs[(iteration, candidate_id)] = png
        fut: asyncio.Future[None] = self.inner.save_image(iteration, candidate_id, png)
        return fut

    def checkpoint(self, record: Any) -> None:
        self.inner.checkpoint(record)

    async def flush(self) -> None:
        await self.inner.flush()

    def keep(self, keys: set[Key]) -> None:
        self.pngs = {k: v for k, v in self.pngs.items() if k in keys}


def for_search(search: Any) -> Tournament:
    """The tournament of a ``BeamSearch``: judge calls under the judge role's limits (the vision
    role's when the job names no judge: its object judges), verdicts as events."""
    from .. import events as ev
    from ..errors import InvalidRequest

    judge = search.providers.judge
    if judge is None:
        raise InvalidRequest(f"ranking='tournament' needs a judge, and the vision role's provider "
                             f"'{search.providers.providers.get('vision')}' cannot compare pictures: name a provider "
                             "that can as the judge role (providers={..., \"judge\": NAME}; `beamkit providers` "
                             "lists those that offer it)", "providers")
    kind = judging_role(search.providers.handles)
    prompt = search.params.prompt

    async def call(first: bytes, second: bytes, seed: int) -> tuple[Side | None, str]:
        verdict = await search._call(kind, judge.compare, first, second, prompt, seed=seed)
        winner = getattr(verdict, "winner", None)
        if winner not in ("a", "b"):
            return None, f"the judge answered {winner!r}, not 'a' or 'b'"
        return winner, str(getattr(verdict, "reason", "") or "")

    def on_comparison(c: Comparison) -> None:
        wire = c.to_wire()
        search.record.comparisons.append(wire)
        search.emit(ev.comparison(search.job_id, wire))

    return Tournament(call, search._seed, search.params.votes, on_comparison)


def comparisons(N: int, M: int, iterations: int) -> list[int]:
    """The most pairs a tournament job asks in each iteration (each asked ``votes`` times): what
    ``beamkit.estimate`` counts.

    Iteration 0 ranks its N children alone; each later one ranks the beam (at most M parents)
    with its N children. ``upper_bound`` grows with the pool, so fewer survivors ask no more; pairs
    that earlier verdicts decide (the parents' order among themselves, at least) are asked less often.
    """
    beam = min(M, N)
    return [upper_bound(N, beam)] + [upper_bound(N + beam, beam)] * (iterations - 1)
