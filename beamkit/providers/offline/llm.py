"""The offline LLM: writes, critiques and rewrites prompts from the vocabulary, no model involved.

* ``expand`` rewrites the user's prompt the way a sampled LLM would: it keeps most of the
  user's words but drifts (drops a word, swaps it for a neighbour, uses a synonym), and
  adds details the user never asked for. WHAT expansions talk content, HOW expansions
  talk visual execution. The temperature sets how far it drifts and how unusual the
  added words are.
* ``critique`` reads a candidate (its prompts, its scores, the vision model's
  weaknesses) and says what to change on one dimension, as concrete edits:
  ``add 'dawn'``, ``replace 'dusk' with 'dawn'``, ``remove 'bridge'``, ``put 'fox' first``.
* ``refine`` applies those edits, each with a probability, and sometimes adds a random
  change of its own; so children of one parent differ, and most move the scores up.
* ``combine`` joins WHAT and HOW into the prompt that is painted.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable

from ...candidate import HOW, WHAT, Candidate, Dimension
from ..base import DEFAULT_TEMPERATURE
from .vision import read_intent
from .vocab import (
    BY_CATEGORY,
    BY_KEY,
    HOW_CATEGORIES,
    STOPWORDS,
    WHAT_CATEGORIES,
    Term,
    conflicts,
    find_terms,
    same_word,
    siblings,
    words,
)

PREPOSITIONS = frozenset("a an the at in on by under over with beneath near across through into onto of".split())


def _rng(seed: int, *parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def pick(rng: random.Random, items: list, temperature: float):
    """Choose from a list ordered from ordinary to unusual; hotter samplers reach further down."""
    if not items:
        return None
    tau = 0.6 + 6.0 * max(0.0, temperature)
    weights = [math.exp(-i / tau) for i in range(len(items))]
    return rng.choices(items, weights)[0]


def phrases(prompt: str) -> list[str]:
    return [p.strip() for p in re.split(r"[,;.\n]+", prompt) if p.strip()]


def _join(parts: list[str]) -> str:
    out: list[str] = []
    seen: set[str] = set()
    for p in parts:
        p = re.sub(r"\s+", " ", p).strip(" ,")
        if p and p.lower() not in seen:
            seen.add(p.lower())
            out.append(p)
    return ", ".join(out)


def _has_word(text: str, form: str) -> bool:
    return re.search(r"(?<![a-z0-9])" + re.escape(form.lower()) + r"(?![a-z0-9])", text.lower().replace("-", " ")) is not None


def _term_for(word: str) -> Term | None:
    ms = find_terms(word)
    return ms[0].term if len(ms) == 1 else None


class OfflineLLM:
    def __init__(self, temperature: float = DEFAULT_TEMPERATURE, count: Callable[[str], None] | None = None) -> None:
        self.temperature = max(0.0, min(2.0, float(temperature)))
        self._count = count or (lambda op: None)

    # -- drift knobs -----------------------------------------------------------------------------

    @property
    def p_drop(self) -> float:
        return 0.08 + 0.09 * self.temperature

    @property
    def p_swap(self) -> float:
        return 0.06 + 0.12 * self.temperature

    @property
    def p_synonym(self) -> float:
        return 0.10 + 0.05 * self.temperature

    # -- expand ----------------------------------------------------------------------------------

    async def expand(self, prompt: str, dimension: Dimension, *, seed: int) -> str:
        self._count("expand")
        rng = _rng(seed, "expand", dimension, prompt)
        return self._expand_what(prompt, rng) if dimension == WHAT else self._expand_how(prompt, rng)

    def _drift(self, term: Term, form: str, rng: random.Random) -> str | None:
        """What a sampled writer does with one of the user's words: keep, drop, swap or rephrase it."""
        r = rng.random()
        if r < self.p_drop:
            return None
        if r < self.p_drop + self.p_swap:
            other = pick(rng, siblings(term), self.temperature)
            return other.word if other else form
        if r < self.p_drop + self.p_swap + self.p_synonym:
            alts = [f for f in term.forms if not same_word(f, form)]
            if alts:
                return rng.choice(alts)
        return form

    def _expand_what(self, user_prompt: str, rng: random.Random) -> str:
        ws = words(user_prompt)
        matches = {m.start: m for m in find_terms(user_prompt)}
        core: list[str] = []
        have: set[str] = set()
        i = 0
        while i < len(ws):
            m = matches.get(i)
            if m is None:
                w = ws[i]
                if w in STOPWORDS or len(w) < 3 or rng.random() >= self.p_drop * 0.5:
                    core.append(w)
                else:
                    self._trim(core)
                i += 1
                continue
            i = m.end
            if m.term.dimension == HOW:
                self._trim(core)
                continue
            new = self._drift(m.term, m.form, rng)
            if new is None:
                self._trim(core)
                continue
            t = _term_for(new)
            have.add(t.key if t else m.term.key)
            core.append(new)
        self._trim_tail(core)
        text = " ".join(core)
        extras = self._extras(rng, have)
        if not text:
            return _join(extras)
        return _join([text, *extras])

    @staticmethod
    def _trim(core: list[str]) -> None:
        """Drop a dangling article or preposition left behind by a dropped word."""
        while core and core[-1] in PREPOSITIONS:
            core.pop()

    @staticmethod
    def _trim_tail(core: list[str]) -> None:
        while core and core[-1] in PREPOSITIONS | {"and", "or"}:
            core.pop()

    def _extras(self, rng: random.Random, have: set[str]) -> list[str]:
        """Details nobody asked for: a setting, a time, a mood, a second subject..."""
        t = self.temperature
        cats = {BY_KEY[k].category for k in have}
        plan: list[str] = []
        if "setting" not in cats and rng.random() < 0.8:
            plan.append("setting")
        if "time" not in cats and rng.random() < 0.55:
            plan.append("time")
        if rng.random() < 0.3:
            plan.append("weather")
        if rng.random() < 0.12:
            plan.append("season")
        if rng.random() < 0.65:
            plan.append("mood")
        if rng.random() < 0.55:
            plan.append("subject")
        if rng.random() < 0.2 + 0.2 * t:
            plan.append("subject")
        if rng.random() < 0.25:
            plan.append("action")
        out: list[str] = []
        chosen = [BY_KEY[k] for k in have]
        for cat in plan:
            pool = [x for x in BY_CATEGORY[cat] if x.key not in have and not any(conflicts(x, c) for c in chosen)]
            if cat in ("time", "season") and any(c.category == cat for c in chosen):
                continue
            term = pick(rng, pool, t)
            if term is None:
                continue
            chosen.append(term)
            have.add(term.key)
            out.append(term.say())
        rng.shuffle(out)
        return out

    def _expand_how(self, user_prompt: str, rng: random.Random) -> str:
        t = self.temperature
        parts: list[str] = []
        chosen: list[Term] = []
        for m in find_terms(user_prompt):
            if m.term.dimension != HOW:
                continue
            new = self._drift(m.term, m.form, rng)
            if new is None:
                continue
            term = _term_for(new) or m.term
            chosen.append(term)
            parts.append(term.say(new) if term.key != m.term.key or new != m.form else m.term.say(m.form))
        plan = [("lighting", 0.9), ("lighting", 0.15 + 0.15 * t), ("composition", 0.5), ("palette", 0.75), ("texture", 0.5), ("medium", 0.85)]
        for cat, p in plan:
            if rng.random() >= p:
                continue
            if cat == "medium" and any(c.category == "medium" for c in chosen):
                continue
            careful = rng.random() > 0.3 * t
            pool = [x for x in BY_CATEGORY[cat] if x not in chosen and not (careful and any(conflicts(x, c) for c in chosen))]
            term = pick(rng, pool, t)
            if term is None:
                continue
            chosen.append(term)
            parts.append(term.say(rng.choice(term.forms[:2])))
        if rng.random() < 0.1 + 0.1 * t:
            tint = pick(rng, BY_CATEGORY["color"], 2.0)
            parts.append(f"{tint.word} tones")
        rng.shuffle(parts)
        return _join(parts) or "natural light"

    # -- combine ---------------------------------------------------------------------------------

    async def combine(self, what: str, how: str, *, seed: int) -> str:
        self._count("combine")
        return _join(phrases(what) + phrases(how))

    # -- critique --------------------------------------------------------------------------------

    async def critique(self, candidate: Candidate, dimension: Dimension, user_prompt: str, *, seed: int) -> str:
        self._count("critique")
        rng = _rng(seed, "critique", dimension)
        return Critic(candidate, dimension, user_prompt, rng).write()

    # -- refine ----------------------------------------------------------------------------------

    async def refine(self, prompt: str, dimension: Dimension, critique: str, user_prompt: str, *, seed: int) -> str:
        self._count("refine")
        rng = _rng(seed, "refine", dimension, prompt)
        actions = parse_edits(critique, prompt, user_prompt)
        parts = phrases(prompt)
        p_apply = max(0.45, 0.85 - 0.15 * self.temperature)
        for k, action in enumerate(actions):
            if k == 0 or rng.random() < p_apply:
                parts = apply_edit(parts, action, rng, dimension)
        if rng.random() < 0.12 + 0.15 * self.temperature:
            parts = self._mutate(parts, dimension, user_prompt, rng)
        return _join(parts) or prompt

    def _mutate(self, parts: list[str], dimension: Dimension, user_prompt: str, rng: random.Random) -> list[str]:
        """An idea of the writer's own: one new word of the dimension, or one unrequested phrase dropped."""
        intent = read_intent(user_prompt)
        if rng.random() < 0.5 and len(parts) > 2:
            idx = [i for i, p in enumerate(parts) if not any(_has_word(p, f) for f in intent.forms.values())]
            if idx:
                parts = list(parts)
                del parts[rng.choice(idx)]
                return parts
        cats = WHAT_CATEGORIES if dimension == WHAT else HOW_CATEGORIES
        cat = rng.choice([c for c in cats if c != "color"])
        present = {m.term.key for m in find_terms(", ".join(parts))}
        pool = [t for t in BY_CATEGORY[cat] if t.key not in present]
        term = pick(rng, pool, self.temperature)
        return [*parts, term.say()] if term else parts


