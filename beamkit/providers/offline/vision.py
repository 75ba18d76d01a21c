"""The offline vision model: measures a picture and judges it against the user's prompt.

Aesthetics (0..10) is the mean of five measured properties, each mapped to 0..1:
colourfulness (Hasler and Suesstrunk), RMS contrast, exposure, composition (where the
saliency mass sits and how concentrated it is) and sharpness (edge energy).

Alignment (0..100) combines what the picture *says* (the prompt embedded in its PNG text
chunk, read with the same vocabulary the painter uses) with what it *shows* (pixel checks
for the user's words that can be seen: "night" is dark, "dawn" has a warm horizon,
"ocean" puts blue at the bottom, "red" puts red hues in the picture, ...).

Every number is explained in ``analysis``; problems are listed in ``weaknesses`` with a
short tag before a colon, which the offline LLM's critique reads back.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from .vocab import BY_KEY, conflicts, find_terms, literal_words, same_word, tokens

F32 = np.float32
LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=F32)

#: Weights of the parts of alignment.
W_TEXT, W_EVIDENCE, W_STRUCTURE = 0.60, 0.25, 0.15
CONFLICT_PENALTY = 8.0
#: Points lost when content nobody asked for crowds out the request: up to CROWD_PENALTY as the
#: unrequested share of the picture's content grows, and LEAD_PENALTY when it leads the picture.
CROWD_PENALTY, LEAD_PENALTY = 30.0, 12.0
#: An unrequested setting crowds less than an unrequested subject; one extra of either is free.
SETTING_CROWD, FREE_EXTRAS = 0.7, 1.0
SYNONYM_CREDIT = 0.8
LITERAL_WEIGHT = 0.6


@dataclass
class Features:
    """Everything measured on one picture (values in 0..1 unless said otherwise)."""

    width: int
    height: int
    prompt: str | None
    mean_l: float
    contrast: float  # RMS contrast: standard deviation of luminance
    dark_clip: float  # share of nearly black pixels
    light_clip: float  # share of nearly white pixels
    colourfulness: float  # Hasler-Suesstrunk M, on the 0..255 scale
    sharpness: float  # mean gradient magnitude at 256 px
    sal_cx: float
    sal_cy: float
    sal_spread: float
    sal_total: float
    mean_sat: float
    warmth_horizon: float  # mean R - B in the middle band of rows
    warmth: float  # mean R - B over the whole picture
    top_l: float
    top_blue: float  # mean B - R in the top band
    bottom_blue: float  # share of bluish pixels in the bottom band
    bottom_snow: float
    bottom_sand: float
    mid_green: float
    vertical_edges: float  # share of edge energy that is vertical, in the middle band
    neon: float
    top_bright: float  # share of very bright pixels in the upper half (a sun or a moon)
    hue_share: dict[str, float]


HUES = {"red": 0, "orange": 30, "yellow": 55, "green": 120, "teal": 180, "blue": 220, "purple": 275, "pink": 320}


def _ramp(x: float, lo: float, hi: float) -> float:
    """0 at or below ``lo``, 1 at or above ``hi``, linear between."""
    if hi == lo:
        return 1.0 if x >= hi else 0.0
    return min(1.0, max(0.0, (x - lo) / (hi - lo)))


def measure(png: bytes) -> Features:
    img = Image.open(io.BytesIO(png))
    img.load()
    prompt = img.info.get("prompt")
    if prompt is None and hasattr(img, "text"):
        prompt = img.text.get("prompt")
    rgb = img.convert("RGB")
    w, h = rgb.size
    mid = rgb.resize((256, 256), Image.Resampling.BOX) if (w, h) != (256, 256) else rgb
    small = mid.reduce(2)
    a = np.asarray(small, dtype=F32) * F32(1 / 255)  # 128 x 128
    L = a[..., 0] * LUMA[0] + a[..., 1] * LUMA[1] + a[..., 2] * LUMA[2]
    R, G, B = a[..., 0], a[..., 1], a[..., 2]
    mx, mn = a.max(axis=2), a.min(axis=2)
    sat = np.where(mx > 1e-3, (mx - mn) / np.maximum(mx, 1e-3), 0).astype(F32)

    # colourfulness, Hasler & Suesstrunk (2003), on 0..255 values
    rg = (R - G) * 255
    yb = (0.5 * (R + G) - B) * 255
    M = math.sqrt(float(rg.std()) ** 2 + float(yb.std()) ** 2) + 0.3 * math.sqrt(float(rg.mean()) ** 2 + float(yb.mean()) ** 2)

    # sharpness: mean gradient magnitude of luminance at 128 px, after a 3x3 median that
    # removes grain (noise is not detail)
    Lm = np.asarray(small.convert("L").filter(ImageFilter.MedianFilter(3)), dtype=F32) * F32(1 / 255)
    gx = np.abs(np.diff(Lm, axis=1))[:-1, :]
    gy = np.abs(np.diff(Lm, axis=0))[:, :-1]
    sharp = float(np.sqrt(gx * gx + gy * gy).mean())
    band = slice(int(128 * 0.2), int(128 * 0.75))
    vx, vy = float(gx[band].sum()), float(gy[band].sum())
    vertical = vx / (vx + vy) if vx + vy > 1e-6 else 0.5

    # saliency at 64 px: how far each pixel's colour is from its row's median colour. Skies and
    # grounds change from row to row, so whatever spans a whole row is background; a subject
    # stands out from the row it sits in.
    s64 = small.reduce(2).filter(ImageFilter.BoxBlur(1))
    fine = np.asarray(s64, dtype=F32) * F32(1 / 255)
    S = np.sqrt(((fine - np.median(fine, axis=1, keepdims=True)) ** 2).sum(axis=2))
    Wt = S * S
    tot = float(Wt.sum())
    ys, xs = np.mgrid[0:64, 0:64].astype(F32) / 63
    if tot > 1e-9:
        cx, cy = float((Wt * xs).sum() / tot), float((Wt * ys).sum() / tot)
        spread = math.sqrt(float((Wt * ((xs - cx) ** 2 + (ys - cy) ** 2)).sum() / tot))
    else:
        cx, cy, spread = 0.5, 0.5, 1.0

    n = a.shape[0]
    top, midband, bottom = slice(0, int(n * 0.3)), slice(int(n * 0.3), int(n * 0.65)), slice(int(n * 0.65), n)
    hue = _hue(a, mx, mn)
    colourful = (sat > 0.25) & (mx > 0.2)
    share: dict[str, float] = {}
    total = float(L.size)
    for name, deg in HUES.items():
        d = np.abs(((hue - deg) + 180) % 360 - 180)
        share[name] = float((colourful & (d < 25)).sum()) / total
    neon_mask = (sat > 0.55) & (mx > 0.55) & (((hue > 280) & (hue < 335)) | ((hue > 165) & (hue < 200)))
    return Features(
        width=w,
        height=h,
        prompt=prompt,
        mean_l=float(L.mean()),
        contrast=float(L.std()),
        dark_clip=float((L < 0.03).mean()),
        light_clip=float((L > 0.97).mean()),
        colourfulness=M,
        sharpness=sharp,
        sal_cx=cx,
        sal_cy=cy,
        sal_spread=spread,
        sal_total=tot,
        mean_sat=float(sat.mean()),
        warmth_horizon=float((R[midband] - B[midband]).mean()),
        warmth=float((R - B).mean()),
        top_l=float(L[top].mean()),
        top_blue=float((B[top] - R[top]).mean()),
        bottom_blue=float(((B[bottom] > R[bottom] + 0.04) & (B[bottom] >= G[bottom] - 0.05)).mean()),
        bottom_snow=float(((L[bottom] > 0.68) & (sat[bottom] < 0.25)).mean()),
        bottom_sand=float(((R[bottom] > B[bottom] + 0.15) & (L[bottom] > 0.3)).mean()),
        mid_green=float(((G > R + 0.02) & (G > B) & (sat > 0.12))[int(n * 0.35) : int(n * 0.85)].mean()),
        vertical_edges=vertical,
        neon=float(neon_mask.mean()),
        top_bright=float((L[: n // 2] > 0.85).mean()),
        hue_share=share,
    )


def _hue(a: np.ndarray, mx: np.ndarray, mn: np.ndarray) -> np.ndarray:
    R, G, B = a[..., 0], a[..., 1], a[..., 2]
    d = np.maximum(mx - mn, 1e-6)
    h = np.where(mx == R, ((G - B) / d) % 6, np.where(mx == G, (B - R) / d + 2, (R - G) / d + 4))
    return (h * 60).astype(F32)


# -- aesthetics --------------------------------------------------------------------------------


COLOUR_LO, COLOUR_HI = 65.0, 95.0
CONTRAST_LO, CONTRAST_HI = 0.22, 0.28
EXPOSURE_LO, EXPOSURE_HI = 0.38, 0.58
SHARPNESS_SCALE = 0.016


def colour_score(M: float) -> float:
    """0 for grey, 1 between M = 65 and 95 (between "quite" and "highly" colourful); garish beyond."""
    if M <= COLOUR_LO:
        return M / COLOUR_LO
    if M <= COLOUR_HI:
        return 1.0
    return max(0.4, 1 - (M - COLOUR_HI) / 120)


def contrast_score(c: float) -> float:
    """RMS contrast: best between 0.22 and 0.28 of the luminance range; flat or harsh pictures lose."""
    if c < CONTRAST_LO:
        return c / CONTRAST_LO
    if c <= CONTRAST_HI:
        return 1.0
    return max(0.3, 1 - (c - CONTRAST_HI) / 0.25)


def exposure_score(mean_l: float, dark_clip: float, light_clip: float) -> float:
    """Mean luminance: 1 between 0.38 and 0.58, falling to 0 at 0.04 and 0.96; clipping costs extra."""
    if mean_l < EXPOSURE_LO:
        base = max(0.0, (mean_l - 0.04) / (EXPOSURE_LO - 0.04))
    elif mean_l <= EXPOSURE_HI:
        base = 1.0
    else:
        base = max(0.0, (0.96 - mean_l) / (0.96 - EXPOSURE_HI))
    penalty = 1.5 * max(0.0, dark_clip - 0.10) + 1.5 * max(0.0, light_clip - 0.10)
    return max(0.0, base - penalty)


SPREAD_TIGHT, SPREAD_DIFFUSE = 0.18, 0.36


def composition_score(f: Features) -> tuple[float, float, float]:
    """(score, placement, focus): where the saliency centroid sits, and how concentrated saliency is."""
    if f.sal_total <= 1e-6:
        return 0.0, 0.0, 0.0
    dx3 = min(abs(f.sal_cx - 1 / 3), abs(f.sal_cx - 2 / 3))
    dy3 = min(abs(f.sal_cy - 1 / 3), abs(f.sal_cy - 2 / 3))
    thirds = math.exp(-((dx3 / 0.07) ** 2)) * (0.6 + 0.4 * math.exp(-((dy3 / 0.12) ** 2)))
    centred = 0.85 * math.exp(-((abs(f.sal_cx - 0.5) / 0.05) ** 2)) * (0.6 + 0.4 * math.exp(-((abs(f.sal_cy - 0.5) / 0.15) ** 2)))
    placement = max(thirds, centred)
    focus = min(1.0, max(0.0, (SPREAD_DIFFUSE - f.sal_spread) / (SPREAD_DIFFUSE - SPREAD_TIGHT)))
    return 0.6 * placement + 0.4 * focus, placement, focus


def sharpness_score(e: float) -> float:
    """Mean gradient magnitude E at 128 px, saturating: 1 - exp(-E / 0.016) (E = 0.03 gives 0.85)."""
    return 1.0 - math.exp(-e / SHARPNESS_SCALE)


@dataclass
class Aesthetics:
    score: float
    parts: dict[str, float]
    values: dict[str, float]


def aesthetics(f: Features) -> Aesthetics:
    comp, placement, focus = composition_score(f)
    parts = {
        "colourfulness": colour_score(f.colourfulness),
        "contrast": contrast_score(f.contrast),
        "exposure": exposure_score(f.mean_l, f.dark_clip, f.light_clip),
        "composition": comp,
        "sharpness": sharpness_score(f.sharpness),
    }
    values = {
        "colourfulness": f.colourfulness,
        "contrast": f.contrast,
        "exposure": f.mean_l,
        "placement": placement,
        "focus": focus,
        "sharpness": f.sharpness,
    }
    return Aesthetics(10 * sum(parts.values()) / len(parts), parts, values)


# -- evidence: can the user's words be seen? --------------------------------------------------

Check = Callable[[Features], float]

EVIDENCE: dict[str, tuple[Check, str]] = {
    "dawn": (lambda f: _ramp(f.warmth_horizon, 0.02, 0.22) * _ramp(f.mean_l, 0.08, 0.3), "a warm glow near the horizon"),
    "sunset": (lambda f: _ramp(f.warmth_horizon, 0.02, 0.22) * _ramp(f.mean_l, 0.06, 0.25), "a warm glow near the horizon"),
    "day": (lambda f: _ramp(f.top_l, 0.25, 0.55) * (0.5 + 0.5 * _ramp(f.top_blue, 0.0, 0.2)), "a bright, blue upper sky"),
    "night": (lambda f: _ramp(0.42 - f.mean_l, 0.0, 0.28), "an overall dark picture"),
    "twilight": (lambda f: _ramp(0.5 - f.mean_l, 0.0, 0.25) * _ramp(f.top_blue, -0.02, 0.1), "a dim, blue sky"),
    "fog": (lambda f: _ramp(0.24 - f.contrast, 0.0, 0.12), "low contrast, as if seen through fog"),
    "snow": (lambda f: _ramp(f.bottom_snow, 0.0, 0.4), "white ground"),
    "winter": (lambda f: _ramp(f.bottom_snow, 0.0, 0.4), "white ground"),
    "ocean": (lambda f: _ramp(f.bottom_blue, 0.0, 0.5), "blue water in the lower part"),
    "lake": (lambda f: _ramp(f.bottom_blue, 0.0, 0.35), "blue water in the lower part"),
    "beach": (lambda f: _ramp(f.bottom_blue + f.bottom_sand, 0.0, 0.5), "water or sand in the lower part"),
    "underwater": (lambda f: _ramp(f.bottom_blue, 0.0, 0.5) * _ramp(f.top_blue, 0.0, 0.15), "blue everywhere"),
    "forest": (lambda f: _ramp(f.mid_green, 0.0, 0.22), "green foliage across the middle"),
    "jungle": (lambda f: _ramp(f.mid_green, 0.0, 0.3), "green foliage across the middle"),
    "desert": (lambda f: _ramp(f.bottom_sand, 0.0, 0.45), "warm sand in the lower part"),
    "canyon": (lambda f: _ramp(f.bottom_sand + f.warmth, 0.0, 0.4), "warm rock"),
    "city": (lambda f: _ramp(f.vertical_edges, 0.45, 0.62), "the vertical edges of buildings"),
    "pastel": (lambda f: _ramp(f.mean_l, 0.5, 0.68) * (1 - _ramp(f.mean_sat, 0.4, 0.6)), "light, softly coloured tones"),
    "vibrant": (lambda f: _ramp(f.colourfulness, 20, 75), "strong colour"),
    "monochrome": (lambda f: 1 - _ramp(f.colourfulness, 6, 25), "no colour"),
    "sepia": (lambda f: _ramp(f.warmth, 0.05, 0.2) * (1 - _ramp(f.mean_sat, 0.35, 0.6)), "brownish, faded tones"),
    "neon": (lambda f: _ramp(f.neon, 0.0, 0.03), "saturated magenta and cyan light"),
    "bright": (lambda f: _ramp(f.mean_l, 0.4, 0.6), "a bright picture"),
    "lowkey": (lambda f: _ramp(0.45 - f.mean_l, 0.0, 0.2), "a dark, moody picture"),
    "golden": (lambda f: _ramp(f.warmth, 0.02, 0.18), "warm light"),
    "warm": (lambda f: _ramp(f.warmth, 0.02, 0.18), "warm tones"),
    "moonlight": (lambda f: _ramp(-f.warmth, -0.02, 0.08), "cool light"),
    "cool": (lambda f: _ramp(-f.warmth, -0.02, 0.08), "cool tones"),
    "dramatic_light": (lambda f: _ramp(f.contrast, 0.15, 0.27), "strong contrast"),
    "soft": (lambda f: _ramp(0.30 - f.contrast, 0.0, 0.12), "gentle contrast"),
    "sharp": (lambda f: _ramp(f.sharpness, 0.02, 0.05), "crisp detail"),
    "softfocus": (lambda f: _ramp(0.04 - f.sharpness, 0.0, 0.025), "a soft, blurred look"),
}
EVIDENCE["moon"] = (lambda f: _ramp(f.top_bright, 0.0, 0.004), "a bright disc in the sky")


def subject_check(f: Features) -> float:
    """Evidence for any named subject: something stands out (concentrated saliency)."""
    if f.sal_total <= 1e-6:
        return 0.0  # a blank picture shows nothing at all
    return 0.3 + 0.7 * composition_score(f)[2]


for _name in HUES:
    def _hue_check(f: Features, _n: str = _name) -> float:
        return _ramp(f.hue_share[_n], 0.0, 0.12)

    EVIDENCE[_name] = (_hue_check, f"{_name} hues")


# -- alignment ----------------------------------------------------------------------------------


@dataclass
class Intent:
    """What the user asked for, read with the vocabulary."""

    keys: list[str]
    forms: dict[str, str]  # key -> the form the user wrote
    literals: list[str]


def read_intent(user_prompt: str) -> Intent:
    keys: list[str] = []
    forms: dict[str, str] = {}
    for m in find_terms(user_prompt):
        if m.term.key not in forms:
            keys.append(m.term.key)
            forms[m.term.key] = m.form
    # a request of stopwords only ("the") asks for nothing in particular: every prompt carries it
    return Intent(keys, forms, literal_words(user_prompt))


READ_FULLY, READ_LIMIT = 40, 77


def position_weight(token_index: int) -> float:
    """How much a word counts by where it sits: fully in the first 40 words, fading to half at
    word 77, and not at all beyond, where the painter (like CLIP's text encoder) stops reading."""
    if token_index < READ_FULLY:
        return 1.0
    if token_index >= READ_LIMIT:
        return 0.0
    return 1.0 - 0.5 * (token_index - READ_FULLY) / (READ_LIMIT - READ_FULLY)


@dataclass
class Alignment:
    score: float
    text: float
    evidence: float | None
    structure: float
    conflicts: list[tuple[str, str]]  # (word in the prompt, user's word it contradicts)
    missing: list[str]  # user words the prompt never says
    synonyms: list[tuple[str, str]]  # (word used, user's word)
    extras: list[str]  # content words nobody asked for
    focal: str | None
    #: share of the picture's content that nobody asked for, past one free extra (0..1)
    crowding: float
    #: the content the picture leads with when it is not the user's (None: the user's leads)
    lead: str | None
    checks: dict[str, float]
    buried: list[tuple[str, int]]  # (user word, its word position) where it counts less
    length: int  # words in the prompt


def alignment(f: Features, user_prompt: str) -> Alignment:
    intent = read_intent(user_prompt)
    prompt = f.prompt or ""
    pm = find_terms(prompt)
    p_forms: dict[str, set[str]] = {}
    p_first: dict[str, int] = {}
    p_order: list[str] = []
    for m in pm:
        p_forms.setdefault(m.term.key, set()).add(m.form)
        p_first.setdefault(m.term.key, m.start)
        if m.term.key not in p_order:
            p_order.append(m.term.key)
    p_toks = tokens(prompt)
    p_tok_first: dict[str, int] = {}
    for i, t in enumerate(p_toks):
        p_tok_first.setdefault(t, i)

    num = den = 0.0
    missing: list[str] = []
    synonyms: list[tuple[str, str]] = []
    buried: list[tuple[str, int]] = []
    for k in intent.keys:
        den += 1.0
        form = intent.forms[k]
        if k in p_forms:
            pos = position_weight(p_first[k])
            if pos < 1.0:
                buried.append((form, p_first[k]))
            if any(same_word(form, pf) for pf in p_forms[k]):
                num += pos
            else:
                num += SYNONYM_CREDIT * pos
                synonyms.append((sorted(p_forms[k])[0], form))
        else:
            missing.append(form)
    for w in intent.literals:
        den += LITERAL_WEIGHT
        if w in p_tok_first:
            pos = position_weight(p_tok_first[w])
            if pos < 1.0:
                buried.append((w, p_tok_first[w]))
            num += LITERAL_WEIGHT * pos
        else:
            missing.append(w)
    text = num / den if den else 1.0
    if not prompt:
        text = 0.0

    checks = {k: EVIDENCE[k][0](f) for k in intent.keys if k in EVIDENCE}
    subject_words = [k for k in intent.keys if BY_KEY[k].category == "subject" and k not in EVIDENCE]
    if subject_words:
        checks[subject_words[0]] = subject_check(f)
    evidence = sum(checks.values()) / len(checks) if checks else None

    user_terms = [BY_KEY[k] for k in intent.keys]
    found_conflicts: list[tuple[str, str]] = []
    for k in p_order:
        if k in intent.keys:
            continue
        term = BY_KEY[k]
        for u in user_terms:
            if conflicts(term, u):
                found_conflicts.append((sorted(p_forms[k])[0], intent.forms[u.key]))
                break
    content = [k for k in p_order if BY_KEY[k].category in ("subject", "setting")]
    extras = [k for k in content if k not in intent.keys]
    focus = 1.0 / (1.0 + 0.12 * max(0, len(extras) - 1))
    user_subjects = [k for k in intent.keys if BY_KEY[k].category == "subject"]
    p_subjects = [k for k in p_order if BY_KEY[k].category == "subject"]
    focal = p_subjects[0] if p_subjects else None
    if user_subjects:
        focal_ok = 1.0 if focal in user_subjects else (0.4 if any(k in p_subjects for k in user_subjects) else 0.0)
    else:
        focal_ok = 1.0
    structure = 0.5 * focus + 0.5 * focal_ok if prompt else 0.0
    # A real judge marks a picture down when what nobody asked for takes it over: an "ancient castle
    # sailing across the water" is not "a forest at dawn", however well it also shows a forest.
    user_content = [k for k in intent.keys if BY_KEY[k].category in ("subject", "setting")]
    asked = sum(1 for k in user_content if k in p_forms)
    unasked = sum(SETTING_CROWD if BY_KEY[k].category == "setting" else 1.0 for k in extras)
    over = max(0.0, unasked - FREE_EXTRAS)
    crowding = over / (asked + over) if asked + over > 0 else 0.0
    lead = content[0] if user_content and content and content[0] not in intent.keys else None
    crowd_cost = CROWD_PENALTY * crowding + (LEAD_PENALTY if lead else 0.0)

    if evidence is None:
        raw = (W_TEXT + W_EVIDENCE) * text + W_STRUCTURE * structure
    else:
        raw = W_TEXT * text + W_EVIDENCE * evidence + W_STRUCTURE * structure
    score = max(0.0, min(100.0, 100 * raw - CONFLICT_PENALTY * len(found_conflicts) - crowd_cost))
    return Alignment(
        score=score,
        text=text,
        evidence=evidence,
        structure=structure,
        conflicts=found_conflicts,
        missing=missing,
        synonyms=synonyms,
        extras=[BY_KEY[k].word for k in extras],
        focal=focal,
        crowding=crowding,
        lead=BY_KEY[lead].word if lead else None,
        checks=checks,
        buried=buried,
        length=len(p_toks),
    )


def intent_content_words(user_prompt: str) -> list[str]:
    """The subjects and settings the user asked for, as the user wrote them."""
    intent = read_intent(user_prompt)
    return [intent.forms[k] for k in intent.keys if BY_KEY[k].category in ("subject", "setting")]


# -- words ---------------------------------------------------------------------------------------


def _describe(f: Features, ae: Aesthetics, al: Alignment, user_prompt: str) -> tuple[str, list[str], list[str]]:
    strengths: list[str] = []
    weaknesses: list[str] = []
    p = ae.parts
    # aesthetics
    if p["exposure"] >= 0.8:
        strengths.append(f"well exposed: mean brightness {f.mean_l:.2f}")
    elif f.mean_l < 0.38:
        weaknesses.append(f"underexposed: mean brightness {f.mean_l:.2f} is too dark (aim for 0.38-0.58)")
    else:
        weaknesses.append(f"overexposed: mean brightness {f.mean_l:.2f} is washed out (aim for 0.38-0.58)")
    if p["contrast"] >= 0.8:
        strengths.append(f"good contrast: RMS {f.contrast:.2f}")
    elif f.contrast < CONTRAST_LO:
        weaknesses.append(f"flat contrast: RMS contrast {f.contrast:.2f} (aim for 0.22-0.28)")
    else:
        weaknesses.append(f"harsh contrast: RMS contrast {f.contrast:.2f} (aim for 0.22-0.28)")
    if p["colourfulness"] >= 0.8:
        strengths.append(f"rich colour: colourfulness {f.colourfulness:.0f}")
    elif f.colourfulness < COLOUR_LO:
        weaknesses.append(f"dull colour: colourfulness {f.colourfulness:.0f} (aim for 65-95)")
    else:
        weaknesses.append(f"garish colour: colourfulness {f.colourfulness:.0f} (aim for 65-95)")
    if p["sharpness"] >= 0.75:
        strengths.append(f"crisp detail: edge energy {f.sharpness:.3f}")
    else:
        weaknesses.append(f"soft detail: edge energy {f.sharpness:.3f} (crisp from 0.022)")
    comp, placement, focus = composition_score(f)
    where = f"saliency centred at ({f.sal_cx:.2f}, {f.sal_cy:.2f})"
    if comp >= 0.7:
        strengths.append(f"strong composition: {where}")
    else:
        if placement < 0.5:
            weaknesses.append(f"weak composition: {where}, far from the thirds lines and the centre")
        if focus < 0.5:
            weaknesses.append(f"no clear focal point: saliency spread {f.sal_spread:.2f}")
    # alignment
    for w in al.missing:
        weaknesses.append(f"missing word: the picture's prompt never says '{w}'")
    for used, want in al.conflicts:
        weaknesses.append(f"contradiction: '{used}' contradicts the requested '{want}'")
    for used, want in al.synonyms:
        weaknesses.append(f"synonym: '{used}' stands in for the requested '{want}'")
    for w, pos in al.buried:
        weaknesses.append(f"buried: '{w}' first appears at word {pos + 1}; words after {READ_FULLY} count less and after {READ_LIMIT} not at all")
    if al.length > READ_LIMIT:
        weaknesses.append(f"too long: the prompt has {al.length} words and the painter reads only the first {READ_LIMIT}")
    if al.lead:
        asked = next((w for w in intent_content_words(user_prompt)), "the request")
        weaknesses.append(f"crowded out: the picture leads with '{al.lead}', which nobody asked for, not '{asked}'")
    if len(al.extras) > 2 or al.crowding > 0:
        weaknesses.append(f"clutter: unrequested subjects compete for attention ({', '.join(repr(e) for e in al.extras)})")
    for k, v in al.checks.items():
        what = EVIDENCE[k][1] if k in EVIDENCE else "one thing standing out as the subject"
        word = BY_KEY[k].word
        if v < 0.5:
            weaknesses.append(f"looks wrong for '{word}': the pixels do not show {what} (check {v:.2f})")
        elif v >= 0.75:
            strengths.append(f"looks like '{word}': {what} (check {v:.2f})")
    if not al.missing and not al.conflicts and al.text > 0:
        strengths.append("every word of the request is in the picture's prompt")

    ev = "no pixel check applies" if al.evidence is None else f"pixel evidence {al.evidence:.2f} over {len(al.checks)} check(s)"
    analysis = (
        f"Alignment {al.score:.0f}/100: the prompt carries the request with text score {al.text:.2f}, {ev}, "
        f"focus {al.structure:.2f}"
        + (f", minus {CONFLICT_PENALTY:.0f} for each of {len(al.conflicts)} contradiction(s)" if al.conflicts else "")
        + (f", minus {CROWD_PENALTY * al.crowding:.0f} for unrequested content ({al.crowding:.0%} of it)" if al.crowding else "")
        + (f", minus {LEAD_PENALTY:.0f} because '{al.lead}' leads the picture" if al.lead else "")
        + (f"; missing: {', '.join(al.missing)}" if al.missing else "")
        + f". Aesthetics {ae.score:.1f}/10, the mean of colourfulness {f.colourfulness:.0f} ({p['colourfulness']:.2f}), "
        f"contrast {f.contrast:.2f} ({p['contrast']:.2f}), exposure {f.mean_l:.2f} ({p['exposure']:.2f}), "
        f"composition ({p['composition']:.2f}, {where}) and sharpness {f.sharpness:.3f} ({p['sharpness']:.2f})."
    )
    if f.prompt is None:
        analysis += " The image carries no prompt text, so alignment rests on the pixels alone."
    return analysis, strengths, weaknesses


@dataclass
class Judgement:
    alignment: float
    aesthetic: float
    analysis: str
    strengths: list[str]
    weaknesses: list[str]
    features: Features
    parts: dict[str, float]


def judge(png: bytes, user_prompt: str) -> Judgement:
    f = measure(png)
    ae = aesthetics(f)
    al = alignment(f, user_prompt)
    analysis, strengths, weaknesses = _describe(f, ae, al, user_prompt)
    return Judgement(round(al.score, 2), round(ae.score, 3), analysis, strengths, weaknesses, f, ae.parts)


__all__ = ["judge", "measure", "aesthetics", "alignment", "read_intent", "EVIDENCE"]
