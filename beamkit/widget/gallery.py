"""``beamkit.sessions(output)``: the sessions of an output folder, as a gallery.

Each card is one session folder: its prompt, best picture (a small thumbnail), best score,
date and status. A folder that cannot be read is listed too, with the reason. Clicking a
card opens the session below the gallery, as ``beamkit.load(folder)`` shows it.

Sessions are read through ``beamkit.storage`` (its reducer replay), never here by hand.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import anywidget
import ipywidgets
import traitlets

from .. import storage
from ..result import Result
from ..settings import DEFAULT_OUTPUT
from .dom import H_JS
from .images import THUMB_FORMAT, make_thumbnail

log = logging.getLogger(__name__)

#: the gallery's pictures: smaller than a card's thumbnail, many are sent at once
GALLERY_THUMB = 160

__all__ = ["SessionInfo", "Sessions", "Gallery", "sessions", "GALLERY_THUMB"]


@dataclass(frozen=True)
class SessionInfo:
    """One session folder, as the gallery shows it."""

    job_id: str
    folder: Path
    status: str
    prompt: str | None = None
    best_score: float | None = None
    #: when the job started (its ``started`` event), else when the folder last changed (ISO 8601)
    date: str | None = None
    candidates: int = 0
    total: int = 0
    best_image: Path | None = None
    #: why the folder could not be read (then ``status`` is "corrupt", as storage reports it, or "unreadable")
    problem: str | None = None

    def load(self) -> Result:
        """The session as ``beamkit.load`` reads it."""
        return storage.load(self.folder)

    def to_dict(self) -> dict[str, Any]:
        return {"jobId": self.job_id, "folder": str(self.folder), "status": self.status, "prompt": self.prompt,
                "bestScore": self.best_score, "date": self.date, "candidates": self.candidates, "total": self.total,
                "problem": self.problem}


def _mtime(folder: Path) -> str | None:
    try:
        return datetime.fromtimestamp(folder.stat().st_mtime, UTC).isoformat(timespec="milliseconds")
    except OSError:
        return None


def read_session(folder: Path) -> SessionInfo:
    """What the gallery shows of one folder; never raises for a bad folder (it says why instead)."""
    try:
        state = storage.load_state(folder)
    except Exception as exc:  # a corrupt or foreign folder is listed, with the reason
        status = "corrupt" if isinstance(exc, getattr(storage, "CorruptSession", ())) else "unreadable"
        return SessionInfo(folder.name, folder, status, date=_mtime(folder), problem=f"{type(exc).__name__}: {exc}")
    best = state.best
    image = None
    if best is not None and best.ok:
        candidate = folder / storage.image_file(best.iteration, best.candidate_id)
        image = candidate if candidate.is_file() else None
    p = state.progress
    return SessionInfo(
        job_id=state.job_id or folder.name, folder=folder, status=state.status.value,
        prompt=state.config.get("prompt"), best_score=None if best is None else best.total_score,
        date=state.started_at or _mtime(folder), candidates=p["candidatesProcessed"], total=p["totalCandidates"],
        best_image=image,
    )


class Sessions(Sequence[SessionInfo]):
    """What ``beamkit.sessions()`` returns: the sessions of one output folder, newest first.

    Displayed in a notebook it is a gallery; ``open(i)`` (an index or a job id) loads one.
    """

    def __init__(self, output: str | os.PathLike[str], items: list[SessionInfo]) -> None:
        self.output = Path(output)
        self.items = items

    @overload
    def __getitem__(self, i: int) -> SessionInfo: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[SessionInfo]: ...
    def __getitem__(self, i: int | slice) -> SessionInfo | Sequence[SessionInfo]:
        return self.items[i]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[SessionInfo]:
        return iter(self.items)

    def find(self, job_id: str) -> SessionInfo:
        for s in self.items:
            if s.job_id == job_id or s.folder.name == job_id:
                return s
        raise KeyError(job_id)

    def open(self, which: int | str) -> Result:
        """Load one session (by index or job id), as ``beamkit.load`` does."""
        info = self.items[which] if isinstance(which, int) else self.find(which)
        return info.load()

    def widget(self) -> ipywidgets.VBox:
        """The gallery, with the opened session's widget below it."""
        return GalleryView(self)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        from .display import _kernel_shell

        if _kernel_shell() is None:
            display({"text/plain": repr(self)}, raw=True)
            return
        display(self.widget())

    def __repr__(self) -> str:
        if not self.items:
            return f"<no beamkit session in {self.output}>"
        lines = [f"{len(self.items)} session{'s' if len(self.items) != 1 else ''} in {self.output}:"]
        for s in self.items:
            score = f"{s.best_score:.2f}" if isinstance(s.best_score, (int, float)) else "-"
            what = s.problem if s.problem else (s.prompt or "")[:60]
            lines.append(f"  {s.job_id}  {s.status:<11} {score:>6}  {s.date or '':<25} {what}")
        return "\n".join(lines)