# -- critique ------------------------------------------------------------------------------------

#: For each weakness tag: (words that cause it, words that fix it), as term keys.
AESTHETIC_FIXES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "underexposed": (("lowkey", "dramatic_light", "moonlight", "sepia"), ("bright", "studio", "golden")),
    "underexposed-dark": (("lowkey", "dramatic_light"), ("studio", "lantern", "moonlight", "backlit")),
    "overexposed": (("bright", "pastel", "studio"), ("cinematic", "dramatic_light")),
    "flat contrast": (("soft", "pastel", "muted", "smooth", "softfocus", "sepia"), ("dramatic_light", "cinematic", "studio")),
    "harsh contrast": (("dramatic_light", "cinematic", "lowkey"), ("soft",)),
    "dull colour": (("monochrome", "muted", "sepia", "pastel", "sketch"), ("vibrant", "complementary", "golden")),
    "garish colour": (("vibrant", "neon"), ("complementary",)),
    "soft detail": (("softfocus", "smooth", "soft", "watercolor"), ("sharp",)),
    "weak composition": ((), ("thirds", "centered")),
    "no clear focal point": (("wide",), ("minimal", "closeup", "centered")),
}

#: For a pixel check that failed on a user's word: (causes, fixes) in the HOW prompt.
EVIDENCE_FIXES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "dawn": (("moonlight", "cool", "monochrome", "lowkey"), ("golden", "warm")),
    "sunset": (("moonlight", "cool", "monochrome", "lowkey"), ("golden", "warm")),
    "day": (("lowkey", "moonlight", "dramatic_light"), ("bright", "studio")),
    "night": (("bright", "studio", "golden", "pastel"), ("lowkey", "moonlight")),
    "twilight": (("bright", "golden", "warm"), ("moonlight", "cool")),
    "fog": (("dramatic_light", "cinematic", "sharp", "vibrant"), ("soft",)),
    "snow": (("lowkey", "warm", "sepia"), ("bright", "cool")),
    "winter": (("lowkey", "warm", "sepia"), ("bright", "cool")),
    "ocean": (("warm", "golden", "sepia", "monochrome"), ("cool",)),
    "lake": (("warm", "golden", "sepia", "monochrome"), ("cool",)),
    "underwater": (("warm", "golden", "sepia"), ("cool",)),
    "forest": (("monochrome", "sepia", "muted", "lowkey"), ("vibrant",)),
    "jungle": (("monochrome", "sepia", "muted", "lowkey"), ("vibrant",)),
    "desert": (("cool", "moonlight", "monochrome"), ("warm", "golden")),
    "canyon": (("cool", "moonlight", "monochrome"), ("warm", "golden")),
    "city": (("softfocus", "fog", "soft"), ("sharp",)),
    "pastel": (("vibrant", "dramatic_light", "lowkey", "neon"), ("soft", "bright")),
    "vibrant": (("muted", "monochrome", "sepia", "pastel"), ("complementary",)),
    "monochrome": (("vibrant", "neon", "complementary"), ()),
    "neon": (("pastel", "monochrome", "sepia", "muted", "bright"), ("lowkey",)),
    "golden": (("moonlight", "cool"), ("warm",)),
    "warm": (("moonlight", "cool"), ("golden",)),
    "moonlight": (("golden", "warm"), ("cool",)),
    "cool": (("golden", "warm"), ("moonlight",)),
    "bright": (("lowkey", "dramatic_light"), ("studio",)),
    "lowkey": (("bright", "studio"), ()),
    "dramatic_light": (("soft", "pastel"), ("cinematic",)),
    "soft": (("dramatic_light", "cinematic"), ("pastel",)),
    "sharp": (("softfocus", "smooth", "watercolor"), ()),
    "softfocus": (("sharp",), ()),
}

