"""Where a sweep runs: a ``LocalCluster`` of worker processes, or a cluster the user already has.

``cluster=None`` starts a ``LocalCluster`` on 127.0.0.1 (one single-threaded worker process
per core, no dashboard) and closes it with the sweep; ``"tcp://host:8786"`` connects to a
scheduler; a ``distributed.Client`` (or anything with a ``scheduler_address``) is used as is
and left open.

Dask starts its worker processes with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``). Setting any glibc malloc threshold switches off
glibc's adaptive mmap threshold, so every array above 128 KiB is mmap'ed and unmapped again,
and each of its pages faults in fresh: the offline painter then takes 3x the page faults and
1.6-1.8x the CPU of a plain process (docs/sweeps.md has the figures). beamkit's LocalCluster
drops the variable, so its workers allocate like any Python process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: the Dask configuration beamkit's LocalCluster starts its scheduler, nannies and workers with.
#: Beside the malloc variable (above): Dask's periodic work, which serves a dashboard this cluster does
#: not have, cost an idle 2-worker cluster 375 ms of CPU a second here (19% of two cores, taken from the
#: jobs); with these, 54 ms (docs/sweeps.md). The worker's statistical profiler samples every thread
#: every 10 ms; the others are monitors made less eager, and the two scheduler extensions a sweep
#: (no data moved between workers) does not use.
CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.work-stealing": False,
    "distributed.scheduler.active-memory-manager.start": False,
}


def local_cluster(n_workers: int | None = None, **kwargs: Any) -> Any:
    """A ``LocalCluster`` as a sweep starts it: worker processes on 127.0.0.1, one thread each.

    Start it from a module, a file or a notebook: Dask's worker processes re-import the main
    module, so a script read on standard input (``python - <<EOF``) fails with "Nanny failed to start".
    """
    import dask
    from distributed import LocalCluster

    options: dict[str, Any] = dict(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
    options.update(kwargs)
    with dask.config.set(CLUSTER_CONFIG):
        return LocalCluster(**options)


@dataclass
class Connection:
    client: Any
    _closers: list[Callable[[], Any]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # closing is best effort: the sweep's rows are already in
                pass
        self._closers.clear()


def connect(cluster: Any = None, n_workers: int | None = None) -> Connection:
    """A client for ``cluster`` (see the module's docstring); ``close()`` closes only what this opened."""
    from distributed import Client

    if cluster is None:
        local = local_cluster(n_workers)
        client = Client(local)
        return Connection(client, [local.close, client.close])
    if isinstance(cluster, Client):
        return Connection(cluster)
    if isinstance(cluster, str):
        client = Client(cluster)
        return Connection(client, [client.close])
    if hasattr(cluster, "scheduler_address"):  # a cluster object (LocalCluster, a dask-jobqueue cluster...)
        client = Client(cluster)
        return Connection(client, [client.close])
    raise TypeError(f"cluster must be None, a scheduler address, a distributed.Client or a cluster, not {type(cluster).__name__}")


__all__ = ["CLUSTER_CONFIG", "Connection", "connect", "local_cluster"]
