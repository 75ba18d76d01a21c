"""A small line chart as an SVG string: no plotting library needed.

The widget draws best and mean score per iteration with it, and notebooks use it to plot
several runs (``IPython.display.SVG(line_chart(...))``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape

PALETTE = ("#2f7ed8", "#e07b39", "#3aa655", "#b24bc9", "#d94452", "#7a7a7a", "#1aa3a3", "#c2a52c")
Point = tuple[float, float]


def _nice_range(lo: float, hi: float) -> tuple[float, float, float]:
    """An axis range covering lo..hi with round tick steps."""
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    raw = (hi - lo) / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step, step


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


def line_chart(
    series: Mapping[str, Sequence[Point]],
    *,
    width: int = 320,
    height: int = 150,
    x_label: str = "iteration",
    y_label: str = "score",
    x_max: float | None = None,
    dashed: Iterable[str] = (),
    colors: Mapping[str, str] | None = None,
    title: str | None = None,
) -> str:
    """Lines with dots, a y axis with 4-5 ticks, integer x ticks, and a legend on top."""
    dashed = set(dashed)
    colors = dict(colors or {})
    pts = [p for s in series.values() for p in s]
    left, right, top, bottom = 34, 14, 22 + (14 if title else 0), 26
    w, h = width - left - right, height - top - bottom
    xs = [p[0] for p in pts] or [0.0]
    ys = [p[1] for p in pts] or [0.0]
    x0, x1 = min(0.0, min(xs)), max(max(xs), x_max if x_max is not None else max(xs), 1.0)
    y0, y1, step = _nice_range(min(ys), max(ys))

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return top + h - (y - y0) / (y1 - y0) * h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bk-chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10" role="img" '
        f'aria-label="{escape(y_label)} by {escape(x_label)}">'
    ]
    if title:
        out.append(f'<text x="{left}" y="12" font-size="11" font-weight="bold" fill="currentColor">{escape(title)}</text>')
    # grid and y ticks
    n_ticks = int(round((y1 - y0) / step))
    for k in range(n_ticks + 1):
        y = y0 + k * step
        out.append(
            f'<line x1="{left}" x2="{left + w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="currentColor" stroke-opacity="0.12"/>'
            f'<text x="{left - 4}" y="{sy(y) + 3:.1f}" text-anchor="end" fill="currentColor" fill-opacity="0.7">{_fmt(y)}</text>'
        )
    # x ticks: integers, at most about ten of them
    x_step = max(1, math.ceil((x1 - x0) / 10))
    for x in range(int(math.ceil(x0)), int(math.floor(x1)) + 1, x_step):
        out.append(
            f'<text x="{sx(x):.1f}" y="{top + h + 12}" text-anchor="middle" fill="currentColor" fill-opacity="0.7">{x}</text>'
        )
    out.append(
        f'<text x="{left + w / 2:.1f}" y="{height - 2}" text-anchor="middle" fill="currentColor" fill-opacity="0.6">{escape(x_label)}</text>'
    )
    # legend
    lx = left
    for idx, name in enumerate(series):
        color = colors.get(name, PALETTE[idx % len(PALETTE)])
        dash = ' stroke-dasharray="4 3"' if name in dashed else ""
        ly = top - 8
        out.append(
            f'<line x1="{lx}" x2="{lx + 14}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>'
            f'<text x="{lx + 18}" y="{ly + 3}" fill="currentColor">{escape(name)}</text>'
        )
        lx += 24 + 6 * len(name)
    # lines
    for idx, (name, s) in enumerate(series.items()):
        if not s:
            continue
        color = colors.get(name, PALETTE[idx % len(PALETTE)])
        dash = ' stroke-dasharray="4 3"' if name in dashed else ""
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        cls = escape(name.replace(" ", "-"))
        out.append(f'<polyline class="bk-series-{cls}" points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for px, py in s:
            out.append(f'<circle cx="{sx(px):.1f}" cy="{sy(py):.1f}" r="2.8" fill="{color}"><title>{escape(name)} {px:g}: {py:.2f}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def score_chart(series: Sequence[Mapping[str, float]], total_iterations: int | None = None) -> str:
    """The widget's chart: best (so far) and mean total score per iteration."""
    best = [(s["iteration"], s["best"]) for s in series]
    mean = [(s["iteration"], s["mean"]) for s in series]
    x_max = (total_iterations - 1) if total_iterations else None
    return line_chart({"best": best, "mean": mean}, width=300, x_max=x_max, dashed=("mean",), y_label="total score")
