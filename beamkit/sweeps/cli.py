"""``beamkit sweep PROMPTS --config a.json --config b.json --seeds 3 --output DIR``.

Writes results.csv (and results.parquet where pyarrow is installed), summary.csv and
summary.json into the sweep's folder, and prints the summary table. A failed job is a row
(the exit status stays 0); a bad argument exits 2, a sweep that could not run exits 1, and
Ctrl-C cancels every job, writes what came in and exits 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import BeamkitError, InvalidRequest
from . import baselines as baseline_kinds


def add_parser(sub: Any, parser_class: Any = None) -> None:
    p = sub.add_parser("sweep", help="run many jobs (prompts x configurations x seeds) on Dask and summarize them")
    p.add_argument("prompts", help="a prompt set (parti) or a TSV, CSV, JSONL or text file of prompts")
    p.add_argument("--config", action="append", default=[], metavar="[NAME=]FILE", required=True,
                   help="a JSON file of job parameters ({\"N\": 9, \"M\": 3, ...}), named by its file name "
                        "or NAME; repeatable")
    p.add_argument("--seeds", type=_count("seeds"), default=1, help="seeds per (prompt, configuration) (default 1)")
    p.add_argument("--baseline", action="append", default=[], choices=baseline_kinds.NAMES,
                   help="a baseline at each configuration's image budget; repeatable")
    p.add_argument("--output", default=None, help="the sweep's folder (default output/sweeps/NAME)")
    p.add_argument("--name", default=None, help="the sweep's name (default: a hash of what it runs)")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="a Dask scheduler, e.g. tcp://host:8786 (default: a LocalCluster on this machine)")
    p.add_argument("--workers", type=_count("workers"), default=None,
                   help="worker processes of the LocalCluster (default: one per core)")
    p.add_argument("--limit", action="append", default=[], metavar="[PROVIDER.]KIND=N",
                   help="calls of a kind (llm, image, vision) in flight at once across all workers, e.g. "
                        "image=4 or openai.image=4; repeatable")
    p.add_argument("--n", type=_count("n"), default=None, help="take n prompts of the set")
    p.add_argument("--sample-seed", type=int, default=None, help="draw the n prompts at random with this seed")
    p.add_argument("--category", action="append", default=None, help="only prompts of this category; repeatable")
    p.add_argument("--challenge", action="append", default=None, help="only prompts of this challenge; repeatable")
    p.add_argument("--mlflow", nargs="?", const=True, default=False, metavar="EXPERIMENT",
                   help="log each job as an MLflow run (under EXPERIMENT, default 'beamkit')")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def _count(name: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} takes an integer, not {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"--{name} must be at least 1, not {value}")
        return value
    return parse


def read_configs(specs: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep:
            name, file = Path(spec).stem, spec
        path = Path(file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidRequest(f"--config {spec}: no such file", "config") from None
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"--config {spec}: not JSON ({exc.msg}, line {exc.lineno})", "config") from None
        if not isinstance(data, dict):
            raise InvalidRequest(f"--config {spec}: must hold a JSON object of job parameters", "config")
        if name in out:
            raise InvalidRequest(f"--config {spec}: a second configuration named '{name}' (name it: NAME=FILE)", "config")
        out[name] = data
    return out


def read_limits(specs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not value.strip().isdigit():
            raise InvalidRequest(f"--limit {spec}: write [PROVIDER.]KIND=N, e.g. image=4", "limit")
        provider, dot, kind = key.rpartition(".")
        if dot:
            out.setdefault(provider, {})[kind] = int(value)
        else:
            out[kind] = int(value)
    return out


def main(args: argparse.Namespace) -> int:
    from ..prompts import load as load_prompts
    from .stats import format_table
    from .sweep import sweep

    try:
        prompts = load_prompts(args.prompts, category=args.category, challenge=args.challenge, n=args.n,
                               seed=args.sample_seed)
        s = sweep(prompts, read_configs(args.config), seeds=args.seeds, baselines=args.baseline,
                  output=args.output, cluster=args.cluster, name=args.name, workers=args.workers,
                  limits=read_limits(args.limit) or None, mlflow=args.mlflow)
    except BeamkitError as exc:
        print(f"beamkit: error: {exc.message} [{exc.code}]", file=sys.stderr)
        return 2 if isinstance(exc, InvalidRequest) else 1
    bar = _bar(s, enabled=not args.quiet)
    try:
        s.wait()
    except KeyboardInterrupt:
        bar.close()
        print(f"beamkit: interrupted; the sweep was cancelled, what came in is in {s.output}", file=sys.stderr)
        return 130
    except Exception as exc:
        bar.close()
        print(f"beamkit: error: the sweep stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    bar.close()
    p = s.progress()
    print(format_table(s.summary()))
    print(f"\n{p['done']} of {p['total']} rows completed, {p['failed']} failed; {s.jobs_run} jobs ran, "
          f"{s.jobs_resumed} were already done")
    print(f"results      {s.output / 'results.csv'}")
    print(f"summary      {s.output / 'summary.csv'}")
    return 0


def _bar(s: Any, enabled: bool) -> Any:
    """A tqdm bar on stderr, one step per row (it starts at the rows read back from earlier runs)."""
    from tqdm import tqdm

    bar = tqdm(total=s.progress()["total"], unit="row", file=sys.stderr, disable=not enabled, dynamic_ncols=True,
               desc=f"sweep {s.name}")

    def step(row: dict[str, Any] | None) -> None:
        if row is None:
            return
        p = s.progress()
        bar.set_postfix(failed=p["failed"], refresh=False)
        bar.update(p["done"] + p["failed"] - bar.n)

    s.on_row(step)
    step({})  # rows that came in before the bar existed
    return bar


__all__ = ["add_parser", "main", "read_configs", "read_limits"]
