"""Docstrings hold no control characters: a backslash escape such as ``\\v`` or ``\\a`` in a
non-raw docstring (LaTeX's ``\\varepsilon``, ``\\alpha``) would render as one."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from types import ModuleType

import physgen

# Every control character except newline and tab.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _modules() -> Iterator[ModuleType]:
    yield physgen
    for info in pkgutil.walk_packages(physgen.__path__, "physgen."):
        if info.name.rsplit(".", 1)[-1] != "__main__":  # importing it runs the CLI
            yield importlib.import_module(info.name)


def _docstrings(module: ModuleType) -> Iterator[tuple[str, str | None]]:
    yield module.__name__, module.__doc__
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", None) != module.__name__:
            continue  # imported from elsewhere; checked in its own module
        if inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj.__doc__
        elif inspect.isclass(obj):
            yield f"{module.__name__}.{name}", obj.__doc__
            for attr, member in vars(obj).items():
                func = member.__func__ if isinstance(member, classmethod | staticmethod) else member
                if isinstance(func, property):
                    func = func.fget
                if inspect.isfunction(func):
                    yield f"{module.__name__}.{name}.{attr}", func.__doc__


def test_docstrings_have_no_control_characters() -> None:
    bad = [
        f"{where}: {sorted(set(_CONTROL.findall(doc)))!r}"
        for module in _modules()
        for where, doc in _docstrings(module)
        if doc and _CONTROL.search(doc)
    ]
    message = "docstrings with control characters (make them raw strings):\n"
    assert not bad, message + "\n".join(bad)


def test_the_check_sees_a_slip() -> None:
    def slipped() -> None:
        # A deliberate slip: in a non-raw string, \a is the bell character.
        """:math:`\alpha`"""

    assert _CONTROL.search(slipped.__doc__ or "")


# Documents outside the repository that a docstring must not cite (the project's docs and its
# cited papers are the references).
_OUTSIDE = re.compile(r"reference note|DESIGN\.md|DESIGN §|shared/reference")


def test_docstrings_cite_no_document_outside_the_repository() -> None:
    bad = [
        where
        for module in _modules()
        for where, doc in _docstrings(module)
        if doc and _OUTSIDE.search(doc)
    ]
    assert not bad, f"docstrings citing documents outside the repository: {bad}"
    assert _OUTSIDE.search("as in the reference note §4.2")  # the check sees a slip
