"""The ``physgen`` command: one subcommand per module of this package."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; each module ``physgen.cli.<name>`` adds its subcommand."""
    parser = argparse.ArgumentParser(
        prog="physgen",
        description="Physics-informed deep generative modeling of scientific fields.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``physgen`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("physgen: interrupted", file=sys.stderr)
        return 130
    except (
        FileNotFoundError,
        NotADirectoryError,
        IsADirectoryError,
        FileExistsError,
        PermissionError,
        ValueError,
        KeyError,
    ) as err:
        # User errors (bad paths, bad files, bad names) end with one clear line, no traceback.
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"physgen {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
