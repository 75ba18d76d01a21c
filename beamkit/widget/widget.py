"""The beamkit widget: one anywidget model fed by one view model.

Events come from a live ``Job`` (``job.events()``, on the kernel's loop), from a ``Result``
(replayed at once, no loop needed) or from a server (``beamkit.client``). Each event goes
through ``ViewModel.apply``; the parts it changed are marked dirty and sent together at
most every ``throttle`` seconds (at once when the job ends). Thumbnails are made in a
thread and sent once each, as small child models that the front end looks up by
reference, so no picture crosses twice and a re-opened page still shows them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets
import traitlets

from .. import events as ev
from ..errors import AuthError, BeamkitError, ErrorCode, NotFound
from .chart import score_chart
from .images import THUMB_FORMAT, ImageSource, LocalImages, sniff_format
from .person import PersonPanel
from .viewmodel import DISCONNECTED, PARTS, Key, ViewModel, key_str, state_of_result

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"

#: while a job runs, the best-so-far picture (the one full-size picture) is replaced at most this often
BEST_IMAGE_INTERVAL = 1.0


class Thumbnail(ipywidgets.Widget):
    """One candidate's thumbnail: a model with no view, holding WebP/JPEG bytes (longer side <= 256 px).

    Sent once, when it is made; the main widget refers to it by model id.
    """

    value = traitlets.Bytes(b"").tag(sync=True)
    format = traitlets.Unicode(THUMB_FORMAT).tag(sync=True)
    key = traitlets.Unicode("").tag(sync=True)


class BeamWidget(anywidget.AnyWidget):
    """Shows one beam-search job: live, loaded from disk, or followed on a server.

    Make one with :func:`beamkit.widget.view` (or just display a ``Job`` or ``Result``).
    """

    _esm = STATIC / "widget.js"
    _css = STATIC / "widget.css"

    header = traitlets.Dict().tag(sync=True)
    progress = traitlets.Dict().tag(sync=True)
    rows: traitlets.List[Any] = traitlets.List().tag(sync=True)
    live_row = traitlets.Dict(default_value=None, allow_none=True).tag(sync=True)
    beam: traitlets.List[Any] = traitlets.List().tag(sync=True)
    best = traitlets.Dict(default_value=None, allow_none=True).tag(sync=True)
    best_image = traitlets.Bytes(b"").tag(sync=True)
    best_image_key = traitlets.Unicode("").tag(sync=True)
    best_image_format = traitlets.Unicode("png").tag(sync=True)
    chart_svg = traitlets.Unicode("").tag(sync=True)
    usage = traitlets.Dict(default_value=None, allow_none=True).tag(sync=True)
    thumbs = traitlets.Dict().tag(sync=True, **ipywidgets.widget_serialization)
    selected = traitlets.Dict(default_value=None, allow_none=True).tag(sync=True)
    selected_image = traitlets.Bytes(b"").tag(sync=True)
    selected_image_format = traitlets.Unicode("png").tag(sync=True)
    cancellable = traitlets.Bool(False).tag(sync=True)
    cancel_requested = traitlets.Bool(False).tag(sync=True)
    #: the other jobs still running in this kernel (a live job's widget): ``[{jobId, prompt}]``
    others: traitlets.List[Any] = traitlets.List().tag(sync=True)
    #: the person-in-the-loop panel (person.py): review controls and compare mode; None without one
    person = traitlets.Dict(default_value=None, allow_none=True).tag(sync=True)

    def __init__(
        self,
        vm: ViewModel,
        images: ImageSource,
        *,
        canceller: Callable[[], Any] | None = None,
        throttle: float = 0.15,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._vm = vm
        self._images = images
        self._canceller = canceller
        self.throttle = throttle
        self._dirty: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._thumb_widgets: dict[str, Thumbnail] = {}
        self._thumbs_wanted: set[str] = set()
        self._thumb_sem: asyncio.Semaphore | None = None
        self._best_loading: str | None = None
        self._best_sent_at = 0.0
        self._best_retry: asyncio.TimerHandle | None = None
        self._unsubscribe: list[Callable[[], Any]] = []
        #: a live job's usage so far, read as its events come (paid providers only: it is sent each time)
        self._usage_source: Callable[[], Any] | None = None
        #: what the widget did; loop_seconds(_max): CPU time it spent on the loop's thread, in all and
        #: at most at once (an event, a send, a new thumbnail); flush_seconds_max: wall time of one send
        self.stats: dict[str, Any] = {
            "events": 0, "flushes": 0, "flush_seconds_max": 0.0, "loop_seconds_max": 0.0, "loop_seconds": 0.0,
            "thumbnails": 0, "best_images": 0,
        }
        self._person: PersonPanel | None = None
        self.on_msg(self._on_msg)

    # -- public -------------------------------------------------------------------------------------

    @property
    def view_model(self) -> ViewModel:
        return self._vm

    @property
    def thumbnail_count(self) -> int:
        return len(self._thumb_widgets)

    def thumbnail_bytes(self) -> dict[str, bytes]:
        return {k: w.value for k, w in self._thumb_widgets.items()}

    def cancel(self) -> bool:
        """What the Cancel button does."""
        if self._canceller is None or self._vm.done:
            return False
        self.cancel_requested = True
        try:
            out = self._canceller()
            if asyncio.iscoroutine(out) or isinstance(out, asyncio.Future):
                self._spawn(out)
        except Exception:
            log.exception("beamkit widget: cancel failed")
            return False
        return True

    async def settled(self, timeout: float | None = 60.0) -> BeamWidget:
        """Wait until the job's stream has ended and every thumbnail and picture has been sent."""

        async def _wait() -> None:
            if self._consumer is not None:
                await asyncio.shield(self._consumer)
            while True:
                self.flush()  # may start the load of the final best picture
                pending = [t for t in self._tasks if not t.done()]
                if not pending:
                    break
                await asyncio.gather(*pending, return_exceptions=True)

        await asyncio.wait_for(_wait(), timeout)
        return self

    def flush(self) -> None:
        """Send every dirty part now (normally done for you, throttled)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._dirty:
            return
        t0, c0 = time.perf_counter(), time.thread_time()
        dirty, self._dirty = self._dirty, set()
        vm = self._vm
        with self.hold_sync():
            for part in PARTS:
                if part not in dirty:
                    continue
                if part == "chart":
                    self.chart_svg = score_chart(vm.series(), vm.total_iterations)
                else:
                    setattr(self, part, vm.part(part))
            if "header" in dirty:
                self.cancellable = self._canceller is not None and not vm.done
            if "thumbs" in dirty:
                self.thumbs = dict(self._thumb_widgets)
        self.stats["flushes"] += 1
        self.stats["flush_seconds_max"] = max(self.stats["flush_seconds_max"], time.perf_counter() - t0)
        self._held(c0)
        if "best" in dirty:
            self._want_best_image()

    def close(self) -> None:
        """Stop following the job and free every model of this widget (thumbnails, layout)."""
        for stop in self._unsubscribe:
            stop()
        self._unsubscribe.clear()
        for t in list(self._tasks):
            t.cancel()
        if self._consumer is not None and not self._consumer.done():
            self._consumer.cancel()
        for w in self._thumb_widgets.values():
            w.close()
        self._thumb_widgets.clear()
        layout = getattr(self, "layout", None)
        super().close()
        if isinstance(layout, ipywidgets.Widget):  # a DOMWidget's Layout is a model of its own
            layout.close()

    # -- feeding --------------------------------------------------------------------------------

    def ingest(self, event: ev.Event | dict[str, Any]) -> None:
        """Take one event (from any source) and schedule what it changes."""
        t0 = time.thread_time()
        self.stats["events"] += 1
        try:
            e = ev.decode(event)
        except ValueError:
            log.warning("beamkit widget: skipped a malformed event", exc_info=True)
            return
        changed = self._vm.apply(e)
        if self._usage_source is not None and isinstance(e, (ev.CandidateEvent, ev.IterationEvent)):
            spent = self._vm.set_usage(self._usage_source())
            if spent:
                changed |= spent | {"header"}  # the header says what the job has cost so far
        if isinstance(e, ev.CandidateEvent) and e.ok:
            self._want_thumb(e.key)
        if isinstance(e, ev.ComparisonEvent) and (self.selected or {}).get("key") in (key_str(e.a), key_str(e.b)):
            self._show_detail(self.selected["key"])  # the open view gains the new verdict (its picture stays)
        self._mark(changed, now=self._vm.done)
        self._held(t0)

    def _held(self, t0: float) -> None:
        # CPU time of this thread, so that waiting for the GIL (thumbnail threads, a provider's
        # threads) is not counted as the widget's own work
        dt = time.thread_time() - t0
        self.stats["loop_seconds"] += dt
        self.stats["loop_seconds_max"] = max(self.stats["loop_seconds_max"], dt)

    def replay(self, events: Iterable[dict[str, Any]]) -> None:
        for e in events:
            self.ingest(e)

    def follow(self, events: AsyncIterator[dict[str, Any]], *, on_end: Callable[[], None] | None = None) -> None:
        """Consume an async stream of events on the running loop (a live or remote job)."""
        self._loop = asyncio.get_running_loop()

        async def consume() -> None:
            try:
                async for e in events:
                    self.ingest(e)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, BeamkitError):  # from the client: unknown job, bad token, lost connection
                    error = {"message": exc.message, "code": str(exc.code)}
                    status = "error" if isinstance(exc, (NotFound, AuthError)) else DISCONNECTED
                else:
                    log.exception("beamkit widget: the event stream failed")
                    error = {"message": f"event stream failed: {type(exc).__name__}: {exc}",
                             "code": str(ErrorCode.INTERNAL_ERROR)}
                    status = DISCONNECTED
                self._mark(self._vm.finish(status, error) | {"header"}, now=True)
            finally:
                if on_end is not None:
                    on_end()
                if not self._vm.done:
                    self._mark(self._vm.finish(DISCONNECTED), now=True)

        self._consumer = self._loop.create_task(consume(), name=f"beamkit widget {self._vm.job_id}")

    @property
    def live(self) -> bool:
        return self._loop is not None

    # -- internals ------------------------------------------------------------------------------

    def _spawn(self, aw: Awaitable[Any]) -> asyncio.Future[Any]:
        fut = asyncio.ensure_future(aw, loop=self._loop)
        self._tasks.add(fut)
        fut.add_done_callback(self._tasks.discard)
        return fut

    def _mark(self, parts: Iterable[str], *, now: bool = False) -> None:
        self._dirty |= set(parts)
        if not self._dirty or not self.live:
            return  # a static view is flushed once, by whoever built it
        if now:
            if self._flush_handle is not None:
                self._flush_handle.cancel()
            self._flush_handle = self._loop.call_soon(self.flush)  # type: ignore[union-attr]
        elif self._flush_handle is None:
            self._flush_handle = self._loop.call_later(self.throttle, self.flush)  # type: ignore[union-attr]

    def _want_thumb(self, key: Key) -> None:
        k = key_str(key)
        if k in self._thumbs_wanted:
            return
        self._thumbs_wanted.add(k)
        cand = self._vm.candidates[key]
        if not self.live:
            data = self._images.thumbnail_sync(cand)
            if data:
                self._add_thumb(k, data)
            return

        async def make() -> None:
            if self._thumb_sem is None:
                self._thumb_sem = asyncio.Semaphore(2)
            async with self._thumb_sem:
                data = await self._images.thumbnail(cand)
            if data:
                t0 = time.thread_time()
                self._add_thumb(k, data)
                self._mark({"thumbs"})
                self._held(t0)

        self._spawn(make())

    def _add_thumb(self, k: str, data: bytes) -> None:
        self._thumb_widgets[k] = Thumbnail(value=data, format=sniff_format(data), key=k)
        self.stats["thumbnails"] += 1
        self._dirty.add("thumbs")

    def _want_best_image(self) -> None:
        key = self._vm.best_key
        if key is None:
            return
        k = key_str(key)
        if k == self.best_image_key or k == self._best_loading:
            return
        cand = self._vm.candidates[key]
        if not self.live:
            data = self._images.full_sync(cand)
            if data:
                self._set_best_image(k, data)
            return
        if self._best_loading is not None:
            return  # the load in flight checks again when it ends
        wait = 0.0 if self._vm.done else self._best_sent_at + BEST_IMAGE_INTERVAL - time.monotonic()
        if wait > 0:
            if self._best_retry is None:
                self._best_retry = self._loop.call_later(wait, self._retry_best)  # type: ignore[union-attr]
            return
        self._best_loading = k

        async def load() -> None:
            try:
                data = await self._images.full(cand)
            finally:
                self._best_loading = None
            current = self._vm.best_key
            if data and current is not None and key_str(current) == k:
                self._set_best_image(k, data)
            self._want_best_image()  # the best may have moved on meanwhile

        self._spawn(load())

    def _retry_best(self) -> None:
        self._best_retry = None
        self._want_best_image()

    def _set_best_image(self, k: str, data: bytes) -> None:
        with self.hold_sync():
            self.best_image = data
            self.best_image_format = sniff_format(data)
            self.best_image_key = k
        self._best_sent_at = time.monotonic()
        self.stats["best_images"] += 1

    def _on_msg(self, _widget: Any, content: dict[str, Any], buffers: list[bytes]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                here = None
            if here is not loop:
                # ipykernel 7 handles comm messages on a subshell thread with its own loop, so
                # that widgets answer while a cell runs; the job, the widget's tasks and its
                # sends live on the kernel's main loop. A task made from here would never run.
                loop.call_soon_threadsafe(self._dispatch, content)
                return
        self._dispatch(content)

    def attach_person(self, target: Any) -> None:
        """Show ratings (and, for a steered Job, review controls) for ``target``, a Job or a Result."""
        self._person = PersonPanel(target)
        self.refresh_person()

    def refresh_person(self) -> None:
        if self._person is not None:
            self.person = self._person.payload()

    def _dispatch(self, content: dict[str, Any]) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if self._person is not None and kind in ("compare", "rate", "keep", "stop_review"):
            if self._person.handle(content):
                self.refresh_person()
            return
        if kind == "cancel":
            self.cancel()
        elif kind == "cancel_other":
            self.cancel_other(content.get("jobId"))
        elif kind == "select":
            self.select(content.get("key"))
        elif kind == "original":
            self.send_original(content.get("key"), content.get("request"))

    def cancel_other(self, job_id: Any) -> bool:
        """Cancel another job of this kernel, named in ``others`` (its widget may be gone)."""
        from .. import running

        job = running.get(job_id) if isinstance(job_id, str) else None
        if job is None or not any(o.get("jobId") == job_id for o in self.others):
            return False
        return job.cancel()

    def follow_others(self, job: Any) -> None:
        """Keep ``others`` up to date: the jobs of this kernel that still run, but ``job``."""
        from .. import running

        def update() -> None:
            self.others = [{"jobId": j.id, "prompt": j.params.prompt} for j in running.running() if j is not job]

        self._others_update = update  # held here: the registry holds its subscribers weakly
        self._unsubscribe.append(running.subscribe(update))
        update()

    def select(self, key: str | None) -> None:
        """Show one candidate's prompts, analysis and full picture (what a click on a card does)."""
        if not key:
            with self.hold_sync():
                self.set_trait("selected", None)
                self.selected_image = b""
            return
        detail = self._show_detail(str(key))
        if detail is None:
            return
        cand = self._vm.candidates[_key(detail["key"])]
        if detail.get("status") != "ok":
            self.selected_image = b""
            return

        def put(data: bytes | None) -> None:
            if data and (self.selected or {}).get("key") == detail["key"]:
                with self.hold_sync():
                    self.selected_image = data
                    self.selected_image_format = sniff_format(data)

        self._picture(cand, self._images.full, self._images.full_sync, put)

    def _picture(self, cand: dict[str, Any], read: Callable[[dict[str, Any]], Awaitable[bytes | None]],
                 read_sync: Callable[[dict[str, Any]], bytes | None], put: Callable[[bytes | None], None]) -> None:
        """Hand ``put`` a candidate's picture: read off the loop while the widget is live, at once when
        it is not (a static view has no loop to wait on)."""
        if self.live:
            async def load() -> None:
                put(await read(cand))

            self._spawn(load())
        else:
            put(read_sync(cand))

    def _show_detail(self, key: str) -> dict[str, Any] | None:
        """Set ``selected`` to one candidate's detail (None, and nothing set, for an unknown key)."""
        try:
            detail = self._vm.detail(_key(key))
        except ValueError:
            return None
        if detail is None:
            return None
        # each ancestor's prompts and critique, so the detail view can show critique -> refine
        # along the whole lineage, not only for the best candidate
        detail["steps"] = [
            {f: d.get(f) for f in _STEP_FIELDS}
            for d in (self._vm.detail(_key(k)) for k in detail.get("lineage") or [])
            if d is not None
        ]
        self.selected = detail
        return detail

    def send_original(self, key: Any, request: Any = None) -> None:
        """Send one candidate's stored picture (the provider's PNG, not re-encoded) as a custom
        message: ``{"type": "original", "key", "request", "format", "name"}`` with the bytes as
        its buffer, or with ``"error"`` and no buffer. The full-size view and Download ask for it."""
        reply: dict[str, Any] = {"type": "original", "key": key, "request": request}
        try:
            cand = self._vm.candidates[_key(str(key))]
        except (KeyError, ValueError):
            self.send({**reply, "error": f"no candidate {key!r}"})
            return

        def put(data: bytes | None) -> None:
            if not data:
                self.send({**reply, "error": f"the picture of {key} is not available"})
                return
            fmt = sniff_format(data)
            name = f"{self._vm.job_id or 'beamkit'}-iter{cand['iteration']}-cand{cand['candidateId']}.{fmt}"
            self.send({**reply, "format": fmt, "name": name}, [data])

        self._picture(cand, self._images.stored, self._images.stored_sync, put)