DARK_INTENT = frozenset({"night", "twilight", "lowkey", "mysterious"})


class Critic:
    """Writes one critique: a short diagnosis and a few concrete edits, most important first."""

    MAX_EDITS = 4

    def __init__(self, c: Candidate, dim: Dimension, user_prompt: str, rng: random.Random) -> None:
        self.c, self.dim, self.rng = c, dim, rng
        self.user_prompt = user_prompt
        self.intent = read_intent(user_prompt)
        self.user_terms = [BY_KEY[k] for k in self.intent.keys]
        self.prompt = c.prompt_of(dim) or ""
        self.combined = c.combined_prompt or _join(phrases(c.what_prompt) + phrases(c.how_prompt))
        self.here = {m.term.key: m.form for m in find_terms(self.prompt)}
        self.everywhere = {m.term.key: m.form for m in find_terms(self.combined)}
        self.edits: list[str] = []
        self.notes: list[str] = []

    # helpers
    def _blocked(self, key: str) -> bool:
        """A fix that would contradict the user, or is already there, is no fix."""
        t = BY_KEY[key]
        return key in self.everywhere or any(conflicts(t, u) for u in self.user_terms)

    def _protected(self, key: str) -> bool:
        return key in self.intent.keys

    def _edit(self, text: str, note: str) -> None:
        if text not in self.edits and len(self.edits) < self.MAX_EDITS:
            self.edits.append(text)
            self.notes.append(note)

    def _fix(self, causes: tuple[str, ...], fixes: tuple[str, ...], note: str) -> None:
        culprits = [k for k in causes if k in self.here and not self._protected(k)]
        options = [k for k in fixes if not self._blocked(k)]
        if options:
            self.rng.shuffle(options)
            new = BY_KEY[options[0]]
            # a fix replaces a word of its own group, or the culprit, rather than piling up beside it
            rival = next((k for k in self.here if conflicts(BY_KEY[k], new) and not self._protected(k)), None)
            old = rival or (culprits[0] if culprits else None)
            if old:
                self._edit(f"replace '{self.here[old]}' with '{new.say()}'", note)
            else:
                self._edit(f"add '{new.say()}'", note)
            culprits = [k for k in culprits if k != old]
        for k in culprits[:1]:
            self._edit(f"remove '{self.here[k]}'", note)

    def _home(self, key: str) -> Dimension:
        return BY_KEY[key].dimension if key in BY_KEY else WHAT  # type: ignore[return-value]

    # the diagnosis
    def write(self) -> str:
        c, dim = self.c, self.dim
        self._contradictions()
        self._missing()
        if dim == WHAT:
            self._synonyms()
            self._focal()
            self._clutter(force=self._tagged("crowded out") or self._tagged("clutter"))
        else:
            self._synonyms()
        self._weaknesses()
        if not self.edits:
            self._polish()
        label = "WHAT (content)" if dim == WHAT else "HOW (visual execution)"
        head = f"Critique of the {label} prompt"
        if c.total_score is not None:
            head += f" (alignment {c.alignment_score:.0f}/100, aesthetics {c.aesthetic_score:.1f}/10)"
        body = " ".join(f"{note} -> {edit}." for note, edit in zip(self.notes, self.edits))
        return f"{head}: {body}"

    def _contradictions(self) -> None:
        for key, form in self.here.items():
            if self._protected(key):
                continue
            t = BY_KEY[key]
            for u in self.user_terms:
                if conflicts(t, u):
                    want = self.intent.forms[u.key]
                    if u.dimension == self.dim and u.key not in self.everywhere:
                        self._edit(f"replace '{form}' with '{want}'", f"'{form}' contradicts the requested '{want}'")
                    else:
                        self._edit(f"remove '{form}'", f"'{form}' contradicts the requested '{want}'")
                    break

    def _missing(self) -> None:
        for key in self.intent.keys:
            want = self.intent.forms[key]
            if key in self.everywhere or self._home(key) != self.dim:
                continue
            term = BY_KEY[key]
            self._edit(f"add '{term.say() if want == term.word else want}'", f"the prompt never mentions '{want}'")
        if self.dim == WHAT:
            low = self.combined.lower()
            for w in self.intent.literals:
                if not _has_word(low, w) and w not in {t for t in re.findall(r"[a-z0-9]+", low)}:
                    self._edit(f"add '{w}'", f"the prompt never mentions '{w}'")

    def _synonyms(self) -> None:
        for key, form in self.here.items():
            if key in self.intent.forms and not same_word(form, self.intent.forms[key]):
                want = self.intent.forms[key]
                self._edit(f"replace '{form}' with '{want}'", f"'{form}' only paraphrases the requested '{want}'")

    def _focal(self) -> None:
        subs = [k for k in self.everywhere if BY_KEY[k].category == "subject"]
        wanted = [k for k in self.intent.keys if BY_KEY[k].category == "subject"]
        if wanted and subs and subs[0] not in wanted and wanted[0] in self.here:
            self._edit(f"put '{self.here[wanted[0]]}' first", f"the picture is built around '{self.everywhere[subs[0]]}', not the requested '{self.intent.forms[wanted[0]]}'")
        content = [k for k in self.everywhere if BY_KEY[k].category in ("subject", "setting")]
        asked = [k for k in self.intent.keys if BY_KEY[k].category in ("subject", "setting") and k in self.here]
        if not wanted and asked and content and content[0] not in self.intent.keys:
            self._edit(f"put '{self.here[asked[0]]}' first",
                       f"the picture leads with '{self.everywhere[content[0]]}', not the requested '{self.intent.forms[asked[0]]}'")
        if not subs and self._tagged("no clear focal point"):
            options = [t for t in BY_CATEGORY["subject"][:12] if not self._blocked(t.key)]
            if options:
                t = self.rng.choice(options)
                self._edit(f"add '{t.say()}'", "nothing in the picture draws the eye; add a focal subject")

    def _clutter(self, force: bool = False) -> None:
        extras = [k for k in self.here if BY_KEY[k].category in ("subject", "setting") and k not in self.intent.keys]
        if len(extras) > (0 if force else 1):
            drop = extras[-2:] if len(extras) > 3 else extras[-1:]
            for k in drop:
                self._edit(f"remove '{self.here[k]}'", f"'{self.here[k]}' was never asked for and competes with the request")

    def _tagged(self, tag: str) -> bool:
        return any(w.lower().startswith(tag) for w in self.c.weaknesses)

    def _length(self) -> None:
        """Words after the 77th are never read, and late words count less: move or cut."""
        for w in self.c.weaknesses:
            m = re.match(r"buried: '([^']+)'", w)
            if m and _has_word(self.prompt, m.group(1)):
                self._edit(f"put '{m.group(1)}' first", f"'{m.group(1)}' sits too late in the prompt to count fully")
        if self._tagged("too long") or self._tagged("buried"):
            spare = [p for p in phrases(self.prompt) if not any(_has_word(p, f) for f in self.intent.forms.values())
                     and not any(_has_word(p, w) for w in self.intent.literals)]
            for p in spare[-2:]:
                ms = find_terms(p)
                if ms:
                    self._edit(f"remove '{ms[0].form}'", "the prompt is longer than the painter reads; cut what was not asked for")

    def _weaknesses(self) -> None:
        self._length()
        dark_wanted = bool(DARK_INTENT & set(self.intent.keys))
        for w in self.c.weaknesses:
            low = w.lower()
            m = re.match(r"looks wrong for '([^']+)'", low)
            if m:
                t = _term_for(m.group(1))
                if t and t.key in EVIDENCE_FIXES and self.dim == HOW:
                    causes, fixes = EVIDENCE_FIXES[t.key]
                    self._fix(causes, fixes, f"the picture does not look like '{m.group(1)}' yet")
                elif t and t.category == "subject":
                    note = f"'{m.group(1)}' does not stand out in the picture"
                    if self.dim == HOW:
                        self._fix(("wide",), ("minimal", "closeup", "centered", "thirds"), note)
                    else:
                        self._clutter(force=True)
                continue
            if self.dim != HOW:
                continue
            for tag in AESTHETIC_FIXES:
                if tag.startswith("underexposed-"):
                    continue
                if low.startswith(tag) or (tag.split()[0] in low and ("too dark" in low if tag == "underexposed" else tag in low)):
                    key = "underexposed-dark" if tag == "underexposed" and dark_wanted else tag
                    causes, fixes = AESTHETIC_FIXES[key]
                    self._fix(causes, fixes, w)
                    break

    def _polish(self) -> None:
        """Nothing is wrong enough to name: suggest one small change that usually helps."""
        if self.dim == WHAT:
            extras = [k for k in self.here if BY_KEY[k].category in ("subject", "setting", "mood", "action") and k not in self.intent.keys]
            if extras:
                k = self.rng.choice(extras)
                self._edit(f"remove '{self.here[k]}'", "the content is on target; trim what was never asked for")
            else:
                self._edit("keep the content as it is", "the content carries every requested word")
        else:
            options = [k for k in ("sharp", "thirds", "complementary", "cinematic", "studio") if not self._blocked(k)]
            if options:
                k = self.rng.choice(options)
                self._fix((), (k,), "the execution is sound; one refinement")
            else:
                self._edit("keep the execution as it is", "the execution is sound")


