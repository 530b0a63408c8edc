"""Command line: ``python -m repro list`` and ``python -m repro figures [...]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

from repro.config import PROFILES
from repro.registry import FIGURES, Figure


def _parser(figures: Mapping[str, Figure]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m repro", description="Regenerate the figures of the reproduced papers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the figures")
    run = sub.add_parser("figures", help="execute figure notebooks through papermill")
    run.add_argument(
        "--profile", choices=PROFILES, default="quick", help="quick (CPU) or full (GPU)"
    )
    run.add_argument(
        "--only", nargs="+", metavar="NAME", choices=sorted(figures),
        help="figures to run (default: all); see `python -m repro list`",
    )  # fmt: skip
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument(
        "--smoke", action="store_true",
        help="a couple of batches of every stage at the profile's architecture (CI checks "
        "that the full path runs); output goes to runs/<profile>-smoke/",
    )  # fmt: skip
    refresh = sub.add_parser(
        "notebooks",
        help="re-execute the committed notebooks in place (quick profile) and clean them",
    )
    refresh.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(figures))
    return parser


def main(argv: Sequence[str] | None = None, figures: Mapping[str, Figure] = FIGURES) -> int:
    """Run the command line.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).
        figures: the figure registry (tests pass their own).

    Returns:
        The exit code: 0 on success, 1 when a notebook fails or is missing, 2 for bad
        arguments.
    """
    args = _parser(figures).parse_args(argv)
    if args.command == "list":
        for f in figures.values():
            print(f"{f.name:28s} {f.paper:6s} notebooks/{f.notebook}\n{'':36s}{f.reproduces}")
        return 0
    from repro.runner import NotebookFailed, refresh_notebooks, run_figures

    try:
        if args.command == "notebooks":
            seconds = refresh_notebooks(args.only, figures)
            print(f"{len(seconds)} notebook(s) refreshed; review with `git diff notebooks/`")
            return 0
        seconds = run_figures(args.only, args.profile, args.device, figures, smoke=args.smoke)
    except (NotebookFailed, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = sum(seconds.values())
    where = f"runs/{args.profile}-smoke" if args.smoke else f"figures/{args.profile}"
    print(f"{len(seconds)} figure(s) written to {where}/ in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
