"""How a Job or a Result shows in a notebook: the live widget, then a static view for saving.

``job`` as the last expression of a cell (or ``display(job)``) makes two outputs:

1. the widget (``application/vnd.jupyter.widget-view+json``): live while the kernel runs;
2. a static view (``text/html``: the best picture as a small inline WebP/JPEG, its prompts,
   a table of the iterations; ``text/plain``: one line with the real status), rewritten at
   each iteration's end and when the job ends, through its ``display_id``.

Two outputs, not one bundle: JupyterLab always renders the widget mimetype of an output
whose notebook is trusted, and after a restart writes "Error displaying widget: model not
found" there without falling back to the bundle's other types. A separate output keeps the
picture: widget.css hides it while the widget runs, and the static view's own style hides
the dead widget's message once the kernel is gone; nbconvert, nbviewer and GitHub show it
as it is.

Updates go out twice where they must: once under the request of the cell that showed the
job (JupyterLab routes a display update to the output area of that request), and once under
the request of the cell that runs now, if another (nbclient keeps only the messages of the
cell it executes, so a job awaited in a later cell updates its saved output only that way).

Re-running a cell closes the widgets it showed before (their models are freed), unless
another cell still shows them; the job itself runs on, listed by ``beamkit.jobs()``.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from .. import events as ev
from ..state import SessionState
from . import static_view
from .images import LocalImages
from .viewmodel import ViewModel, flat

log = logging.getLogger(__name__)

__all__ = ["show", "show_jobs", "static_bundle", "displays"]


@dataclass
class _Shown:
    display_id: str
    parent: dict[str, Any]
    cell_id: str | None


@dataclass
class _Static:
    """The static view of one job or result, and the outputs that carry it."""

    state: SessionState
    folder: Any
    job: Any = None
    shown: list[_Shown] = field(default_factory=list)
    _thumbs: dict[tuple[int, int], bytes | None] = field(default_factory=dict)
    _stop: Any = None
    _estimate: Any = False  # not asked yet

    def bundle(self) -> dict[str, str]:
        best = self.state.best
        image = None
        if best is not None and best.ok:
            if best.key not in self._thumbs:
                try:
                    self._thumbs[best.key] = LocalImages(self.folder).thumbnail_sync(flat(best))
                except Exception:  # a missing or unreadable picture leaves the view without it
                    log.debug("beamkit: no picture for the static view", exc_info=True)
                    self._thumbs[best.key] = None
            image = self._thumbs[best.key]
        vm = ViewModel("live", self.state)
        if self._estimate is False:
            try:
                self._estimate = self.job.estimate() if self.job is not None else None
            except Exception:
                self._estimate = None
        vm.estimate = self._estimate
        cost = vm.cost()
        money = None
        if cost:
            money = f"cost {cost['spent'] or '-'}" + (f" (estimate {cost['estimate']})" if cost["estimate"] else "")
        return {"text/plain": static_view.summary(self.state), "text/html": static_view.render(self.state, image, cost=money)}

    def follow(self) -> None:
        """Rewrite the outputs at each iteration's end and when the job ends (a live job)."""
        if self.job is None or self._stop is not None or self.job.done:
            return

        def on_event(e: ev.Event) -> None:
            if ev.is_terminal(e) or (isinstance(e, ev.IterationEvent) and e.status == "completed"):
                # synchronous, in the job's own task: the last update is out before `await job` returns,
                # so a notebook runner that stops listening when that cell ends still gets it
                self.publish()
                if ev.is_terminal(e):
                    self.unfollow()

        self._stop = self.job.add_listener(on_event)

    def unfollow(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    def publish(self) -> None:
        if not self.shown:
            return
        bundle = self.bundle()
        now = _Kernel.current()
        for s in list(self.shown):
            _update(bundle, s.display_id, s.parent)
            if now is not None and _msg_id(now) != _msg_id(s.parent):
                _update(bundle, s.display_id, now)


def _msg_id(parent: dict[str, Any] | None) -> Any:
    return ((parent or {}).get("header") or {}).get("msg_id")


def _update(bundle: dict[str, Any], display_id: str, parent: dict[str, Any]) -> None:
    """``update_display`` as if sent while ``parent`` was the kernel's request."""
    shell = _Kernel.shell()
    if shell is None:
        return
    pub = shell.display_pub

    def send() -> None:
        set_parent = getattr(pub, "set_thread_parent", None)
        if set_parent is not None and parent:
            set_parent(parent)  # this copied context only: the kernel's own parent is untouched
        pub.publish(data=bundle, metadata={}, transient={"display_id": display_id}, update=True)

    try:
        contextvars.copy_context().run(send)
    except Exception:  # a closed kernel channel must not break the job that triggered this
        log.debug("beamkit: a display update failed", exc_info=True)


class _Kernel:
    """What this module knows of the kernel: which request runs now, and what each cell showed."""

    _shell: Any = None
    _current: dict[str, Any] | None = None
    #: cell id -> [(widget, static or None, display id)] shown by the last run of that cell
    by_cell: dict[str, list[tuple[Any, _Static | None, str]]] = {}

    @classmethod
    def shell(cls) -> Any:
        return cls._shell

    @classmethod
    def current(cls) -> dict[str, Any] | None:
        return cls._current

    @classmethod
    def attach(cls, shell: Any) -> None:
        if cls._shell is shell:
            return
        cls._shell = shell
        cls._current = _parent(shell)  # the cell that first shows a job runs now
        shell.events.register("pre_run_cell", cls._pre_run_cell)
        shell.events.register("post_run_cell", cls._post_run_cell)

    @classmethod
    def _pre_run_cell(cls, info: Any = None) -> None:
        cls._current = _parent(cls._shell)
        cell_id = getattr(info, "cell_id", None)
        if cell_id:
            _forget_cell(cell_id)

    @classmethod
    def _post_run_cell(cls, result: Any = None) -> None:
        cls._current = None


def _parent(shell: Any) -> dict[str, Any]:
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent("shell") if kernel is not None else None
    except Exception:
        parent = None
    return dict(parent or {})


def _forget_cell(cell_id: str) -> None:
    """The cell runs again, so its outputs are gone: close what only they showed."""
    gone = _Kernel.by_cell.pop(cell_id, [])
    still = {id(w) for items in _Kernel.by_cell.values() for w, _, _ in items}
    for widget, static, display_id in gone:
        if static is not None:
            static.shown = [s for s in static.shown if s.display_id != display_id]
            if not static.shown:
                static.unfollow()
        if id(widget) not in still and getattr(widget, "comm", None) is not None:
            widget.close()


def displays() -> dict[str, int]:
    """How many outputs each cell id shows (for tests and for ``beamkit.jobs()``'s curious)."""
    return {cell: len(items) for cell, items in _Kernel.by_cell.items()}


def _kernel_shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    ip = get_ipython()
    return ip if ip is not None and getattr(ip, "kernel", None) is not None else None


def static_bundle(obj: Any) -> dict[str, str]:
    """The static view of a Job or a Result, as a mimebundle (text/html and text/plain)."""
    return _static_of(obj).bundle()


def _static_of(obj: Any, widget: Any = None) -> _Static:
    from ..job import Job

    if isinstance(obj, Job):
        return _Static(obj.state, obj.folder, job=obj)
    if widget is not None:  # a loaded result's widget has read its session already
        return _Static(widget.view_model.state, obj.folder)
    from .viewmodel import state_of_result

    return _Static(state_of_result(obj), obj.folder)


def widget_bundle(w: Any, **kwargs: Any) -> dict[str, Any]:
    """A widget's own mimebundle (anywidget answers ``(data, metadata)``)."""
    bundle = w._repr_mimebundle_(**kwargs)
    if isinstance(bundle, tuple):
        bundle = bundle[0]
    return dict(bundle or {})


def _display(bundle: dict[str, Any], display_id: str | None = None) -> None:
    from IPython.display import display

    if display_id is None:
        display(bundle, raw=True)
    else:
        display(bundle, raw=True, display_id=display_id)


def show(obj: Any) -> None:
    """``_ipython_display_`` of Job and Result: the widget, then the static view (see above)."""
    shell = _kernel_shell()
    if shell is None:  # a terminal IPython: the text says it all
        _display({"text/plain": repr(obj)})
        return
    from . import view

    try:
        w: Any = view(obj)
        bundle: dict[str, Any] | None = widget_bundle(w)
    except Exception:  # a display hook must never raise; the static view is still useful
        log.exception("beamkit: could not build the widget")
        w, bundle = None, None
    _Kernel.attach(shell)
    parent = _parent(shell)
    cell_id = (parent.get("metadata") or {}).get("cellId")
    static = _static_of(obj, w)
    if bundle is not None:
        job_id = static.state.job_id or ""
        _display({**bundle, "text/plain": f"beamkit widget of {job_id} (its summary follows)"})
    display_id = f"beamkit-{uuid.uuid4().hex}"
    _display(static.bundle(), display_id)
    static.shown.append(_Shown(display_id, parent, cell_id))
    static.follow()
    if cell_id and w is not None:
        _Kernel.by_cell.setdefault(cell_id, []).append((w, static, display_id))


def show_jobs(jobs: Any) -> None:
    """``_ipython_display_`` of ``beamkit.jobs()``: the table with a Cancel button per job."""
    shell = _kernel_shell()
    if shell is None:
        _display({"text/plain": repr(jobs)})
        return
    w = jobs.widget()
    _display({**widget_bundle(w), "text/plain": repr(jobs)})
    _Kernel.attach(shell)
    cell_id = (_parent(shell).get("metadata") or {}).get("cellId")
    if cell_id:
        _Kernel.by_cell.setdefault(cell_id, []).append((w, None, ""))