# -- reading a critique back ------------------------------------------------------------------

_EDIT = re.compile(
    r"\b(replace|add|include|use|mention|remove|drop|avoid|cut|put)\s+"
    r"((?:'[^']+'(?:\s*(?:,|and|or)\s*)?)+)"
    r"(?:\s+(with|first))?"
    r"(?:\s+((?:'[^']+'(?:\s*(?:,|or)\s*)?)+))?",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"'([^']+)'")
_NEGATIVE = re.compile(r"\b(remove|drop|avoid|cut|without|less|too much|instead of|contradicts|never asked)\b", re.I)


def parse_edits(critique: str, prompt: str, user_prompt: str) -> list[tuple]:
    """The edits a critique asks for, in order: ("add", text), ("remove", text), ("replace", old, new), ("front", text).

    The offline critic writes them in a fixed form; any other critic (a real LLM) is read
    more loosely: vocabulary words in sentences that say remove/avoid are removed, other
    vocabulary words and missing user words that it mentions are added.
    """
    out: list[tuple] = []
    for m in _EDIT.finditer(critique):
        verb = m.group(1).lower()
        first = _QUOTED.findall(m.group(2))
        alts = len(first) > 1 and re.search(r"'\s*or\s*'", m.group(2), re.I) is not None
        if verb == "replace" and (m.group(3) or "").lower() == "with" and m.group(4):
            news = _QUOTED.findall(m.group(4))
            out.append(("replace", first[0], news))
        elif verb == "put" and (m.group(3) or "").lower() == "first":
            out.append(("front", first[0]))
        elif verb in ("remove", "drop", "avoid", "cut"):
            out.extend(("remove", w) for w in first)
        elif alts:
            out.append(("add", first))
        else:
            out.extend(("add", [w]) for w in first)
    if out:
        return out
    # a free-form critique
    low_prompt = prompt.lower()
    for sentence in re.split(r"(?<=[.!?;])\s+", critique):
        neg = bool(_NEGATIVE.search(sentence))
        for found in find_terms(sentence):
            present = _has_word(low_prompt, found.form)
            if neg and present:
                out.append(("remove", found.form))
            elif not neg and not present:
                out.append(("add", [found.term.say(found.form)]))
    intent = read_intent(user_prompt)
    for key, form in intent.forms.items():
        if _has_word(critique, form) and not _has_word(low_prompt, form) and ("add", [BY_KEY[key].say(form)]) not in out:
            out.append(("add", [BY_KEY[key].say(form)]))
    return out[:6]