_STEP_FIELDS = ("key", "iteration", "candidateId", "dimension", "status", "totalScore", "whatPrompt", "howPrompt", "critique")


def _key(text: str) -> Key:
    i, c = (int(x) for x in text.split("-"))
    return (i, c)


# -- constructors ---------------------------------------------------------------------------------


def for_job(job: Any, *, throttle: float = 0.15, full_pictures: str = "webp") -> BeamWidget:
    """A live view of a Job of this kernel: its past events at once, then the rest as they come."""
    vm = ViewModel("live")
    vm.seed(job.id, job.params.to_dict())
    w = BeamWidget(vm, LocalImages(job.folder, full_pictures=full_pictures), canceller=job.cancel, throttle=throttle)
    try:
        vm.set_estimate(job.estimate())
    except Exception:  # an estimate is a courtesy: a provider that cannot price must not break the view
        log.debug("beamkit widget: no estimate for %s", job.id, exc_info=True)
    if vm.paid:
        w._usage_source = lambda: job.usage
    seen = list(job.history)

    def usage_at_end() -> None:
        # a cancelled or failed job's usage is on its Result, not in its error event
        w._mark(vm.set_usage(getattr(job.result, "usage", None)), now=True)

    try:
        asyncio.get_running_loop()
        running = True
    except RuntimeError:
        running = False
    w.attach_person(job)

    def person_changed(e: Any) -> None:
        if e["type"] in ("iteration", "complete", "error"):  # a review begins or ends; the ranking moves
            w.refresh_person()

    job.add_listener(person_changed)
    if running:
        w.follow_others(job)
        w.follow(job.events(start=len(seen)), on_end=usage_at_end)
        for e in seen:
            w.ingest(e)
        w._mark(PARTS, now=True)
        w.flush()
    else:  # no loop here (a script after the job ended): show what happened, statically
        for e in seen:
            w.ingest(e)
        if vm.done:
            vm.set_usage(getattr(job.result, "usage", None))
        w._dirty |= set(PARTS)
        w.flush()
    return w


