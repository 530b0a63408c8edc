"""Command line: ``python -m repro list`` and ``python -m repro figures [...]``."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence

from repro.config import PROFILES
from repro.registry import FIGURES, Figure

# as repro.runner.DEVICE_PATTERN (not imported: the runner pulls in papermill)
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def device_name(value: str) -> str:
    """Argparse type of ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:<index>``.

    Args:
        value: the command-line value.

    Returns:
        The value, unchanged.

    Raises:
        argparse.ArgumentTypeError: for anything else (argparse exits with status 2).
    """
    if not _DEVICE.match(value):
        raise argparse.ArgumentTypeError(
            f"invalid device {value!r}: use auto, cpu, cuda or cuda:<index> (e.g. cuda:0)"
        )
    return value


def _message(exc: BaseException) -> str:
    """The error's text, without the ``[Errno N]`` prefix of our own worded OSErrors."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is None:
        return exc.strerror
    return str(exc)


def _parser(figures: Mapping[str, Figure]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m repro", description="Regenerate the figures of the reproduced papers."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="list the figures, their papers and notebooks")
    run = sub.add_parser(
        "figures",
        help="execute figure notebooks through papermill",
        description="Execute figure notebooks through papermill; executed copies go to "
        "runs/<profile>/, figures to figures/<profile>/.",
    )
    run.add_argument(
        "--profile", choices=PROFILES, default="quick",
        help="quick (the notebooks' saved parameters, 2 CPU cores, embedded data), "
        "intermediate (the largest settings that train in about 2.5 h on 2 CPU cores, for "
        "figures whose full profile needs a GPU; the others are skipped) or full (the papers' "
        "settings, meant for a GPU); default: quick",
    )  # fmt: skip
    run.add_argument(
        "--only", nargs="+", metavar="NAME", choices=sorted(figures),
        help="figures to run (default: all); see `python -m repro list`",
    )  # fmt: skip
    run.add_argument(
        "--device", type=device_name, default="auto", metavar="DEVICE",
        help="auto (CUDA when available, else CPU), cpu, cuda or cuda:<index> such as cuda:1; "
        "injected into every notebook as DEVICE (default: auto)",
    )  # fmt: skip
    run.add_argument(
        "--smoke", action="store_true",
        help="a couple of batches of every stage at the profile's architecture (CI checks "
        "that the full path runs); output goes to runs/<profile>-smoke/",
    )  # fmt: skip
    refresh = sub.add_parser(
        "notebooks",
        help="re-execute the committed notebooks in place (quick profile) and clean them",
    )
    refresh.add_argument(
        "--only", nargs="+", metavar="NAME", choices=sorted(figures),
        help="notebooks of these figures only (default: all); see `python -m repro list`",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None, figures: Mapping[str, Figure] = FIGURES) -> int:
    """Run the command line.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).
        figures: the figure registry (tests pass their own).

    Returns:
        The exit code: 0 on success, 1 when a notebook fails or is missing or an output
        folder cannot be written, 2 for bad arguments, 128 + the signal number when
        interrupted by SIGINT or SIGTERM.
    """
    args = _parser(figures).parse_args(argv)
    if args.command == "list":
        for f in figures.values():
            print(f"{f.name:28s} {f.paper:6s} notebooks/{f.notebook}\n{'':36s}{f.reproduces}")
        return 0
    from repro.runner import Interrupted, NotebookFailed, refresh_notebooks, run_figures

    try:
        if args.command == "notebooks":
            seconds = refresh_notebooks(args.only, figures)
            print(f"{len(seconds)} notebook(s) refreshed; review with `git diff notebooks/`")
            return 0
        seconds = run_figures(args.only, args.profile, args.device, figures, smoke=args.smoke)
    except ValueError as exc:  # bad arguments that argparse could not see
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (NotebookFailed, OSError) as exc:  # OSError: missing notebook, unwritable output
        print(f"error: {_message(exc)}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"error: interrupted by {exc.args[0]}; temporary files removed", file=sys.stderr)
        return 128 + exc.signum
    total = sum(seconds.values())
    where = f"runs/{args.profile}-smoke" if args.smoke else f"figures/{args.profile}"
    print(f"{len(seconds)} figure(s) written to {where}/ in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
