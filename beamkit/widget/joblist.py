"""``beamkit.jobs()`` in a notebook: the kernel's jobs in a table, a Cancel button for each.

One small anywidget model (no child widgets): rows are plain data, redrawn by the front end.
It follows the registry (``beamkit.running``): a job that starts later is added, one that
ends stays with its final status, so a Cancel is seen to have worked. Progress is resent
at most every ``THROTTLE`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import anywidget
import traitlets

from .. import running
from .dom import H_JS

log = logging.getLogger(__name__)

THROTTLE = 0.5

_ESM = H_JS + r"""
function render({ model, el }) {
  const root = h("div", { class: "bk-jobs" });
  el.append(root);
  const draw = () => {
    const jobs = model.get("jobs") || [];
    const live = jobs.filter((j) => !j.done);
    const rows = jobs.map((j) => h("tr", { "data-job": j.jobId, "data-status": j.status },
      h("td", { class: "bk-jobs-id" }, j.jobId),
      h("td", { class: "bk-jobs-prompt", title: j.prompt }, j.prompt),
      h("td", {}, j.status),
      h("td", {}, `${j.processed}/${j.total}`),
      h("td", {}, j.done ? "" : h("button", { type: "button", class: "bk-jobs-cancel",
        onclick: (e) => { e.currentTarget.disabled = true; model.send({ type: "cancel", jobId: j.jobId }); } }, "Cancel"))));
    root.replaceChildren(
      h("div", { class: "bk-jobs-title" },
        live.length ? `${live.length} beamkit job${live.length === 1 ? "" : "s"} running in this kernel` : "no beamkit job running in this kernel",
        live.length > 1 ? h("button", { type: "button", class: "bk-jobs-cancel-all",
          onclick: (e) => { e.currentTarget.disabled = true; model.send({ type: "cancel_all" }); } }, "Cancel all") : ""),
      jobs.length ? h("table", { class: "bk-jobs-table" },
        h("thead", {}, h("tr", {}, ["job", "prompt", "status", "candidates", ""].map((c) => h("th", {}, c)))),
        h("tbody", {}, rows)) : "");
  };
  model.on("change:jobs", draw);
  draw();
  return () => model.off("change:jobs", draw);
}
export default { render };
"""

_CSS = """
.bk-jobs { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 13px; color: var(--jp-ui-font-color1, inherit); }
.bk-jobs-title { display: flex; gap: 12px; align-items: center; margin: 4px 0; font-weight: 600; }
.bk-jobs-table { border-collapse: collapse; }
.bk-jobs-table th, .bk-jobs-table td { padding: 2px 8px; text-align: left; border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.bk-jobs-prompt { max-width: 420px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.bk-jobs-id { font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
"""


def _row(job: Any) -> dict[str, Any]:
    p = job.progress
    return {"jobId": job.id, "prompt": job.params.prompt, "status": str(job.status), "done": job.done,
            "processed": p["candidatesProcessed"], "total": p["totalCandidates"]}


class JobListWidget(anywidget.AnyWidget):
    """The jobs of this kernel, live: those running when it was made and any started since."""

    _esm = _ESM
    _css = _CSS
    jobs: traitlets.List[Any] = traitlets.List().tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: dict[str, Any] = {}
        self._stops: list[Callable[[], None]] = []
        self._pending: asyncio.TimerHandle | None = None
        self._stops.append(running.subscribe(self._joined))
        self._joined()
        self.on_msg(self._on_msg)

    def _joined(self) -> None:
        for job in running.running():
            if job.id not in self._shown:
                self._shown[job.id] = job
                self._stops.append(job.add_listener(self._changed))
        self.refresh()

    def _changed(self, _event: Any) -> None:
        if self._pending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.refresh()
            return
        self._pending = loop.call_later(THROTTLE, self.refresh)

    def refresh(self) -> None:
        """Send every job's status and progress now."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self.jobs = [_row(j) for j in self._shown.values()]

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: list[bytes]) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "cancel":
            job = self._shown.get(content.get("jobId"))  # type: ignore[arg-type]
            if job is not None:
                job.cancel()
        elif kind == "cancel_all":
            for job in list(self._shown.values()):
                job.cancel()
        self.refresh()

    def close(self) -> None:
        for stop in self._stops:
            stop()
        self._stops.clear()
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        layout = getattr(self, "layout", None)
        super().close()
        if layout is not None:
            layout.close()
