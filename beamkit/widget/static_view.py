"""A job as plain HTML: what a saved notebook shows where no widget can run.

A widget's picture lives in the kernel; once the kernel is gone (a restarted kernel, a
notebook on GitHub or in nbviewer) only what the output itself carries is left. So beside
the live widget each job's display carries this static view, rewritten as the job goes
(``beamkit.widget.display``): the best picture as a small inline WebP/JPEG, its prompts and
scores, and a table of the iterations.

It is one self-contained ``<div class="bk-static">`` with inline styles that read the
notebook's theme variables where they exist, and plain colours elsewhere. Its ``<style>``
hides, in JupyterLab and Notebook 7, the "Error displaying widget: model not found" box of
the widget output just before it, which is all that output can show once the kernel is gone.
While the widget runs, ``widget.css`` hides this view instead.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from ..candidate import operation_of
from ..state import SessionState
from .images import sniff_format

__all__ = ["render", "summary", "HIDE_DEAD_WIDGET"]

#: the widget output just before a static view, when its renderer could only write a message
#: (no element inside: "model not found"); a live view always has elements
HIDE_DEAD_WIDGET = (
    ".jp-OutputArea-child:has(> .jp-OutputArea-output.jupyter-widgets:not(:has(*)))"
    ":has(+ .jp-OutputArea-child .bk-static){display:none}"
)

_BOX = ("font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:13px;line-height:1.4;"
        "color:var(--jp-ui-font-color1,inherit);border:1px solid var(--jp-border-color2,#ccc);"
        "border-radius:6px;padding:10px 12px;max-width:980px")
_MUTED = "color:var(--jp-ui-font-color2,#666)"
_CELL = "padding:2px 8px;border-bottom:1px solid var(--jp-border-color2,#ddd);text-align:left"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _score(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def summary(state: SessionState) -> str:
    """One line of text: the job's real status, progress and best (the text fallback)."""
    p = state.progress
    line = f"beamkit {state.job_id or 'job'}: {state.status.value}, {p['candidatesProcessed']}/{p['totalCandidates']} candidates"
    best = state.best
    if best is not None:
        line += f", best {_score(best.total_score)} (iteration {best.iteration}, candidate {best.candidate_id})"
        if best.combined_prompt:
            line += f": {best.combined_prompt[:160]}"
    if state.error and state.status.value != "completed":
        line += f" [{state.error.get('code')}: {state.error.get('message')}]"
    return line


def _picture(image: bytes | None, alt: str) -> str:
    if not image:
        return (f'<div style="width:160px;height:160px;display:flex;align-items:center;justify-content:center;'
                f'border:1px dashed var(--jp-border-color2,#ccc);{_MUTED}">no picture yet</div>')
    fmt = sniff_format(image)
    data = base64.b64encode(image).decode("ascii")
    return (f'<img src="data:image/{fmt};base64,{data}" alt="{_e(alt)}" '
            'style="max-width:256px;max-height:256px;border-radius:4px;display:block">')


def _rows(state: SessionState) -> str:
    out = []
    for i in sorted(state.rows):
        row = state.rows[i]
        cands = [state.candidates[k] for k in row.keys if k in state.candidates]
        ok = [c for c in cands if c.ok and c.total_score is not None]
        scores = [float(c.total_score) for c in ok]  # type: ignore[arg-type]
        beam = state.beams.get(i)
        kept = "-" if beam is None else str(len(beam))
        status = "done" if row.completed else ("stopped" if state.done else "running")
        step = f"{operation_of(i)} {row.dimension}" if i else "expand both"
        out.append(
            "<tr>"
            f'<td style="{_CELL}">{i}</td><td style="{_CELL}">{_e(step)}</td>'
            f'<td style="{_CELL}">{len(ok)}</td><td style="{_CELL}">{len(cands) - len(ok)}</td>'
            f'<td style="{_CELL}">{_score(max(scores) if scores else None)}</td>'
            f'<td style="{_CELL}">{_score(sum(scores) / len(scores) if scores else None)}</td>'
            f'<td style="{_CELL}">{kept}</td><td style="{_CELL}">{status}</td>'
            "</tr>"
        )
    if not out:
        return ""
    head = "".join(f'<th style="{_CELL}">{h}</th>' for h in
                   ("iteration", "step", "scored", "failed", "best", "mean", "kept", ""))
    return (f'<table style="border-collapse:collapse;margin-top:10px;font-size:12px">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(out)}</tbody></table>")


def render(state: SessionState, best_image: bytes | None = None, *, cost: str | None = None) -> str:
    """The static view of ``state``; ``best_image`` is the best candidate's small picture."""
    c = state.config
    params = " · ".join(f"{k} {c[k]}" for k in ("N", "M", "iterations", "alpha") if k in c)
    providers = c.get("providers")
    if providers:
        params += f" · providers {providers if isinstance(providers, str) else ', '.join(f'{k}={v}' for k, v in providers.items())}"
    facts = [state.status.value]
    p = state.progress
    facts.append(f"{p['candidatesProcessed']}/{p['totalCandidates']} candidates")
    if state.duration_ms:
        facts.append(f"{state.duration_ms / 1000:.1f} s")
    if cost:
        facts.append(cost)
    if state.started_at:
        facts.append(f"started {state.started_at}")
    best = state.best
    if best is not None:
        prompts = "".join(
            f'<div style="margin-top:4px"><span style="{_MUTED}">{label}</span> {_e(text)}</div>'
            for label, text in (("WHAT", best.what_prompt), ("HOW", best.how_prompt), ("prompt", best.combined_prompt))
            if text
        )
        detail = (f'<div><b>best {_score(best.total_score)}</b> <span style="{_MUTED}">alignment '
                  f"{_score(best.alignment_score)} · aesthetic {_score(best.aesthetic_score)} · iteration "
                  f"{best.iteration}, candidate {best.candidate_id}</span></div>{prompts}")
        picture = _picture(best_image, best.combined_prompt or "the best picture")
    else:
        detail = f'<div style="{_MUTED}">no candidate scored yet</div>'
        picture = _picture(None, "")
    error = ""
    if state.error and state.status.value != "completed":
        error = (f'<div style="margin-top:8px;color:var(--jp-error-color1,#b00)">'
                 f"{_e(state.error.get('code'))}: {_e(state.error.get('message'))}</div>")
    return (
        f'<div class="bk-static" data-bk-job="{_e(state.job_id)}" data-status="{_e(state.status.value)}" style="{_BOX}">'
        f"<style>{HIDE_DEAD_WIDGET}</style>"
        f'<div><b>beamkit</b> · {_e(c.get("prompt", ""))}</div>'
        f'<div style="{_MUTED};font-size:12px">{_e(state.job_id)} · {_e(" · ".join(facts))}'
        f'{" · " + _e(params) if params else ""}</div>'
        f'<div style="display:flex;gap:12px;margin-top:8px;align-items:flex-start">{picture}<div>{detail}</div></div>'
        f"{_rows(state)}{error}"
        "</div>"
    )