def _remove(parts: list[str], form: str) -> list[str]:
    """Drop a word: the whole phrase if nothing meaningful is left ("a small house" -> gone),
    otherwise the word with the adjective and preposition that only served it
    ("a lighthouse on a rocky cliff" -> "a lighthouse")."""
    out: list[str] = []
    for p in parts:
        if not _has_word(p, form):
            out.append(p)
            continue
        rest = re.sub(r"(?<![a-z0-9])" + re.escape(form.lower()) + r"(?![a-z0-9])", " ", p.lower().replace("-", " "))
        if not find_terms(rest) and not any(w not in STOPWORDS and w not in PREPOSITIONS and len(w) > 3 for w in words(rest)[1:]):
            continue
        if not find_terms(rest) and len(words(rest)) <= 2:
            continue
        ws = p.replace("-", " ").split()
        fw = form.split()
        idx = next((i for i in range(len(ws)) if [w.strip(".,;").lower() for w in ws[i : i + len(fw)]] == [f.lower() for f in fw]), None)
        if idx is None:
            out.append(p)
            continue
        start, end = idx, idx + len(fw)
        if start > 0 and not find_terms(ws[start - 1]) and ws[start - 1].lower() not in PREPOSITIONS:
            start -= 1  # the adjective that only served the removed word
        while start > 0 and ws[start - 1].lower() in PREPOSITIONS:
            start -= 1
        kept = " ".join(ws[:start] + ws[end:]).strip()
        if kept:
            out.append(kept)
    return out


