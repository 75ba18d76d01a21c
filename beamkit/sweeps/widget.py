"""A live view of a sweep in a notebook: a progress bar, counts, and the best result per configuration."""

from __future__ import annotations

import html
import math
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sweep import Sweep

#: seconds between two redraws while rows arrive (the last one always draws)
REDRAW = 0.25


def _fmt(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def table_html(sweep: Sweep) -> str:
    """Per configuration: rows done of all, failed, mean and best total so far."""
    head = "<tr><th>configuration</th><th>done</th><th>failed</th><th>mean</th><th>best</th></tr>"
    body = []
    for name, c in sweep.by_config().items():
        body.append(f"<tr><td>{html.escape(name)}</td><td>{c['done']}/{c['rows']}</td><td>{c['failed']}</td>"
                    f"<td>{_fmt(c['mean'])}</td><td>{_fmt(c['best'])}</td></tr>")
    return f"<table class='beamkit-sweep'>{head}{''.join(body)}</table>"


def header_text(sweep: Sweep) -> str:
    p = sweep.progress()
    skipped = f", {p['resumed']} from earlier runs" if p["resumed"] else ""
    return (f"<b>sweep {html.escape(sweep.name)}</b>: {sweep.status}; {p['done']}/{p['total']} done, "
            f"{p['failed']} failed{skipped}")


class SweepView:
    """An ipywidgets box kept up to date by the sweep (from its collector thread)."""

    def __init__(self, sweep: Sweep) -> None:
        import ipywidgets as w

        self.sweep = sweep
        total = sweep.progress()["total"]
        self.header = w.HTML()
        self.bar = w.IntProgress(min=0, max=max(total, 1), description="", layout=w.Layout(width="100%"))
        self.table = w.HTML()
        self.box = w.VBox([self.header, self.bar, self.table])
        self._last = 0.0
        self.refresh()
        sweep.on_row(self._on_row)

    def _on_row(self, _row: Any = None) -> None:
        now = time.monotonic()
        if now - self._last >= REDRAW or self.sweep.done:
            self.refresh()

    def refresh(self) -> None:
        p = self.sweep.progress()
        self.header.value = header_text(self.sweep)
        self.bar.value = p["done"] + p["failed"]
        self.bar.bar_style = "danger" if p["failed"] and self.sweep.done else ("success" if self.sweep.done else "")
        self.table.value = table_html(self.sweep)
        self._last = time.monotonic()


__all__ = ["SweepView", "header_text", "table_html"]
