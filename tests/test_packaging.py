"""Installed anywhere: shipped folders resolve without a checkout; entry points add problems."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import physgen.paths as paths
from physgen.paths import find_project_dir, read_toml
from physgen.problem import (
    UnregisteredProblemError,
    available_problems,
    load,
    load_registered,
)

ROOT = Path(__file__).resolve().parent.parent
KINDS = {"problems": "darcy.py", "datasets": "grf1d.toml", "studies": "quickstart/run.py"}

_EP_MODULE = """
from dataclasses import dataclass

import numpy as np

from physgen.grids import Grid
from physgen.problem import Field, Problem


@dataclass(frozen=True)
class Params:
    n: int = 8


class Plugged(Problem):
    name = {name!r}
    Params = Params
    fields = (Field("a", "a field"),)

    @property
    def grid(self) -> Grid:
        return Grid((self.params.n,), bc="periodic")

    def _generate(self, rngs):
        return {{"a": np.stack([r.standard_normal(self.params.n) for r in rngs])}}
"""


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``PHYSGEN_<KIND>_DIR`` override is set."""
    for kind in KINDS:
        monkeypatch.delenv(f"PHYSGEN_{kind.upper()}_DIR", raising=False)


def _installed_tree(root: Path) -> Path:
    """A copy of the package laid out as a wheel installs it: ``site/physgen/<kind>``."""
    package = root / "site" / "physgen"
    for kind in KINDS:
        shutil.copytree(ROOT / kind, package / kind)
    return package


@pytest.mark.usefixtures("no_env")
def test_an_installed_package_finds_its_shipped_folders_from_an_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _installed_tree(tmp_path)
    # Installed: the package lives in site-packages, with no checkout beside it.
    monkeypatch.setattr(paths, "_PACKAGE_DIR", package)
    monkeypatch.setattr(paths, "_PACKAGE_PARENT", package.parent)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    for kind, member in KINDS.items():
        assert find_project_dir(kind) == package / kind
        assert (find_project_dir(kind) / member).is_file()
    assert "darcy" in available_problems()
    assert load("grf", n=8).params.n == 8


@pytest.mark.usefixtures("no_env")
def test_a_checkout_finds_its_folders_from_an_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for kind, member in KINDS.items():
        assert (find_project_dir(kind) / member).is_file()


@pytest.mark.usefixtures("no_env")
def test_the_environment_then_the_current_folder_take_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "problems").mkdir()
    monkeypatch.chdir(tmp_path)
    assert find_project_dir("problems") == tmp_path / "problems"
    (tmp_path / "mine").mkdir()
    monkeypatch.setenv("PHYSGEN_PROBLEMS_DIR", str(tmp_path / "mine"))
    assert find_project_dir("problems") == tmp_path / "mine"


@pytest.mark.usefixtures("no_env")
def test_a_missing_folder_names_every_place_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "_PACKAGE_DIR", tmp_path / "site" / "physgen")
    monkeypatch.setattr(paths, "_PACKAGE_PARENT", tmp_path / "site")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        find_project_dir("datasets")
    for where in (tmp_path / "datasets", tmp_path / "site" / "physgen" / "datasets"):
        assert str(where) in str(info.value)


def test_pyproject_ships_every_package_and_the_top_level_folders() -> None:
    config = read_toml(ROOT / "pyproject.toml")["tool"]["setuptools"]
    subpackages = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "physgen").rglob("__init__.py")
    }
    shipped = {f"physgen.{kind}" for kind in KINDS}
    # Each study folder holds Python files, so Python can import it: setuptools wants it listed
    # as a package (else it warns that the folder "would be ignored").
    study_folders = {f"physgen.studies.{p.parent.name}" for p in (ROOT / "studies").glob("*/*.py")}
    assert set(config["packages"]) == subpackages | shipped | study_folders
    assert config["package-dir"] == {f"physgen.{kind}": kind for kind in KINDS}
    assert "*.toml" in config["package-data"]["physgen.datasets"]


def test_the_typing_marker_and_the_license_ship() -> None:
    assert (ROOT / "physgen" / "py.typed").is_file()
    package_data = read_toml(ROOT / "pyproject.toml")["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["physgen"]
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()


def _plugin(root: Path, module: str, name: str, ep_name: str | None = None) -> Path:
    """An installed distribution (a dist-info folder) declaring one ``physgen.problems`` entry."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(_EP_MODULE.format(name=name))
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[physgen.problems]\n{ep_name or name} = {module}:Plugged\n"
    )
    return root


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An installed plugin package whose entry point ``plugged_ep`` names a problem."""
    module = "physgen_test_plugin"
    monkeypatch.syspath_prepend(str(_plugin(tmp_path / "site", module, "plugged_ep")))
    yield "plugged_ep"
    sys.modules.pop(module, None)


def test_an_entry_point_problem_resolves_by_name(plugin: str) -> None:
    assert plugin in available_problems()
    assert {"darcy", "grf"} <= set(available_problems())
    problem = load(plugin, n=6)
    assert type(problem).__name__ == "Plugged" and problem.params.n == 6
    assert load(plugin).generate(2, seed=0)["a"].shape == (2, 8)
    # A name read from data (a file attribute, a checkpoint) may name it too: it is registered.
    assert load_registered(plugin, n=4).params.n == 4


def test_a_path_is_never_an_entry_point(plugin: str, tmp_path: Path) -> None:
    module = tmp_path / "site" / "physgen_test_plugin.py"
    with pytest.raises(UnregisteredProblemError, match="is a path"):
        load_registered(str(module))


def test_a_folder_problem_comes_before_an_entry_point_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "physgen_test_plugin_grf"
    monkeypatch.syspath_prepend(str(_plugin(tmp_path / "site", module, "grf")))
    try:
        assert type(load("grf", n=8)).__name__ != "Plugged"
        assert available_problems().count("grf") == 1
    finally:
        sys.modules.pop(module, None)


def test_an_entry_point_whose_class_has_another_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "physgen_test_plugin_misnamed"
    monkeypatch.syspath_prepend(str(_plugin(tmp_path / "site", module, "other", "misnamed")))
    try:
        with pytest.raises(ValueError, match="must equal the entry point's name"):
            load("misnamed")
    finally:
        sys.modules.pop(module, None)


def test_an_unknown_name_says_where_it_was_looked_for(plugin: str) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_registered("no_such_problem")
    message = str(info.value)
    assert "no problem 'no_such_problem'" in message
    assert "'physgen.problems' entry point" in message and plugin in message
