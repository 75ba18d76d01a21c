"""The command line: ``beamkit run PROMPT`` and ``beamkit serve``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn, Sequence

from . import events as ev
from .errors import BeamkitError
from .params import FIELDS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line naming the problem; the usage is one `--help` away.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind: type, name: str):
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} takes {'an integer' if kind is int else 'a number'}, not {text!r}")
    return parse


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run one beam search and print the best prompt")
    p.add_argument("prompt", help="what you want to see, e.g. 'a forest at dawn'")
    for f in FIELDS[1:]:
        if f.kind is str:
            p.add_argument(f"--{f.name}", default=f.default, help=f.help)
        else:
            p.add_argument(f"--{f.name}", type=_number(f.kind, f.name), default=f.default, help=f"{f.help} (default {f.default})")
    p.add_argument("--output", default="output", help="folder for sessions (default ./output)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _add_serve(sub: Any) -> None:
    from .server.handlers import DEFAULT_MAX_CONNECTIONS

    p = sub.add_parser("serve", help="serve the REST and WebSocket API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_number(int, "port"), default=3000)
    p.add_argument("--output", default="output")
    p.add_argument("--providers", default="offline", help="default provider set for jobs that name none")
    p.add_argument("--max-jobs", type=_number(int, "max-jobs"), default=4, help="jobs that may run at once")
    p.add_argument("--token", default=None, help="required for a non-loopback host (or BEAMKIT_TOKEN)")
    p.add_argument("--max-connections", type=_number(int, "max-connections"), default=DEFAULT_MAX_CONNECTIONS,
                   help=f"WebSockets open at once; more are refused with 429 (default {DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="let web pages of ORIGIN (e.g. http://localhost:8888) use the API and WebSocket; repeatable; "
                        "'*' allows any page")
    p.set_defaults(func=_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="beamkit", description="Beam search for better text-to-image prompts.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub)
    _add_serve(sub)
    return parser


class _Progress:
    """A tqdm bar on stderr, advanced by candidate events."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="cand", file=sys.stderr, disable=not enabled, dynamic_ncols=True)
        self.best: float | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == ev.ITERATION and event["status"] == "processing":
            op = "expand" if event["iteration"] == 0 else f"refine {event['dimension'].upper()}"
            self.bar.set_description(f"iter {event['iteration']}/{event['totalIterations'] - 1} {op}")
        elif kind == ev.CANDIDATE:
            if event.get("score"):
                score = event["score"]["totalScore"]
                self.best = score if self.best is None else max(self.best, score)
                self.bar.set_postfix(best=f"{self.best:.1f}")
            self.bar.update(1)
        elif kind in ev.TERMINAL:
            self.bar.close()


def _run(args: argparse.Namespace) -> int:
    from .api import run
    from .params import validate
    from .providers import registry

    params = {f.name: getattr(args, f.name) for f in FIELDS[1:]}
    progress = None
    try:
        checked = validate({"prompt": args.prompt, **params})
        registry.get_factory(checked.providers)
        progress = _Progress(checked.N * checked.iterations, enabled=not args.quiet)
        result = run(args.prompt, output=args.output, on_event=progress, **params)
    except BeamkitError as exc:
        if progress is not None:
            progress.bar.close()
        print(f"beamkit: error: {exc.message} [{exc.code}]", file=sys.stderr)
        return 2 if exc.code == "INVALID_REQUEST" else 1
    except KeyboardInterrupt:
        print("beamkit: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    best = result.best
    assert best is not None
    print(f"best score   {best.total_score:.1f}  (alignment {best.alignment_score:.0f}/100, aesthetics {best.aesthetic_score:.1f}/10)")
    print(f"WHAT         {best.what_prompt}")
    print(f"HOW          {best.how_prompt}")
    print(f"prompt       {best.combined_prompt}")
    print(f"image        {best.image_path}")
    print("lineage      " + " -> ".join(f"iter{i}/cand{c}" for i, c in result.lineage()))
    print(f"session      {result.folder}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .server.standalone import serve

    return serve(
        host=args.host, port=args.port, output=args.output, providers=args.providers,
        max_jobs=args.max_jobs, token=args.token, max_connections=args.max_connections,
        allow_origins=tuple(args.allow_origin),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
