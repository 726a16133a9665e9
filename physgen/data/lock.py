"""Advisory locks on output folders: one writer per lock file, the holder's pid inside.

A run takes the lock with :func:`folder_lock` before it writes anything; a second run that
asks for the same lock fails at once with :class:`FolderBusyError` ("DIR is being written by
process PID") instead of racing the first one. The lock is an ``fcntl.flock`` on a file in
the folder, so the operating system releases it when the holder dies, however it dies; the
file is removed when the lock is released normally. Where ``fcntl`` is missing (Windows) no
lock is taken.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderBusyError", "folder_lock", "is_locked"]


class FolderBusyError(OSError):
    """Another process holds the lock of the folder."""


def _holder(path: Path) -> str:
    """The pid recorded in the lock file ``path``, or ``"?"`` if it cannot be read."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return "?"
    return text if text.isdigit() else "?"


def _try_lock(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` without waiting; False if another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _acquire(path: Path, folder: Path) -> int:
    """Open ``path``, lock it and write this pid into it; returns the descriptor.

    The lock is taken on the file the name points at now: a file unlinked by a holder that
    was releasing it while this process opened it is dropped and the name tried again.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise FolderBusyError(f"{folder} is being written by process {_holder(path)}")
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            return fd
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], name: str = ".lock") -> Iterator[Path]:
    """Hold the advisory lock ``folder/name`` for the body; yields the lock file's path.

    The folder is created if missing. The lock is released, and its file removed, when the
    body ends, also by an exception.

    Raises:
        FolderBusyError: another process holds the lock (the message names the folder and the
            pid recorded in the lock file).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if fcntl is None:  # pragma: no cover - Windows
        yield path
        return
    fd = _acquire(path, folder)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a waiting opener then retries a fresh file
        os.close(fd)


def is_locked(path: str | os.PathLike[str]) -> bool:
    """Whether another process holds the lock file ``path`` now (False if it is missing)."""
    if fcntl is None:  # pragma: no cover - Windows
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        free = _try_lock(fd)
    finally:
        os.close(fd)  # closing the descriptor drops a lock taken just now
    return not free
