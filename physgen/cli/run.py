"""``physgen run [STUDY]``: run a study from ``studies/`` (default: ``quickstart``)."""

from __future__ import annotations

import argparse

from physgen.cli._catalog import ListingFormatter, study_listing
from physgen.paths import find_project_dir, load_module_from_path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a study (default: quickstart)",
        formatter_class=ListingFormatter,
        epilog=study_listing() + "\n\n'physgen run STUDY --help' shows a study's own options.",
        description=(
            "Run a study from the studies/ folder. With no argument, runs 'quickstart': a small "
            "end-to-end job that finishes in minutes on CPU and writes a report under runs/."
        ),
    )
    parser.add_argument(
        "study", nargs="?", default="quickstart", help="study folder name (listed below)"
    )
    parser.add_argument(
        "study_args", nargs=argparse.REMAINDER, help="arguments passed on to the study's run.py"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    studies = find_project_dir("studies")
    script = studies / args.study / "run.py"
    if not script.is_file():
        known = sorted(p.name for p in studies.iterdir() if (p / "run.py").is_file())
        raise FileNotFoundError(
            f"no study {args.study!r} in {studies} (known studies: {', '.join(known)})"
        )
    module = load_module_from_path(script, f"physgen_study_{args.study}")
    return int(module.main(args.study_args) or 0)