def apply_edit(parts: list[str], edit: tuple, rng: random.Random, dimension: Dimension) -> list[str]:
    kind = edit[0]
    if kind == "remove":
        return _remove(parts, edit[1])
    if kind == "front":
        hit = [p for p in parts if _has_word(p, edit[1])]
        return hit[:1] + [p for p in parts if p is not (hit[0] if hit else None)] if hit else parts
    if kind == "replace":
        old, news = edit[1], edit[2]
        new = rng.choice(news) if news else ""
        t_new = _term_for(new)
        new_word = new
        if t_new is not None:
            ms = find_terms(new)
            new_word = ms[0].form if ms else new
        out: list[str] = []
        done = False
        for p in parts:
            if not done and _has_word(p, old):
                t_old = _term_for(old)
                if t_old is not None and p.strip().lower() == t_old.say(old).lower():
                    out.append(new)  # the phrase was only that word: say the new one its own way
                elif t_old is not None and t_new is not None and t_old.category == t_new.category:
                    # same slot: swap the word inside its phrase ("at dusk" -> "at dawn")
                    p = re.sub(r"(?<![a-z0-9])" + re.escape(old) + r"(?![a-z0-9])", new_word, p, count=1, flags=re.I)
                    out.append(p)
                else:
                    out.append(new)
                done = True
            else:
                out.append(p)
        if not done:
            out = _insert(out, new, dimension)
        return out
    if kind == "add":
        options = edit[1]
        if not options:
            return parts
        new = rng.choice(options)
        if any(_has_word(p, w) for p in parts for w in [new]):
            return parts
        return _insert(parts, new, dimension)
    return parts


def _insert(parts: list[str], new: str, dimension: Dimension) -> list[str]:
    """WHAT additions go right after the main phrase (requested content early); HOW ones go last."""
    if dimension == WHAT and parts:
        return [parts[0], new, *parts[1:]]
    return [*parts, new]
