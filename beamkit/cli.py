"""The command line: ``beamkit run PROMPT`` and ``beamkit serve``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import events as ev
from .candidate import EXPAND
from .errors import BeamkitError, InvalidRequest
from .params import FIELDS
from .settings import DEFAULT_OUTPUT


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line naming the problem; the usage is one `--help` away.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind: type, name: str):
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} takes {'an integer' if kind is int else 'a number'}, not {text!r}") from None
    return parse


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run one beam search and print the best prompt")
    p.add_argument("prompt", help="what you want to see, e.g. 'a forest at dawn'")
    for f in FIELDS[1:]:
        if f.name == "providers":
            p.add_argument("--providers", type=_providers_arg, default=f.default, metavar="NAME|ROLE=NAME,...",
                           help="a provider for every role, or one per role: llm=openai,image=offline,vision=openai "
                                "(`beamkit providers` lists them)")
        elif f.name == "stop_when":
            p.add_argument("--stop-when", dest="stop_when", type=_stop_when_arg, default=None,
                           metavar="RULE=VALUE,...", help="end early: plateau=K,score=X,images=N,usd=D (any subset)")
        elif f.kind is bool:
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, action="store_true", help=f.help)
        elif f.kind is str:
            p.add_argument(f"--{f.name}", default=f.default, help=f.help)
        else:
            # --seeds-per-prompt: a multi-word name reads with hyphens, as --stop-when does
            flags = [f"--{f.name}"] if "_" not in f.name else [f"--{f.name.replace('_', '-')}"]
            p.add_argument(*flags, dest=f.name, type=_number(f.kind, f.name), default=f.default,
                           help=f"{f.help} (default {f.default})")
    p.add_argument("--set", action="append", default=[], metavar="[ROLE.]NAME=VALUE", dest="settings",
                   help="a provider setting: image.model=NAME for one role, model=NAME for every role that has it; "
                        "repeatable")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help=f"folder for sessions (default ./{DEFAULT_OUTPUT})")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _stop_when_arg(text: str) -> dict[str, float]:
    """``plateau=2,score=95`` -> ``{"plateau": 2, "score": 95.0}``; the ranges are checked by ``validate``."""
    rules: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        rule, eq, value = part.partition("=")
        try:
            if not eq:
                raise ValueError
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--stop-when takes RULE=NUMBER,... (plateau, score, images, usd), not {part!r}") from None
        rules[rule.strip()] = int(number) if number.is_integer() else number
    return rules


def _providers_arg(text: str) -> Any:
    from .providers.cli import parse_providers

    return parse_providers(text)


def _add_providers(sub: Any) -> None:
    p = sub.add_parser("providers", help="list the providers, their roles and settings, and whether each can run here")
    p.add_argument("--json", action="store_true", help="print the listing as JSON (as GET /api/providers gives it)")
    p.set_defaults(func=_providers)


def _providers(args: argparse.Namespace) -> int:
    from .providers import describe
    from .providers.cli import table

    rows = describe()
    print(json.dumps({"providers": rows}, indent=2) if args.json else table(rows), end="\n" if args.json else "")
    return 0


def _add_serve(sub: Any) -> None:
    # Listed for `beamkit --help` only: main() hands `beamkit serve ...` to the settings' own parser.
    sub.add_parser("serve", add_help=False,
                   help="serve the REST and WebSocket API (beamkit serve --help-all lists every setting)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="beamkit", description="Beam search for better text-to-image prompts.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub)
    _add_serve(sub)
    _add_providers(sub)
    _add_sweep(sub)
    return parser


def _add_sweep(sub: Any) -> None:
    from .sweeps.cli import add_parser  # light: Dask and pandas are imported when a sweep runs

    add_parser(sub)


class _Progress:
    """A tqdm bar on stderr, drawn from the job's state as its events come."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        from .state import SessionState

        self.bar = tqdm(total=total, unit="cand", file=sys.stderr, disable=not enabled, dynamic_ncols=True)
        self.state = SessionState()
        self._described = ""

    def __call__(self, event: ev.Event) -> None:
        st = self.state
        st.apply(event)
        row = st.rows.get(st.current_iteration) if st.current_iteration is not None else None
        if row is not None:
            step = row.operation if row.operation == EXPAND else f"{row.operation} {row.dimension.upper()}"
            text = f"iter {row.iteration}/{(st.total_iterations or 1) - 1} {step}"
            if text != self._described:
                self._described = text
                self.bar.set_description(text, refresh=False)
        best = st.best
        if best is not None and best.total_score is not None:
            self.bar.set_postfix(best=f"{best.total_score:.1f}", refresh=False)
        self.bar.update(len(st.candidates) - self.bar.n)
        if st.done:
            self.bar.close()


def _run(args: argparse.Namespace) -> int:
    from .api import run
    from .params import validate
    from .providers.cli import parse_set
    from .providers.roles import plan
    from .storage import output_problem

    params = {f.name: getattr(args, f.name) for f in FIELDS[1:]}
    progress = None
    try:
        settings = parse_set(args.settings)
    except argparse.ArgumentTypeError as exc:
        print(f"beamkit: error: {exc}", file=sys.stderr)
        return 2
    try:
        checked = validate({"prompt": args.prompt, **params})
        plan(checked.providers, settings)  # every name and setting checked before the progress bar shows
        problem = output_problem(args.output)
        if problem:
            print(f"beamkit: error: {problem}", file=sys.stderr)
            return 1
        progress = _Progress(checked.N * checked.iterations, enabled=not args.quiet)
        if checked.steer:  # each review is answered on stdin (docs/human-in-the-loop.md)
            from .steering_cli import run_steered

            params.pop("steer")
            result = run_steered(args.prompt, progress, output=args.output, provider_settings=settings or None, **params)
        else:
            result = run(args.prompt, output=args.output, on_event=progress, provider_settings=settings or None, **params)
    except BeamkitError as exc:
        if progress is not None:
            progress.bar.close()
        print(f"beamkit: error: {exc.message} [{exc.code}]", file=sys.stderr)
        return 2 if isinstance(exc, InvalidRequest) else 1
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # its options are the server's settings (beamkit.settings), parsed by traitlets
        from .server import standalone

        return standalone.main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