def for_result(result: Any, *, full_pictures: str = "webp") -> BeamWidget:
    """A static view of a Result (``beamkit.load(folder)``): its session's state, no loop needed."""
    vm = ViewModel("loaded", state_of_result(result))
    w = BeamWidget(vm, LocalImages(result.folder, full_pictures=full_pictures))
    if result.folder is not None:
        w.attach_person(result)
    for key, c in vm.state.candidates.items():
        if c.ok:
            w._want_thumb(key)
    if not vm.done:  # a static view of a job that had not ended: nothing more will come to it
        vm.finish("interrupted")
    w._dirty |= set(PARTS)
    w.flush()
    return w


def for_remote(
    client: Any, job_id: str, *, throttle: float = 0.15, close_client: bool = True, full_pictures: str = "webp"
) -> BeamWidget:
    """A live view of a job on a beamkit server, through ``beamkit.client.Client``
    (``follow`` for the events, ``image`` for pictures, ``cancel`` for the button)."""
    from .images import RemoteImages

    vm = ViewModel("remote")
    vm.seed(job_id, {})
    w = BeamWidget(
        vm, RemoteImages(client, full_pictures=full_pictures), canceller=lambda: client.cancel(job_id), throttle=throttle
    )

    def on_end() -> None:
        if not close_client or not hasattr(client, "close"):
            return

        async def close_when_idle() -> None:
            # the last thumbnails and the final best picture still come through the client
            me = asyncio.current_task()
            while pending := [t for t in w._tasks if not t.done() and t is not me]:
                await asyncio.gather(*pending, return_exceptions=True)
            client.close()

        w._spawn(close_when_idle())

    w._dirty |= set(PARTS)
    w.follow(client.follow(job_id), on_end=on_end)
    w.flush()
    return w
