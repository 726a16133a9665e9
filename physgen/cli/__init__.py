"""The ``physgen`` command: one subcommand per module of this package.

Every module here whose name does not start with ``_`` is imported to build the parser and
must define ``register(subparsers)``. ``--help`` and argument errors answer in a fraction
of a second because building the parser imports nothing heavy: **a command module keeps its
top-level imports torch-free** (no torch, numpy, xarray, h5py, matplotlib, nor a physgen
module that imports them, such as ``physgen.data``, ``physgen.models`` or
``physgen.training``), and imports them inside the functions that run the command. Help
listings come from ``physgen.cli._catalog``, which reads no model code.
``tests/test_cli_help.py`` checks that ``import physgen.cli`` and building the parser load
no torch.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import pkgutil
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "describe_os_error", "main"]


# errno values that mean a write could not be completed (as opposed to a missing file).
_WRITE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EFBIG") if hasattr(errno, name)
)
_DEBUG_HELP = "show the full traceback of an error instead of one line"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; each module ``physgen.cli.<name>`` adds its subcommand.

    ``--debug`` is accepted before the command and right after its name.
    """
    parser = argparse.ArgumentParser(
        prog="physgen",
        description="Physics-informed deep generative modeling of scientific fields.",
    )
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").register(subparsers)
    for sub in subparsers.choices.values():
        # SUPPRESS: an absent flag leaves the top-level value in the namespace.
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP
        )
    return parser


def _one_line(text: object) -> str:
    """``text`` with its line breaks folded, so an error stays on one line."""
    return " ".join(str(text).split("\n")).strip()


def describe_os_error(err: OSError) -> str:
    """One line for an operating-system error: the path and the cause.

    An error raised by the system (it has ``strerror``) reads, e.g., ``cannot write
    /x/y.nc: No space left on device``; one raised by physgen with its own message is
    given as is.
    """
    if err.strerror is None:
        return str(err.args[0]) if len(err.args) == 1 else str(err)
    verb = "write" if err.errno in _WRITE_ERRNOS else "access"
    where = err.filename if err.filename is not None else "a file"
    if err.filename2 is not None:
        where = f"{where} -> {err.filename2}"
    return f"cannot {verb} {where}: {err.strerror}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``physgen`` console script; returns the exit status.

    Errors end with one line on stderr and exit status 1 (130 on Ctrl-C): user errors
    (bad paths, values, names) with their message, operating-system errors with the path and
    the cause, anything else with its type and a pointer to ``--debug``, which re-raises the
    error with its traceback instead.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    prefix = f"physgen {args.command}: error:"
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("physgen: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        if args.debug:
            raise
        print(f"{prefix} {_one_line(describe_os_error(err))}", file=sys.stderr)
        return 1
    except (ValueError, KeyError) as err:
        if args.debug:
            raise
        # User errors (bad files, bad names, bad values) end with one clear line.
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"{prefix} {_one_line(message)}", file=sys.stderr)
        return 1
    except Exception as err:  # the last resort: one line, not a traceback
        if args.debug:
            raise
        print(
            f"{prefix} {type(err).__name__}: {_one_line(err)} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
