"""The notebook widget of beamkit.

    import beamkit
    job = beamkit.start("a lighthouse in a storm")
    job                                  # the last expression of a cell: a live widget
    beamkit.load("output/sessions/job-...")  # a finished session, shown statically
    beamkit.watch("job-...", url="http://127.0.0.1:8888/beamkit", token="...")  # a job on a server

``view(obj)`` returns the widget itself (the same one each time for a given Job), to put
in a layout or to wait on: ``await view(job).settled()``.

Importing this module imports ipywidgets and anywidget; ``import beamkit`` does not.
"""

from __future__ import annotations

import logging
from typing import Any

from .chart import line_chart, score_chart
from .display import show, static_bundle, widget_bundle
from .images import THUMB_FORMAT, THUMB_SIZE, make_thumbnail
from .viewmodel import ViewModel, state_of_result
from .widget import BeamWidget, Thumbnail, for_job, for_remote, for_result

_ATTR = "_beamkit_widget"


def view(obj: Any) -> BeamWidget:
    """The widget of a Job (live, one per job, reused) or a Result (static)."""
    from ..job import Job
    from ..result import Result

    if isinstance(obj, BeamWidget):
        return obj
    cached = obj.__dict__.get(_ATTR) if hasattr(obj, "__dict__") else None
    if cached is not None and cached.comm is not None:
        return cached
    if isinstance(obj, Job):
        w = for_job(obj)
    elif isinstance(obj, Result):
        w = for_result(obj)
        if obj.status == "running":  # a live job's partial result changes: do not keep a stale view
            return w
    else:
        raise TypeError(f"beamkit.widget.view() takes a Job or a Result, not {type(obj).__name__}")
    obj.__dict__[_ATTR] = w
    return w


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def mimebundle(obj: Any, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """What Job and Result return from ``_repr_mimebundle_``: the widget in a kernel, text elsewhere."""
    text = {"text/plain": repr(obj)}
    if not _in_kernel():
        return text
    try:
        w = view(obj)
    except Exception:  # a display hook must never raise; the text is still useful
        logging.getLogger(__name__).exception("beamkit: could not build the widget")
        return text
    bundle = widget_bundle(w, include=include, exclude=exclude)
    # one bundle for tools that ask for it directly; a notebook display goes through display.show
    # (two outputs, the static one kept up to date)
    try:
        html = static_bundle(obj)["text/html"]
    except Exception:
        logging.getLogger(__name__).debug("beamkit: no static view", exc_info=True)
        html = None
    return {**bundle, **({"text/html": html} if html else {}), **text}


def watch(job_id: str, *, url: str | None = None, token: str | None = None, **client_options: Any) -> BeamWidget:
    """A live widget for a job on a beamkit server (standalone, or the Jupyter Server extension).

    Must be called where an asyncio loop runs (a notebook cell). Events come through
    ``beamkit.client``; pictures through its REST image route (thumbnails at ``?size=256``).
    """
    from ..client import Client

    full_pictures = client_options.pop("full_pictures", "webp")
    c = Client(url, token=token, **client_options) if url is not None else Client(token=token, **client_options)
    return for_remote(c, job_id, full_pictures=full_pictures)


__all__ = [
    "BeamWidget", "Thumbnail", "ViewModel", "view", "watch", "mimebundle", "for_job", "for_result", "for_remote",
    "state_of_result", "line_chart", "score_chart", "make_thumbnail", "THUMB_SIZE", "THUMB_FORMAT", "show",
    "static_bundle",
]
