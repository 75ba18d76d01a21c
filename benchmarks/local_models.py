"""Local-model benchmark: images per second by batch size, and peak GPU memory; asserts nothing.

    .venv/bin/python benchmarks/local_models.py                      # the tiny random pipeline, on the CPU
    .venv/bin/python benchmarks/local_models.py --device cuda --dtype float16 --job
    .venv/bin/python benchmarks/local_models.py --model stabilityai/sdxl-turbo --steps 1 --guidance 0 \\
        --width 512 --height 512 --batch-sizes 1,2,4,8 --images 16 --device cuda --dtype float16

Each batch size renders ``--images`` pictures through the diffusers provider itself (its
batcher and worker thread, the same code a job uses), after one warm-up batch; the pipeline
is loaded once and shared by every batch size, as jobs share it. ``--job`` also runs a small
beam search (offline LLM, diffusers images, CLIP + LAION-aesthetic ensemble) on the tiny
models and prints its wall time: the end-to-end check to repeat on a GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from beamkit.providers.base import RoleOptions  # noqa: E402
from beamkit.providers.diffusers import DiffusersProvider  # noqa: E402


def peak_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


async def throughput(args: argparse.Namespace, model: str) -> list[dict[str, Any]]:
    provider = DiffusersProvider()
    rows = []
    try:
        settings = {"model": model, "device": args.device, "dtype": args.dtype, "steps": args.steps,
                    "width": args.width, "height": args.height, "guidance": args.guidance}
        started = time.perf_counter()
        loader = provider.create("image", RoleOptions("image", settings={**settings, "batch_size": 1})).impl
        first = await loader.generate("warm up", seed=0)
        print(f"load + first picture: {time.perf_counter() - started:.2f} s on {first.metadata['device']} "
              f"({first.metadata['size']}, {first.metadata['steps']} steps)")
        for size in args.batch_sizes:
            role = provider.create("image", RoleOptions("image", settings={**settings, "batch_size": size})).impl
            await asyncio.gather(*(role.generate(f"warm up {i}", seed=i) for i in range(size)))
            reset_peak()
            started = time.perf_counter()
            await asyncio.gather(*(role.generate(f"a picture of fox number {i}", seed=100 + i) for i in range(args.images)))
            wall = time.perf_counter() - started
            rows.append({"batch": size, "images": args.images, "seconds": wall, "per_second": args.images / wall,
                         "peak_gib": peak_gib()})
    finally:
        await provider.close()
    return rows


async def small_job(args: argparse.Namespace, tiny: dict[str, str]) -> None:
    import beamkit
    from beamkit.providers import registry

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        try:
            result = await beamkit.search(
                "a red fox in the snow", N=4, M=2, iterations=2, seed=1, output=out,
                providers={"llm": "offline", "image": "diffusers", "vision": "ensemble"},
                provider_settings={
                    "image": {"model": tiny["pipeline"], "device": args.device, "dtype": args.dtype,
                              "steps": 2, "width": 96, "height": 64, "batch_size": 4},
                    "vision": {"device": args.device, "dtype": args.dtype, "scorers": {
                        "clip": {"model": tiny["clip"]},
                        "laion-aesthetic": {"clip_model": tiny["clip"], "head": tiny["head"]}}},
                },
            )
        finally:
            await registry.close_all()
        wall = time.perf_counter() - started
        best = result.best
        print(f"tiny job (N=4, M=2, 2 iterations): {result.status} in {wall:.2f} s, "
              f"{sum(c.ok for c in result.candidates)} candidates, best {best.total_score if best else None}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a model id or local folder (default: the tiny random pipeline, built here)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--batch-sizes", default="1,2,4,8", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--images", type=int, default=16, help="pictures per batch size")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU runs)")
    ap.add_argument("--job", action="store_true", help="also run a small beam search on the tiny models")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, cuda {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}")
    with tempfile.TemporaryDirectory() as tmp:
        tiny: dict[str, str] = {}
        if args.model is None or args.job:
            tiny_models = importlib.import_module("tiny_models")  # tests/tiny_models.py
            tiny = {k: str(v) for k, v in tiny_models.build_all(Path(tmp)).items()}
            tiny["head"] = tiny.pop("aesthetic_head")
        model = args.model or tiny["pipeline"]
        rows = asyncio.run(throughput(args, model))
        print(f"\n{'batch':>5}  {'images':>6}  {'seconds':>8}  {'images/s':>8}  {'peak GPU GiB':>12}")
        for r in rows:
            peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
            print(f"{r['batch']:>5}  {r['images']:>6}  {r['seconds']:>8.2f}  {r['per_second']:>8.2f}  {peak:>12}")
        if args.job:
            print()
            asyncio.run(small_job(args, tiny))


if __name__ == "__main__":
    main()
