"""Where physgen finds problems, dataset recipes and studies, and where it writes data and runs."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser as a package
    import tomli as tomllib

__all__ = [
    "data_root",
    "find_project_dir",
    "load_module_from_path",
    "project_dir_candidates",
    "read_toml",
    "runs_root",
]

_PACKAGE_DIR = Path(__file__).resolve().parent
_PACKAGE_PARENT = _PACKAGE_DIR.parent


def project_dir_candidates(kind: str) -> list[Path]:
    """Where ``find_project_dir(kind)`` looks, in order of precedence.

    1. ``$PHYSGEN_<KIND>_DIR``, when set: an explicit override;
    2. ``./<kind>`` in the current directory: a user's own folder (kept for backwards
       compatibility; it hides the shipped one entirely, so name lookups search it alone);
    3. ``<kind>`` inside the installed package (``physgen/problems``, ...): the folders a wheel
       or ``pip install .`` ships;
    4. ``<kind>`` beside the package: a source checkout or an editable install.
    """
    env = os.environ.get(f"PHYSGEN_{kind.upper()}_DIR")
    candidates = [Path(env)] if env else []
    return [*candidates, Path.cwd() / kind, _PACKAGE_DIR / kind, _PACKAGE_PARENT / kind]


def find_project_dir(kind: str) -> Path:
    """Locate the folder ``kind`` (``problems``, ``datasets`` or ``studies``).

    The first existing folder of :func:`project_dir_candidates` wins, so an installed physgen
    finds its shipped folders from any directory that has no folder of that name.

    Raises:
        FileNotFoundError: none of the candidates exists; the message lists them all.
    """
    candidates = project_dir_candidates(kind)
    for path in candidates:
        if path.is_dir():
            return path
    searched = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(
        f"cannot find the {kind!r} folder (searched: {searched}); "
        f"set PHYSGEN_{kind.upper()}_DIR or reinstall physgen"
    )


def data_root() -> Path:
    """Root for generated datasets: ``$PHYSGEN_DATA_DIR`` or ``~/.cache/physgen/data``.

    Generated data never lives in the source tree; recipes regenerate it deterministically.
    """
    env = os.environ.get("PHYSGEN_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "physgen" / "data"


def runs_root() -> Path:
    """Root for run outputs (reports, checkpoints): ``$PHYSGEN_RUNS_DIR`` or ``./runs``."""
    env = os.environ.get("PHYSGEN_RUNS_DIR")
    return Path(env) if env else Path.cwd() / "runs"


def load_module_from_path(path: Path, name: str) -> ModuleType:
    """Import a Python file as a module called ``name`` (a user's problem or a study)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such Python file: {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error becomes a ``ValueError`` naming the file."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a TOML text file (it holds binary data)") from None