def sessions(output: str | os.PathLike[str] = DEFAULT_OUTPUT) -> Sessions:
    """The sessions of an output folder (``{output}/sessions/*``), newest first."""
    items = [read_session(folder) for folder in storage.list_sessions(output)]
    items.sort(key=lambda s: _when(s.date), reverse=True)
    return Sessions(output, items)


def _when(date: str | None) -> datetime:
    """An event timestamp or a folder's time, comparable (an unreadable one sorts last)."""
    try:
        when = datetime.fromisoformat((date or "").replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


_ESM = H_JS + r"""
function render({ model, el }) {
  const root = h("div", { class: "bk-gallery" });
  el.append(root);
  const draw = () => {
    const items = model.get("sessions") || [];
    const thumbs = model.get("thumbs") || {};
    const opened = model.get("opened");
    const cards = items.map((s) => {
      const open = () => model.send({ type: "open", jobId: s.jobId });
      const pic = thumbs[s.jobId]
        ? h("img", { src: thumbs[s.jobId], alt: s.prompt || s.jobId })
        : h("div", { class: "bk-gallery-nopic" }, s.problem ? "unreadable" : "no picture");
      const score = typeof s.bestScore === "number" ? s.bestScore.toFixed(2) : "-";
      return h("div", { class: "bk-gallery-card", role: "button", tabindex: "0", "data-job": s.jobId,
          "data-status": s.status, "aria-pressed": opened === s.jobId ? "true" : "false", title: s.problem || s.prompt || "",
          onclick: open, onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); } } },
        pic,
        h("div", { class: "bk-gallery-prompt" }, s.prompt || s.jobId),
        h("div", { class: "bk-gallery-meta" },
          h("span", { class: `bk-gallery-status bk-gallery-status-${s.status}` }, s.status),
          h("span", {}, `best ${score}`),
          h("span", {}, (s.date || "").replace("T", " ").slice(0, 16))),
        s.problem ? h("div", { class: "bk-gallery-problem" }, s.problem) : "");
    });
    root.replaceChildren(
      h("div", { class: "bk-gallery-title" }, `${items.length} session${items.length === 1 ? "" : "s"} in ${model.get("output")}`),
      h("div", { class: "bk-gallery-grid" }, cards));
  };
  for (const t of ["sessions", "thumbs", "opened"]) model.on(`change:${t}`, draw);
  draw();
  return () => { for (const t of ["sessions", "thumbs", "opened"]) model.off(`change:${t}`, draw); };
}
export default { render };
"""

_CSS = """
.bk-gallery { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 12px; color: var(--jp-ui-font-color1, inherit); }
.bk-gallery-title { font-weight: 600; margin: 4px 0 8px; }
.bk-gallery-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; }
.bk-gallery-card { border: 1px solid var(--jp-border-color2, #ccc); border-radius: 6px; padding: 6px; cursor: pointer;
  background: var(--jp-layout-color1, transparent); }
.bk-gallery-card:hover, .bk-gallery-card:focus-visible { border-color: var(--jp-brand-color1, #1976d2); outline: none; }
.bk-gallery-card[aria-pressed="true"] { border-color: var(--jp-brand-color1, #1976d2); box-shadow: 0 0 0 1px var(--jp-brand-color1, #1976d2); }
.bk-gallery-card img, .bk-gallery-nopic { width: 100%; aspect-ratio: 1; object-fit: cover; border-radius: 4px; display: block; }
.bk-gallery-nopic { display: flex; align-items: center; justify-content: center; color: var(--jp-ui-font-color2, #777);
  border: 1px dashed var(--jp-border-color2, #ccc); }
.bk-gallery-prompt { margin-top: 4px; display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden; }
.bk-gallery-meta { display: flex; gap: 6px; flex-wrap: wrap; color: var(--jp-ui-font-color2, #666); margin-top: 2px; }
.bk-gallery-status { font-weight: 600; }
.bk-gallery-status-error, .bk-gallery-status-unreadable, .bk-gallery-status-corrupt { color: var(--jp-error-color1, #b00); }
.bk-gallery-problem { color: var(--jp-error-color1, #b00); overflow-wrap: anywhere; margin-top: 2px; }
"""


class Gallery(anywidget.AnyWidget):
    """The cards; a click sends ``{"type": "open", "jobId"}``."""

    _esm = _ESM
    _css = _CSS
    output = traitlets.Unicode("").tag(sync=True)
    sessions: traitlets.List[Any] = traitlets.List().tag(sync=True)
    #: job id -> data URL of its best picture (small), filled in after the list is shown
    thumbs = traitlets.Dict().tag(sync=True)
    opened = traitlets.Unicode(None, allow_none=True).tag(sync=True)


def _data_url(path: Path) -> str | None:
    try:
        data = make_thumbnail(path.read_bytes(), GALLERY_THUMB)
    except Exception:
        log.debug("beamkit gallery: no thumbnail for %s", path, exc_info=True)
        return None
    return f"data:image/{THUMB_FORMAT};base64,{base64.b64encode(data).decode('ascii')}"


class GalleryView(ipywidgets.VBox):
    """The gallery and, below it, the session last clicked."""

    def __init__(self, found: Sessions, **kwargs: Any) -> None:
        self.found = found
        self._thumbs_task: Any = None
        self.gallery = Gallery(output=str(found.output), sessions=[s.to_dict() for s in found])
        self.holder = ipywidgets.VBox()
        super().__init__(children=[self.gallery, self.holder], **kwargs)
        self.gallery.on_msg(self._on_msg)
        self._make_thumbs()

    def _make_thumbs(self) -> None:
        wanted = {s.job_id: s.best_image for s in self.found if s.best_image is not None}

        def make() -> dict[str, str]:
            return {k: url for k, p in wanted.items() if (url := _data_url(p))}

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a script): make them here
            self.gallery.thumbs = make()
            return

        async def later() -> None:
            self.gallery.thumbs = await loop.run_in_executor(None, make)  # decoding is CPU work: off the loop

        self._thumbs_task = loop.create_task(later())

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: list[bytes]) -> None:
        if isinstance(content, dict) and content.get("type") == "open":
            self.show_session(str(content.get("jobId")))

    def show_session(self, job_id: str) -> Any:
        """Show one session below the gallery (what a click does); returns its widget."""
        from . import for_result

        info = self.found.find(job_id)
        if info.problem:
            view: Any = ipywidgets.HTML(f"<b>{info.job_id}</b> cannot be read: {_escape(info.problem)}")
        else:
            view = for_result(info.load())
        for old in self.holder.children:
            old.close()
        self.holder.children = (view,)
        self.gallery.opened = info.job_id
        return view

    def close(self) -> None:
        if self._thumbs_task is not None:
            self._thumbs_task.cancel()
        for w in (*self.holder.children, self.gallery, self.holder):
            w.close()
        super().close()


def _escape(text: str) -> str:
    import html

    return html.escape(text)
