"""Small parametric drawings of the subjects, with Pillow's ImageDraw.

Every glyph is called as ``draw_subject(kind, d, x, y, s, paint)``: ``(x, y)`` is where it
touches the ground (or its centre, for things in the sky), ``s`` its height in pixels, and
``paint(part, rgb)`` turns a base colour into the fill actually used. The painter calls a
glyph twice: once on the picture with lit colours, once on a mask with white, so that it
knows where the subject is (rim light, bokeh).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PIL import ImageDraw

RGB = tuple[float, float, float]
Paint = Callable[[str, RGB], "tuple[int, int, int] | int"]

#: Base colours of the subjects (0..1 RGB); "glow" parts are emissive and ignore the light.
BASE: dict[str, RGB] = {
    "lighthouse": (0.92, 0.90, 0.86),
    "tree": (0.20, 0.45, 0.18),
    "house": (0.70, 0.52, 0.36),
    "castle": (0.55, 0.53, 0.55),
    "boat": (0.55, 0.30, 0.18),
    "birds": (0.12, 0.12, 0.14),
    "fox": (0.88, 0.42, 0.12),
    "cat": (0.35, 0.33, 0.35),
    "dog": (0.62, 0.46, 0.30),
    "deer": (0.60, 0.42, 0.26),
    "wolf": (0.55, 0.56, 0.60),
    "horse": (0.45, 0.30, 0.20),
    "person": (0.30, 0.32, 0.50),
    "astronaut": (0.93, 0.93, 0.95),
    "knight": (0.62, 0.64, 0.68),
    "robot": (0.62, 0.66, 0.72),
    "dragon": (0.70, 0.15, 0.12),
    "whale": (0.25, 0.32, 0.42),
    "fish": (0.95, 0.50, 0.15),
    "owl": (0.55, 0.42, 0.30),
    "flowers": (0.90, 0.25, 0.40),
    "cherry": (0.98, 0.70, 0.80),
    "moon": (0.96, 0.95, 0.86),
    "stars": (1.0, 1.0, 0.95),
    "planet": (0.80, 0.55, 0.35),
    "windmill": (0.85, 0.82, 0.76),
    "tower": (0.60, 0.55, 0.50),
    "temple": (0.72, 0.20, 0.15),
    "bridge": (0.50, 0.46, 0.42),
    "balloon": (0.92, 0.30, 0.25),
    "car": (0.20, 0.40, 0.75),
    "train": (0.25, 0.25, 0.28),
    "mushroom": (0.85, 0.18, 0.15),
    "butterfly": (0.35, 0.55, 0.95),
    "campfire": (0.35, 0.22, 0.12),
    "tent": (0.85, 0.55, 0.20),
    "statue": (0.75, 0.74, 0.70),
}

WHITE: RGB = (0.95, 0.95, 0.93)
DARK: RGB = (0.10, 0.09, 0.10)
GLOW: RGB = (1.0, 0.85, 0.45)


def _box(x: float, y: float, w: float, h: float) -> list[float]:
    return [x - w / 2, y - h, x + w / 2, y]


def tower(d: ImageDraw.ImageDraw, x: float, y: float, s: float, p: Paint, base: RGB, kind: str) -> None:
    w0, w1 = 0.22 * s, 0.13 * s
    d.polygon([(x - w0 / 2, y), (x + w0 / 2, y), (x + w1 / 2, y - 0.82 * s), (x - w1 / 2, y - 0.82 * s)], fill=p("body", base))
    if kind == "lighthouse":
        red = (0.78, 0.14, 0.12)
        for k in (0.18, 0.46):
            a, b = y - k * s, y - (k + 0.14) * s
            wa = w0 + (w1 - w0) * k / 0.82
            wb = w0 + (w1 - w0) * (k + 0.14) / 0.82
            d.polygon([(x - wa / 2, a), (x + wa / 2, a), (x + wb / 2, b), (x - wb / 2, b)], fill=p("body", red))
        d.rectangle(_box(x, y - 0.82 * s, w1 * 1.1, 0.1 * s), fill=p("glow", GLOW))
        d.polygon([(x - w1 * 0.7, y - 0.92 * s), (x + w1 * 0.7, y - 0.92 * s), (x, y - s)], fill=p("body", red))
    else:
        d.polygon([(x - w1 * 0.8, y - 0.82 * s), (x + w1 * 0.8, y - 0.82 * s), (x, y - s)], fill=p("body", DARK))
        d.rectangle(_box(x, y - 0.55 * s, w1 * 0.35, 0.1 * s), fill=p("glow", GLOW))


def castle(d, x, y, s, p, base) -> None:
    w = 0.9 * s
    d.rectangle(_box(x, y, w, 0.45 * s), fill=p("body", base))
    for dx in (-w / 2, w / 2):
        d.rectangle(_box(x + dx, y, 0.2 * s, 0.75 * s), fill=p("body", base))
        d.polygon([(x + dx - 0.13 * s, y - 0.75 * s), (x + dx + 0.13 * s, y - 0.75 * s), (x + dx, y - s)], fill=p("body", (0.35, 0.2, 0.2)))
    for k in range(5):
        cx = x - w / 2 + (k + 0.5) * w / 5
        d.rectangle(_box(cx, y - 0.45 * s, 0.08 * s, 0.07 * s), fill=p("body", base))
    d.rectangle(_box(x, y, 0.16 * s, 0.22 * s), fill=p("body", DARK))
    d.rectangle(_box(x - 0.2 * s, y - 0.28 * s, 0.05 * s, 0.07 * s), fill=p("glow", GLOW))


def house(d, x, y, s, p, base) -> None:
    w, h = 0.7 * s, 0.42 * s
    d.rectangle(_box(x, y, w, h), fill=p("body", base))
    d.polygon([(x - w * 0.6, y - h), (x + w * 0.6, y - h), (x, y - h - 0.35 * s)], fill=p("body", (0.45, 0.18, 0.14)))
    d.rectangle(_box(x - 0.15 * s, y - 0.16 * s, 0.14 * s, 0.12 * s), fill=p("glow", GLOW))
    d.rectangle(_box(x + 0.17 * s, y, 0.12 * s, 0.24 * s), fill=p("body", DARK))


def tree(d, x, y, s, p, base, kind: str = "tree") -> None:
    d.rectangle(_box(x, y, 0.08 * s, 0.5 * s), fill=p("body", (0.30, 0.20, 0.12)))
    r = 0.3 * s
    for dx, dy, k in ((0, -0.68, 1.0), (-0.17, -0.55, 0.75), (0.18, -0.56, 0.78)):
        cx, cy = x + dx * s, y + dy * s
        d.ellipse([cx - r * k, cy - r * k, cx + r * k, cy + r * k], fill=p("body", base))


def boat(d, x, y, s, p, base) -> None:
    w = 0.8 * s
    d.polygon([(x - w / 2, y - 0.15 * s), (x + w / 2, y - 0.15 * s), (x + w * 0.35, y), (x - w * 0.35, y)], fill=p("body", base))
    d.line([(x, y - 0.15 * s), (x, y - s)], fill=p("body", DARK), width=max(1, int(0.02 * s)))
    d.polygon([(x + 0.02 * s, y - 0.95 * s), (x + 0.02 * s, y - 0.22 * s), (x + 0.38 * s, y - 0.22 * s)], fill=p("body", WHITE))
    d.polygon([(x - 0.02 * s, y - 0.8 * s), (x - 0.02 * s, y - 0.22 * s), (x - 0.28 * s, y - 0.22 * s)], fill=p("body", (0.85, 0.82, 0.75)))


def birds(d, x, y, s, p, base, rng) -> None:
    for _ in range(7):
        bx, by = x + rng.uniform(-0.7, 0.7) * s, y + rng.uniform(-0.35, 0.35) * s
        k = rng.uniform(0.08, 0.14) * s
        d.line([(bx - k, by - k * 0.5), (bx, by), (bx + k, by - k * 0.5)], fill=p("body", base), width=max(2, int(k * 0.25)))


def quadruped(d, x, y, s, p, base, kind: str) -> None:
    h = 0.5 * s
    bw = {"horse": 0.9, "deer": 0.75, "cat": 0.55, "fox": 0.7, "wolf": 0.75, "dog": 0.65}.get(kind, 0.7) * s
    leg = h * (0.55 if kind in ("horse", "deer") else 0.4)
    top = y - leg - 0.3 * s
    col = p("body", base)
    for lx in (-0.38, -0.22, 0.22, 0.38):
        d.line([(x + lx * bw, top + 0.15 * s), (x + lx * bw, y)], fill=col, width=max(2, int(0.05 * s)))
    d.ellipse([x - bw / 2, top, x + bw / 2, top + 0.3 * s], fill=col)
    hx, hy = x + bw * 0.5, top - 0.05 * s
    d.ellipse([hx - 0.12 * s, hy - 0.12 * s, hx + 0.12 * s, hy + 0.12 * s], fill=col)
    d.polygon([(hx - 0.1 * s, hy - 0.06 * s), (hx - 0.02 * s, hy - 0.26 * s), (hx + 0.04 * s, hy - 0.08 * s)], fill=col)
    if kind == "deer":
        ant = p("body", (0.35, 0.25, 0.15))
        d.line([(hx, hy - 0.1 * s), (hx - 0.1 * s, hy - 0.4 * s), (hx - 0.2 * s, hy - 0.45 * s)], fill=ant, width=max(2, int(0.03 * s)))
        d.line([(hx + 0.03 * s, hy - 0.1 * s), (hx + 0.12 * s, hy - 0.4 * s)], fill=ant, width=max(2, int(0.03 * s)))
    tail = [(x - bw / 2, top + 0.1 * s), (x - bw / 2 - 0.3 * s, top - 0.05 * s), (x - bw / 2 - 0.05 * s, top + 0.2 * s)]
    d.polygon(tail, fill=col)
    if kind == "fox":
        d.ellipse([x - bw / 2 - 0.32 * s, top - 0.08 * s, x - bw / 2 - 0.2 * s, top + 0.02 * s], fill=p("body", WHITE))


def person(d, x, y, s, p, base, kind: str) -> None:
    col = p("body", base)
    d.polygon([(x - 0.14 * s, y), (x + 0.14 * s, y), (x + 0.09 * s, y - 0.62 * s), (x - 0.09 * s, y - 0.62 * s)], fill=col)
    r = 0.11 * s
    d.ellipse([x - r, y - 0.62 * s - 2 * r, x + r, y - 0.62 * s], fill=p("body", (0.85, 0.68, 0.55)) if kind == "person" else col)
    if kind == "astronaut":
        d.ellipse([x - r * 0.6, y - 0.62 * s - 1.6 * r, x + r * 0.6, y - 0.62 * s - 0.6 * r], fill=p("glow", (0.9, 0.7, 0.3)))
    elif kind == "knight":
        d.line([(x + 0.2 * s, y - 0.1 * s), (x + 0.2 * s, y - 0.75 * s)], fill=p("body", WHITE), width=max(2, int(0.03 * s)))


def robot(d, x, y, s, p, base) -> None:
    col = p("body", base)
    d.rectangle(_box(x - 0.1 * s, y, 0.07 * s, 0.3 * s), fill=col)
    d.rectangle(_box(x + 0.1 * s, y, 0.07 * s, 0.3 * s), fill=col)
    d.rectangle(_box(x, y - 0.3 * s, 0.4 * s, 0.4 * s), fill=col)
    d.rectangle(_box(x, y - 0.72 * s, 0.26 * s, 0.22 * s), fill=col)
    for ex in (-0.06, 0.06):
        d.ellipse([x + ex * s - 0.03 * s, y - 0.64 * s - 0.03 * s, x + ex * s + 0.03 * s, y - 0.64 * s + 0.03 * s], fill=p("glow", (0.3, 0.95, 1.0)))


def dragon(d, x, y, s, p, base) -> None:
    col = p("body", base)
    d.ellipse([x - 0.4 * s, y - 0.12 * s, x + 0.4 * s, y + 0.12 * s], fill=col)
    d.polygon([(x - 0.1 * s, y), (x + 0.15 * s, y), (x - 0.25 * s, y - 0.6 * s)], fill=col)
    d.polygon([(x - 0.05 * s, y), (x + 0.2 * s, y), (x + 0.25 * s, y - 0.55 * s)], fill=col)
    d.line([(x + 0.35 * s, y - 0.05 * s), (x + 0.55 * s, y - 0.25 * s)], fill=col, width=max(2, int(0.08 * s)))
    d.ellipse([x + 0.5 * s, y - 0.33 * s, x + 0.66 * s, y - 0.2 * s], fill=col)
    d.line([(x - 0.38 * s, y), (x - 0.7 * s, y + 0.15 * s)], fill=col, width=max(2, int(0.05 * s)))


def whale(d, x, y, s, p, base) -> None:
    col = p("body", base)
    d.ellipse([x - 0.6 * s, y - 0.3 * s, x + 0.5 * s, y + 0.1 * s], fill=col)
    d.polygon([(x - 0.55 * s, y - 0.1 * s), (x - 0.85 * s, y - 0.4 * s), (x - 0.75 * s, y - 0.05 * s)], fill=col)
    d.line([(x + 0.3 * s, y - 0.3 * s), (x + 0.3 * s, y - 0.55 * s)], fill=p("body", WHITE), width=max(2, int(0.02 * s)))


def fish(d, x, y, s, p, base) -> None:
    col = p("body", base)
    d.ellipse([x - 0.3 * s, y - 0.13 * s, x + 0.3 * s, y + 0.13 * s], fill=col)
    d.polygon([(x - 0.25 * s, y), (x - 0.5 * s, y - 0.15 * s), (x - 0.5 * s, y + 0.15 * s)], fill=col)


def owl(d, x, y, s, p, base) -> None:
    col = p("body", base)
    d.ellipse([x - 0.2 * s, y - 0.6 * s, x + 0.2 * s, y], fill=col)
    d.ellipse([x - 0.17 * s, y - 0.75 * s, x + 0.17 * s, y - 0.45 * s], fill=col)
    for ex in (-0.07, 0.07):
        d.ellipse([x + ex * s - 0.05 * s, y - 0.66 * s, x + ex * s + 0.05 * s, y - 0.56 * s], fill=p("glow", (1.0, 0.8, 0.2)))


def flowers(d, x, y, s, p, base, rng) -> None:
    for _ in range(14):
        fx, fy = x + rng.uniform(-0.6, 0.6) * s, y - rng.uniform(0.0, 0.35) * s
        stem = p("body", (0.2, 0.5, 0.2))
        d.line([(fx, fy), (fx, fy + 0.2 * s)], fill=stem, width=max(1, int(0.02 * s)))
        r = rng.uniform(0.05, 0.09) * s
        d.ellipse([fx - r, fy - r, fx + r, fy + r], fill=p("body", base))
        d.ellipse([fx - r * 0.35, fy - r * 0.35, fx + r * 0.35, fy + r * 0.35], fill=p("body", (1.0, 0.85, 0.2)))


def disc(d, x, y, s, p, base, kind: str) -> None:
    r = 0.22 * s
    d.ellipse([x - r, y - r, x + r, y + r], fill=p("glow" if kind == "moon" else "body", base))
    if kind == "planet":
        d.arc([x - 1.8 * r, y - 0.5 * r, x + 1.8 * r, y + 0.5 * r], 0, 360, fill=p("body", (0.9, 0.8, 0.6)), width=max(2, int(0.12 * r)))


def stars_glyph(d, x, y, s, p, base, rng) -> None:
    for _ in range(25):
        sx, sy = x + rng.uniform(-1.0, 1.0) * s, y + rng.uniform(-0.5, 0.5) * s
        r = rng.uniform(1.0, 3.0)
        d.ellipse([sx - r, sy - r, sx + r, sy + r], fill=p("glow", base))


def windmill(d, x, y, s, p, base) -> None:
    d.polygon([(x - 0.13 * s, y), (x + 0.13 * s, y), (x + 0.08 * s, y - 0.6 * s), (x - 0.08 * s, y - 0.6 * s)], fill=p("body", base))
    hub = (x, y - 0.62 * s)
    for k in range(4):
        a = math.pi / 4 + k * math.pi / 2
        d.line([hub, (hub[0] + math.cos(a) * 0.42 * s, hub[1] + math.sin(a) * 0.42 * s)], fill=p("body", DARK), width=max(2, int(0.04 * s)))


def temple(d, x, y, s, p, base) -> None:
    body = p("body", (0.85, 0.78, 0.65))
    roof = p("body", base)
    for k in range(3):
        w = (0.8 - 0.2 * k) * s
        yb = y - k * 0.3 * s
        d.rectangle(_box(x, yb, w * 0.6, 0.2 * s), fill=body)
        d.polygon([(x - w / 2, yb - 0.2 * s), (x + w / 2, yb - 0.2 * s), (x + w * 0.3, yb - 0.3 * s), (x - w * 0.3, yb - 0.3 * s)], fill=roof)
    d.line([(x, y - 0.9 * s), (x, y - s)], fill=roof, width=max(2, int(0.03 * s)))


def bridge(d, x, y, s, p, base) -> None:
    col = p("body", base)
    w = 1.6 * s
    d.rectangle([x - w / 2, y - 0.42 * s, x + w / 2, y - 0.34 * s], fill=col)
    d.arc([x - w / 2, y - 0.4 * s, x + w / 2, y + 0.4 * s], 180, 360, fill=col, width=max(3, int(0.08 * s)))


def balloon(d, x, y, s, p, base) -> None:
    r = 0.3 * s
    d.ellipse([x - r, y - r * 1.2, x + r, y + r], fill=p("body", base))
    d.chord([x - r, y - r * 1.2, x + r, y + r], 250, 290, fill=p("body", (1.0, 0.85, 0.2)))
    d.rectangle(_box(x, y + 0.5 * s, 0.12 * s, 0.1 * s), fill=p("body", (0.45, 0.3, 0.15)))
    d.line([(x - r * 0.6, y + r * 0.7), (x - 0.05 * s, y + 0.4 * s)], fill=p("body", DARK), width=1)
    d.line([(x + r * 0.6, y + r * 0.7), (x + 0.05 * s, y + 0.4 * s)], fill=p("body", DARK), width=1)


def car(d, x, y, s, p, base, long: bool = False) -> None:
    w = (1.4 if long else 0.75) * s
    col = p("body", base)
    d.rectangle(_box(x, y - 0.08 * s, w, 0.2 * s), fill=col)
    d.rectangle(_box(x - (0.3 if long else 0.05) * s, y - 0.28 * s, w * (0.6 if long else 0.5), 0.16 * s), fill=col)
    d.rectangle(_box(x - 0.05 * s, y - 0.31 * s, w * 0.2, 0.08 * s), fill=p("glow", (0.8, 0.9, 1.0)))
    for wx in ([-0.5, -0.2, 0.2, 0.5] if long else [-0.25, 0.25]):
        cx = x + wx * w
        d.ellipse([cx - 0.08 * s, y - 0.16 * s, cx + 0.08 * s, y], fill=p("body", DARK))


def mushroom(d, x, y, s, p, base) -> None:
    d.rectangle(_box(x, y, 0.14 * s, 0.45 * s), fill=p("body", (0.92, 0.88, 0.8)))
    d.pieslice([x - 0.4 * s, y - 0.75 * s, x + 0.4 * s, y - 0.15 * s], 180, 360, fill=p("body", base))
    for dx, dy in ((-0.2, -0.55), (0.05, -0.65), (0.22, -0.52)):
        d.ellipse([x + dx * s - 0.04 * s, y + dy * s - 0.04 * s, x + dx * s + 0.04 * s, y + dy * s + 0.04 * s], fill=p("body", WHITE))


def butterfly(d, x, y, s, p, base) -> None:
    col = p("body", base)
    d.ellipse([x - 0.35 * s, y - 0.3 * s, x, y], fill=col)
    d.ellipse([x, y - 0.3 * s, x + 0.35 * s, y], fill=col)
    d.ellipse([x - 0.25 * s, y - 0.05 * s, x, y + 0.18 * s], fill=col)
    d.ellipse([x, y - 0.05 * s, x + 0.25 * s, y + 0.18 * s], fill=col)
    d.line([(x, y - 0.3 * s), (x, y + 0.15 * s)], fill=p("body", DARK), width=max(2, int(0.03 * s)))


def campfire(d, x, y, s, p, base) -> None:
    d.line([(x - 0.3 * s, y), (x + 0.3 * s, y - 0.08 * s)], fill=p("body", base), width=max(3, int(0.07 * s)))
    d.line([(x - 0.3 * s, y - 0.08 * s), (x + 0.3 * s, y)], fill=p("body", base), width=max(3, int(0.07 * s)))
    d.polygon([(x - 0.22 * s, y - 0.05 * s), (x + 0.22 * s, y - 0.05 * s), (x, y - 0.6 * s)], fill=p("glow", (1.0, 0.5, 0.1)))
    d.polygon([(x - 0.12 * s, y - 0.05 * s), (x + 0.12 * s, y - 0.05 * s), (x, y - 0.38 * s)], fill=p("glow", (1.0, 0.9, 0.4)))


def tent(d, x, y, s, p, base) -> None:
    d.polygon([(x - 0.45 * s, y), (x + 0.45 * s, y), (x, y - 0.5 * s)], fill=p("body", base))
    d.polygon([(x - 0.1 * s, y), (x + 0.1 * s, y), (x, y - 0.3 * s)], fill=p("glow", GLOW))


def statue(d, x, y, s, p, base) -> None:
    col = p("body", base)
    d.rectangle(_box(x, y, 0.4 * s, 0.2 * s), fill=col)
    person(d, x, y - 0.2 * s, 0.8 * s, p, base, "statue")


# Glyphs by the extra argument they take besides (draw, x, y, size, paint, base colour).
_PLAIN = {
    "castle": castle, "house": house, "boat": boat, "robot": robot, "dragon": dragon, "whale": whale, "fish": fish,
    "owl": owl, "windmill": windmill, "temple": temple, "bridge": bridge, "balloon": balloon, "mushroom": mushroom,
    "butterfly": butterfly, "campfire": campfire, "tent": tent, "statue": statue,
}
_BY_KIND = {
    **dict.fromkeys(("lighthouse", "tower"), tower),
    **dict.fromkeys(("tree", "cherry"), tree),
    **dict.fromkeys(("fox", "cat", "dog", "deer", "wolf", "horse"), quadruped),
    **dict.fromkeys(("person", "astronaut", "knight"), person),
    **dict.fromkeys(("moon", "planet"), disc),
}
_WITH_RNG = {"birds": birds, "flowers": flowers, "stars": stars_glyph}


def draw_subject(kind: str, d: ImageDraw.ImageDraw, x: float, y: float, s: float, p: Paint, base: RGB, rng) -> None:
    args = (d, x, y, s, p, base)
    if kind in _PLAIN:
        _PLAIN[kind](*args)
    elif kind in _BY_KIND:
        _BY_KIND[kind](*args, kind)
    elif kind in _WITH_RNG:
        _WITH_RNG[kind](*args, rng)
    elif kind in ("car", "train"):
        car(*args, long=kind == "train")
    else:  # pragma: no cover - every subject of the vocabulary has a glyph
        d.ellipse([x - 0.2 * s, y - 0.4 * s, x + 0.2 * s, y], fill=p("body", base))
