"""Installed anywhere: the shipped problems, datasets and studies resolve without a checkout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import physgen.paths as paths
from physgen.paths import find_project_dir, read_toml
from physgen.problem import available_problems, load

ROOT = Path(__file__).resolve().parent.parent
KINDS = {"problems": "darcy.py", "datasets": "grf1d.toml", "studies": "quickstart/run.py"}


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
    assert set(config["packages"]) == subpackages | shipped
    assert config["package-dir"] == {f"physgen.{kind}": kind for kind in KINDS}
    assert "*.toml" in config["package-data"]["physgen.datasets"]
