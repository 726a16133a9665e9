"""Atomic file output: a temporary file in the target folder, renamed over the target."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "atomic_output",
    "nonfinite_to_none",
    "sweep_temporaries",
    "temporary_target",
    "write_json_atomic",
]

# The name of a temporary file of atomic_output: ".<target name>.<8 random characters>.tmp".
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    The temporary file lives in the same folder, so ``os.replace`` is an atomic rename on the
    same file system: readers see either the old file or the complete new one, never a half
    file. If the body raises, the temporary file is removed and ``path`` is left untouched.
    Missing parent folders are created; a ``path`` that is a folder is refused at once.

    Example:
        >>> with atomic_output("out.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(
            f"cannot write {target}: it is a folder; give a file name (e.g. {target / 'NAME'})"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:  # a file stands where a folder must
        blocker = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
        raise NotADirectoryError(
            f"cannot write {target}: {blocker or err.filename} is a file, not a folder"
        ) from err
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        _raise_naming(err, target)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp creates the file 0600; give the result the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        _raise_naming(err, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _raise_naming(err: OSError, target: Path) -> NoReturn:
    """Raise ``err`` naming ``target`` where it names no file or only the temporary one.

    A full disk or a read-only folder then reads ``cannot write <target>: <cause>``, not a
    bare ``[Errno 28]`` or a hidden temporary name. Errors with a message of their own (no
    errno) or naming another file are raised unchanged.
    """
    if err.errno is None or err.strerror is None:
        raise err
    if err.filename is not None:
        named = Path(err.filename)
        same_folder = named.parent.resolve() == target.parent.resolve()
        if not same_folder or not named.name.startswith(f".{target.name}."):
            raise err
    raise OSError(err.errno, err.strerror, str(target)) from err  # the errno's own subclass


def temporary_target(name: str) -> str | None:
    """The target's name if ``name`` is a temporary file of :func:`atomic_output`, else None.

    Example:
        >>> temporary_target(".train.nc.k2j_9x0a.tmp")
        'train.nc'
    """
    found = _TEMPORARY.fullmatch(name)
    return None if found is None else found.group("target")


def sweep_temporaries(folder: str | os.PathLike[str], owns: Callable[[str], bool]) -> list[Path]:
    """Remove the temporary files of :func:`atomic_output` in ``folder`` whose target ``owns``.

    A process killed while writing leaves its temporary file behind (nothing else can remove
    it); the next run that writes the same targets calls this first. ``owns`` receives the
    target's file name; only plain files named like a temporary file are considered, and
    sub-folders are not searched. Returns the removed paths.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        target = temporary_target(entry.name)
        if target is not None and owns(target) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def nonfinite_to_none(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None``, recursively through dicts
    and lists, so strict JSON (``allow_nan=False``) can hold a result with failed entries."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: nonfinite_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nonfinite_to_none(v) for v in obj]
    return obj


def write_json_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically; returns the path."""
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
