"""The Sweep: many jobs (prompts x configurations x seeds) on Dask, collected into one table."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import threading
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ErrorCode, InvalidRequest
from . import gates, rows, tasks
from . import plan as planning

log = logging.getLogger(__name__)
DEFAULT_ROOT = Path("output") / "sweeps"
RowListener = Callable[[dict[str, Any] | None], None]
#: scheduler task states of a task that no worker has been given yet
UNSENT = ("released", "waiting", "queued", "no-worker")


class Sweep:
    """A running (or finished) sweep. Returned by :func:`beamkit.sweep`; it runs in a background thread.

    ``results()`` is the table so far, ``wait()`` blocks until every job is in (or ``await sweep``),
    ``cancel()`` stops every job, ``summary()`` and ``plot()`` compare the configurations.
    """

    def __init__(self, plan: planning.Plan, output: Path, name: str, *, cluster: Any = None,
                 workers: int | None = None, limits: dict[str, Any] | None = None,
                 mlflow: bool | str = False, baselines: tuple[str, ...] = (), seeds: list[int] | None = None) -> None:
        self.plan = plan
        self.output = output
        self.name = name
        self.status = "pending"
        #: jobs run by this sweep, and those whose complete session was already on disk
        self.jobs_run = 0
        self.jobs_resumed = 0
        self._cluster = cluster
        self._workers = workers
        self._limits = gates.to_wire(gates.parse(limits)) if limits else None
        self._mlflow = mlflow
        self._baselines = baselines
        self._seeds = seeds or []
        self._outcomes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._listeners: list[RowListener] = []
        self._done = threading.Event()
        self._cancelled = threading.Event()
        self._error: BaseException | None = None
        self._client: Any = None
        self._event: Any = None
        self._futures: dict[str, Any] = {}
        self._tracker: Any = None
        self._thread = threading.Thread(target=self._main, name=f"beamkit sweep {name}", daemon=True)

    # -- public ------------------------------------------------------------------------------

    def start(self) -> Sweep:
        if self._mlflow and self._tracker is None:  # here, so that a tracking store that fails, fails the call
            from .tracking import DEFAULT_EXPERIMENT, MlflowTracker

            experiment = self._mlflow if isinstance(self._mlflow, str) else DEFAULT_EXPERIMENT
            self._tracker = MlflowTracker(self.name, experiment, {"output": str(self.output),
                                                                  "configs": sorted(self.plan.configs)})
        self.status = "running"
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Sweep:
        """Block until every job is in; a Ctrl-C cancels the sweep. Raises what stopped the sweep itself
        (a cluster that cannot be reached, say): a failed job is a row, not an exception."""
        try:
            if not self._done.wait(timeout):
                raise TimeoutError(f"sweep {self.name} is still running after {timeout} s")
        except KeyboardInterrupt:
            self.cancel()
            self._done.wait()
            raise
        if self._error is not None:
            raise self._error
        return self

    def __await__(self) -> Generator[Any, None, Sweep]:
        return asyncio.to_thread(self.wait).__await__()

    def cancel(self) -> None:
        """Stop every job: queued ones are dropped, running ones cancelled (their sessions say so)."""
        self._cancelled.set()
        event, client = self._event, self._client
        if event is not None:
            try:
                event.set()
            except Exception:
                log.debug("could not set the cancel event of sweep %s", self.name, exc_info=True)
        if client is not None:
            try:
                with self._lock:
                    futures = [f for f in self._futures.values() if not f.done()]
                # Only tasks no worker has yet: one a worker holds runs to its first check of the event
                # (set above) and reports itself cancelled; dropping it here could lose a cancelled
                # session's row, if it had just finished. A lambda travels by value: the scheduler
                # need not have beamkit installed.
                keys = [f.key for f in futures]
                states = client.run_on_scheduler(
                    lambda dask_scheduler: {k: ts.state for k in keys if (ts := dask_scheduler.tasks.get(k))})
                client.cancel([f for f in futures if states.get(f.key) in UNSENT])
            except Exception:
                log.debug("could not cancel the queued jobs of sweep %s", self.name, exc_info=True)

    def on_row(self, listener: RowListener) -> Callable[[], None]:
        """Call ``listener(row)`` for each row that comes in (on the sweep's thread), and ``listener(None)``
        once when the sweep ends; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def progress(self) -> dict[str, int]:
        """Rows: total, done (completed), failed (error or cancelled), resumed (read from earlier runs), pending."""
        with self._lock:
            outcomes = dict(self._outcomes)
        total = done = failed = resumed = 0
        for r in self.plan.rows:
            total += 1
            o = outcomes.get(r.job_id)
            if o is None:
                continue
            if o["status"] == "completed":
                done += 1
            else:
                failed += 1
            resumed += bool(o.get("resumed"))
        return {"total": total, "done": done, "failed": failed, "resumed": resumed, "pending": total - done - failed}

    def rows(self) -> list[dict[str, Any]]:
        """Every row as a dict: the plan's columns, then the outcome (status "pending" until it is in)."""
        with self._lock:
            outcomes = dict(self._outcomes)
        out = []
        for r in self.plan.rows:
            plan_part = {c: getattr(r, c) for c in rows.PLAN_COLUMNS}
            out.append({**plan_part, **outcomes.get(r.job_id, rows.empty())})
        return out

    def results(self) -> Any:
        """A pandas DataFrame, one row per (prompt, configuration, seed); see docs/sweeps.md for the columns."""
        import pandas as pd

        df = pd.DataFrame(self.rows(), columns=list(rows.COLUMNS))
        for c in ("best_total", "alignment", "aesthetic", "cost", "duration_s"):
            df[c] = df[c].astype(float)
        for c in ("images", "calls", "llm_calls", "image_calls", "vision_calls", "iterations_done"):
            df[c] = df[c].astype("Int64")
        return df

    def by_config(self) -> dict[str, dict[str, Any]]:
        """Per configuration: rows, done, failed, mean and best total so far (what the live view shows)."""
        out: dict[str, dict[str, Any]] = {}
        for row in self.rows():
            c = out.setdefault(row["config"], {"rows": 0, "done": 0, "failed": 0, "scores": []})
            c["rows"] += 1
            if row["status"] == "completed":
                c["done"] += 1
            elif row["status"] != "pending":
                c["failed"] += 1
            if row["best_total"] is not None:
                c["scores"].append(row["best_total"])
        for c in out.values():
            scores = c.pop("scores")
            c["mean"] = sum(scores) / len(scores) if scores else math.nan
            c["best"] = max(scores) if scores else math.nan
        return out

    def summary(self) -> Any:
        """Per configuration: mean best total, its bootstrap confidence interval and win rates against each baseline."""
        from .stats import summary

        return summary(self.results())

    def plot(self, ax: Any = None) -> Any:
        """Mean best total (with its interval) against the images spent, one point per configuration."""
        from .plot import plot

        return plot(self.summary(), ax=ax)

    def save(self, folder: str | os.PathLike[str] | None = None) -> Path:
        """Write results.csv (and results.parquet where pyarrow is installed), summary.csv and summary.json."""
        from .stats import summary

        folder = Path(folder) if folder is not None else self.output
        folder.mkdir(parents=True, exist_ok=True)
        df = self.results()
        df.to_csv(folder / "results.csv", index=False)
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            pass
        else:
            df.to_parquet(folder / "results.parquet", index=False)
        table = summary(df)
        table.to_csv(folder / "summary.csv", index=False)
        (folder / "summary.json").write_text(table.to_json(orient="records", indent=2), encoding="utf-8")
        return folder

    def widget(self) -> Any:
        from .widget import SweepView

        return SweepView(self).box

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = {"text/plain": repr(self)}
        try:
            view = self.widget()
        except ImportError:
            from .widget import header_text, table_html

            bundle["text/html"] = header_text(self) + table_html(self)
            return bundle
        return {**view._repr_mimebundle_(include=include, exclude=exclude), "text/plain": repr(self)}

    def __repr__(self) -> str:
        p = self.progress()
        return f"<Sweep {self.name} {self.status} {p['done']}/{p['total']} done, {p['failed']} failed>"

    # -- the collector thread ------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._write_record()
            todo = self._resume()
            if todo and not self._cancelled.is_set():
                self._run(todo)
            for job_id in todo:  # cancelled before they were sent
                if job_id not in self._outcomes:
                    self._record(job_id, rows.failed(ErrorCode.CANCELLED, "the sweep was cancelled before this job ran"))
            self.status = "cancelled" if self._cancelled.is_set() else "completed"
        except BaseException as exc:
            self._error = exc
            self.status = "error"
            log.exception("sweep %s stopped", self.name)
        finally:
            try:
                self.save()
                if self._tracker is not None:
                    self._tracker.finish(self.status)
            except Exception:
                log.exception("sweep %s could not write its results", self.name)
            self._done.set()
            self._notify(None)

    def _write_record(self) -> None:
        """sweep.json: what the sweep is, for whoever finds the folder later (no provider settings: they may hold keys)."""
        self.output.mkdir(parents=True, exist_ok=True)
        configs = {name: {k: v for k, v in p.items() if k != "provider_settings"} for name, p in self.plan.configs.items()}
        record = {"name": self.name, "configs": configs, "baselines": list(self._baselines), "seeds": self._seeds,
                  "prompts": len({r.prompt_index for r in self.plan.rows}), "rows": len(self.plan.rows),
                  "jobs": len(self.plan.jobs)}
        (self.output / "sweep.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")

    def _resume(self) -> list[str]:
        """Record every job whose complete session is on disk; return the others."""
        todo = []
        for job_id in self.plan.jobs:
            found = tasks.finished(tasks.session_folder(self.output, job_id))
            if found is None:
                todo.append(job_id)
            else:
                self.jobs_resumed += 1
                self._record(job_id, found)
        return todo

    def _run(self, todo: list[str]) -> None:
        from distributed import Event, as_completed

        from .cluster import connect

        conn = connect(self._cluster, self._workers)
        try:
            client = self._client = conn.client
            event_name = f"beamkit-cancel-{self.name}-{uuid.uuid4().hex[:8]}"
            self._event = Event(event_name, client=client)
            if self._cancelled.is_set():  # cancelled while the cluster started
                return
            output = str(self.output.resolve())
            for job_id in todo:
                spec = self.plan.jobs[job_id]
                future = client.submit(tasks.run_job, spec.to_dict(), output, event_name, self._limits,
                                       key=f"beamkit-{job_id}-{event_name[-8:]}", pure=False)
                with self._lock:
                    self._futures[job_id] = future
            by_key = {f.key: job_id for job_id, f in self._futures.items()}
            for future in as_completed(list(self._futures.values())):
                job_id = by_key[future.key]
                self._record(job_id, _outcome_of(future))
        finally:
            self._client = None
            if self._event is not None:
                try:
                    # Wakes the watchers still waiting on it (their jobs are over: they cancel nothing),
                    # so that no wait is cut off by the cluster's close; clearing drops it from the scheduler.
                    self._event.set()
                    self._event.clear()
                except Exception:
                    pass
            conn.close()

    def _record(self, job_id: str, outcome: dict[str, Any]) -> None:
        if outcome.pop("ran", False):
            self.jobs_run += 1
        with self._lock:
            self._outcomes[job_id] = outcome
        for r in self.plan.rows_of(job_id):
            row = {**{c: getattr(r, c) for c in rows.PLAN_COLUMNS}, **outcome}
            if self._tracker is not None:
                self._track(row)
            self._notify(row)

    def _track(self, row: dict[str, Any]) -> None:
        try:
            history: list[float] = []
            if row.get("folder") and Path(row["folder"]).is_dir():
                from .. import api

                history = api.load(row["folder"]).best_by_iteration()
            params = {k: v for k, v in self.plan.configs[row["config"]].items() if k != "provider_settings"}
            self._tracker.log_job(row, params, history)
        except Exception:  # tracking is a side channel: it must not stop the sweep
            log.exception("could not log job %s to MLflow", row["job_id"])

    def _notify(self, row: dict[str, Any] | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(row)
            except Exception:
                log.exception("sweep listener failed")


def _outcome_of(future: Any) -> dict[str, Any]:
    if future.status == "finished":
        return dict(future.result())
    if future.status == "cancelled":
        return rows.failed(ErrorCode.CANCELLED, "the sweep was cancelled before this job ran")
    try:
        exc = future.exception()
        message = f"{type(exc).__name__}: {exc}"
    except Exception as err:
        message = f"{type(err).__name__}: {err}"
    # A dead worker (KilledWorker) or a task the scheduler lost: the job ran, or began to.
    return {**rows.failed(ErrorCode.INTERNAL_ERROR, message), "ran": True}


def _default_name(plan: planning.Plan) -> str:
    """The same sweep gets the same name (so the same folder, so running it again resumes it)."""
    text = json.dumps([[r.config, r.job_id] for r in plan.rows])
    return "sweep-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def sweep(
    prompts: planning.PromptsLike,
    configs: planning.ConfigsLike,
    *,
    seeds: int | Iterable[int] = 1,
    baselines: Iterable[str] = (),
    output: str | os.PathLike[str] | None = None,
    cluster: Any = None,
    name: str | None = None,
    workers: int | None = None,
    limits: Mapping[str, Any] | None = None,
    mlflow: bool | str = False,
    start: bool = True,
) -> Sweep:
    """Run every (prompt, configuration, seed) as a beamkit job on Dask, in the background.

    ``prompts``: texts or :class:`beamkit.prompts.Prompt` objects, or a prompt set's name or file
    (``"parti"``, ``"mine.tsv"``). ``configs``: name -> job parameters (a list is named for what
    tells its members apart). ``seeds``: a count k (seeds 0..k-1) or a list. ``baselines``: any of
    ``none``, ``rewrite-once``, ``best-of-n``, ``greedy``, each at its configuration's image budget.
    ``output``: the sweep's folder, default ``output/sweeps/NAME`` (workers must see it: a shared
    filesystem). ``cluster``: None (a LocalCluster of ``workers`` processes), ``"tcp://host:8786"``
    or a ``distributed.Client``. ``limits``: call limits across all workers, e.g. ``{"image": 4}`` or
    ``{"openai": {"image": {"concurrency": 4, "per_minute": 50}}}``. ``mlflow``: log each job as an
    MLflow run under a parent run (True, or an experiment's name).

    Running the same sweep into the same folder again skips every job whose session completed.
    """
    kinds = (baselines,) if isinstance(baselines, str) else tuple(baselines)
    seed_values = planning.seed_list(seeds)
    plan = planning.plan(prompts, configs, seed_values, kinds)
    if limits is not None:
        gates.parse(limits)  # a bad limit fails here, not in a worker
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidRequest(f"workers must be a positive integer, got {workers!r}", "workers")
    if name is not None and (not isinstance(name, str) or not name.strip() or "/" in name or name in (".", "..")):
        raise InvalidRequest(f"a sweep's name must be a plain folder name, got {name!r}", "name")
    name = name or _default_name(plan)
    folder = Path(output) if output is not None else DEFAULT_ROOT / name
    s = Sweep(plan, folder, name, cluster=cluster, workers=workers, limits=dict(limits) if limits else None,
              mlflow=mlflow, baselines=kinds, seeds=seed_values)
    return s.start() if start else s


__all__ = ["Sweep", "sweep"]
