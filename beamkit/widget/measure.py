"""Measure what the widget sends to the front end for one job.

    python -m beamkit.widget.measure                 # a default job (N=9, M=3, iterations=3), offline
    python -m beamkit.widget.measure --N 16 --iterations 5 --json

Every comm message the widget and its thumbnail models publish is counted as the kernel
would send it: the JSON content (packed as jupyter_client packs it) plus the binary
buffers. The Jupyter message envelope (header, parent header: about 0.5 KB a message) is
not included; the message count is reported so it can be added.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.session import json_packer

from ..settings import DEFAULT_PROVIDERS


@dataclass
class Traffic:
    messages: list[dict[str, Any]] = field(default_factory=list)

    active: bool = True

    def add(self, comm_id: str, msg_type: str, data: Any, buffers: Any) -> None:
        if not self.active:
            return
        content = len(json_packer(data or {}))
        bufs = [len(memoryview(b).cast("B")) for b in (buffers or [])]
        state = (data or {}).get("state") or {}
        model = state.get("_model_name") if isinstance(state, dict) else None
        self.messages.append(
            {"comm": comm_id, "type": msg_type, "json": content, "buffers": sum(bufs), "model": model,
             "keys": sorted(state) if isinstance(state, dict) else []}
        )

    def summary(self) -> dict[str, Any]:
        thumbs = {m["comm"] for m in self.messages if m["model"] == "WidgetModel"}
        out = {
            "messages": len(self.messages),
            "json_bytes": sum(m["json"] for m in self.messages),
            "buffer_bytes": sum(m["buffers"] for m in self.messages),
            "thumbnail_models": len(thumbs),
            "thumbnail_bytes": sum(m["json"] + m["buffers"] for m in self.messages if m["comm"] in thumbs),
            "full_image_bytes": sum(m["buffers"] for m in self.messages if m["comm"] not in thumbs),
        }
        out["total_bytes"] = out["json_bytes"] + out["buffer_bytes"]
        out["other_state_bytes"] = out["total_bytes"] - out["thumbnail_bytes"] - out["full_image_bytes"]
        return out


@contextlib.contextmanager
def count_comms() -> Iterator[Traffic]:
    """Replace ``comm.create_comm`` by one whose comms count what they would publish."""
    import comm
    from comm import DummyComm

    traffic = Traffic()

    class CountingComm(DummyComm):
        def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any) -> None:
            traffic.add(self.comm_id, msg_type, data, buffers)

    saved = comm.create_comm
    comm.create_comm = lambda *a, **k: CountingComm(*a, **k)
    try:
        yield traffic
    finally:
        traffic.active = False
        comm.create_comm = saved


async def measure_job(output: str | None = None, **params: Any) -> dict[str, Any]:
    """Run one job with its widget attached; return the bytes sent, by kind, and the job's outcome."""
    import beamkit

    from . import view

    with count_comms() as traffic, tempfile.TemporaryDirectory() as tmp:
        job = beamkit.start(output=output or tmp, **params)
        w = view(job)
        result = await job
        await w.settled()
        summary = traffic.summary()
        summary.update(
            candidates=len(result.candidates),
            thumbnails=w.thumbnail_count,
            best_images_sent=w.stats["best_images"],
            flushes=w.stats["flushes"],
            flush_ms_max=round(w.stats["flush_seconds_max"] * 1000, 2),
            params={k: v for k, v in job.params.to_dict().items() if k != "prompt"},
        )
        w.close()
        return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m beamkit.widget.measure", description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", default="a lighthouse on a cliff at dusk")
    ap.add_argument("--N", type=int, default=9)
    ap.add_argument("--M", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--providers", default=DEFAULT_PROVIDERS)
    ap.add_argument("--json", action="store_true", help="print JSON")
    a = ap.parse_args(argv)
    summary = asyncio.run(
        measure_job(prompt=a.prompt, N=a.N, M=a.M, iterations=a.iterations, seed=a.seed, providers=a.providers)
    )
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        kb = lambda n: f"{n / 1024:.1f} KiB"  # noqa: E731
        print(f"job: {summary['params']}")
        print(f"total sent to the front end: {summary['total_bytes']} bytes ({kb(summary['total_bytes'])}) in {summary['messages']} messages")
        print(f"  thumbnails:   {kb(summary['thumbnail_bytes'])} ({summary['thumbnail_models']} thumbnails)")
        print(f"  full images:  {kb(summary['full_image_bytes'])} ({summary['best_images_sent']} best-so-far pictures)")
        print(f"  other state:  {kb(summary['other_state_bytes'])} ({summary['flushes']} throttled updates, slowest {summary['flush_ms_max']} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
