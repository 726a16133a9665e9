"""The documentation's own machinery: the command-line reference and the gallery's layout."""

from __future__ import annotations

import ast
import importlib
import re
import runpy
import sys
from pathlib import Path
from types import ModuleType

import pytest

from physgen.cli import build_parser

ROOT = Path(__file__).parents[1]
GALLERY = ROOT / "examples" / "gallery"


@pytest.fixture(scope="module")
def cli_help() -> ModuleType:
    """The docs' ``physgen-help`` extension (needs the ``docs`` extra: docutils, Sphinx)."""
    pytest.importorskip("sphinx")
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        return importlib.import_module("cli_help")
    finally:
        sys.path.remove(str(ROOT / "docs" / "_ext"))


def test_the_cli_reference_lists_every_command(cli_help: ModuleType) -> None:
    command_help = cli_help.command_help
    paths = cli_help.all_commands(build_parser())
    for path in [(), ("data", "make"), ("data", "import", "fno"), ("train",), ("evaluate",)]:
        assert path in paths
    assert len(paths) == len(set(paths))
    assert "--ref" in command_help(("evaluate",))  # the subcommand's own help, not the top's


def test_the_cli_reference_refuses_an_unknown_command(cli_help: ModuleType) -> None:
    with pytest.raises(ValueError, match="no command 'nosuch'"):
        cli_help.command_help(("data", "nosuch"))


def _scripts() -> list[Path]:
    return sorted(GALLERY.glob("*.py"))


def test_some_but_not_all_gallery_scripts_run_in_the_build() -> None:
    conf = runpy.run_path(str(ROOT / "docs" / "conf.py"))
    pattern = re.compile(conf["sphinx_gallery_conf"]["filename_pattern"])
    executed = [p for p in _scripts() if pattern.search(p.as_posix())]
    assert executed, "no gallery script runs in the documentation build"
    assert len(executed) < len(_scripts())  # the long ones are rendered with their code only
    assert all(p.name.startswith("plot_") for p in executed)


@pytest.mark.parametrize("script", _scripts(), ids=lambda p: p.name)
def test_gallery_script_opens_with_a_titled_docstring(script: Path) -> None:
    # sphinx-gallery takes the page title from the docstring's first underlined line.
    doc = ast.get_docstring(ast.parse(script.read_text()), clean=True)
    assert doc is not None, f"{script.name}: no module docstring"
    title, underline = doc.splitlines()[:2]
    assert title and set(underline) == {"="} and len(underline) >= len(title), script.name
