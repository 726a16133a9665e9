"""A ``physgen-help`` directive: the ``--help`` text of a ``physgen`` command, as a literal block.

The command-line reference is generated from the argument parsers themselves, so it shows the
options and help texts of the code being documented.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from sphinx.application import Sphinx

__all__ = ["PhysgenHelp", "all_commands", "command_help", "setup"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers of ``parser`` by name (empty if it has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def all_commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Every command path under ``parser``, depth first: ``()``, ``("data",)``, ...."""
    paths = [prefix]
    for name, sub in _subparsers(parser).items():
        paths += all_commands(sub, (*prefix, name))
    return paths


def command_help(words: list[str] | tuple[str, ...]) -> str:
    """The help text of ``physgen WORDS...``, formatted for an 88-column terminal."""
    from physgen.cli import build_parser

    os.environ["COLUMNS"] = "88"  # argparse wraps to $COLUMNS
    parser = build_parser()
    for word in words:
        commands = _subparsers(parser)
        if word not in commands:
            raise ValueError(f"physgen-help: 'physgen {' '.join(words)}': no command {word!r}")
        parser = commands[word]
    return parser.format_help()


class PhysgenHelp(Directive):
    """``.. physgen-help:: data make`` renders ``physgen data make --help``.

    With the ``:all:`` flag and no argument it renders every command, each under a rubric,
    so a new subcommand appears without editing the page.
    """

    optional_arguments = 1
    final_argument_whitespace = True
    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {"all": directives.flag}

    def run(self) -> list[nodes.Node]:
        from physgen.cli import build_parser

        if "all" in self.options:
            paths = all_commands(build_parser())
        else:
            paths = [tuple(self.arguments[0].split() if self.arguments else ())]
        out: list[nodes.Node] = []
        for words in paths:
            try:
                text = command_help(words)
            except ValueError as err:
                raise self.error(str(err)) from err
            if "all" in self.options:
                title = " ".join(("physgen", *words))
                out.append(nodes.rubric(title, title))
            block = nodes.literal_block(text, text)
            block["language"] = "text"
            out.append(block)
        return out


def setup(app: Sphinx) -> dict[str, object]:
    """Register the directive."""
    app.add_directive("physgen-help", PhysgenHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
