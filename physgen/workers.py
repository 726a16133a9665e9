"""Worker processes that die with their parent, and a parent that ends them when it stops.

A :class:`~concurrent.futures.ProcessPoolExecutor` leaves its workers running when the parent
is killed (they are re-parented to init and wait forever). :func:`worker_pool` gives each
worker a parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux; elsewhere a
thread that polls the parent's pid) and, when the body of the ``with`` block raises (Ctrl-C,
:func:`sigterm_exits`, an error), kills the workers at once instead of waiting for the queued
work. Workers ignore SIGINT: the parent alone handles Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from types import FrameType

__all__ = ["sigterm_exits", "worker_pool"]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_POLL_SECONDS = 0.5


def _set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies; False if unable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    """Exit this process as soon as its parent is no longer ``parent`` (it died)."""
    while os.getppid() == parent:
        time.sleep(_POLL_SECONDS)
    os._exit(1)


def _die_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the process ``parent`` dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker inherits the parent's
    watched = _set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)
    if not watched:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers die with this process and end with the ``with`` block.

    On normal exit the pool is shut down as usual (waiting for the submitted work). If the
    body raises, queued work is cancelled and the workers are killed before the exception
    goes on, so an interrupted run stops at once and leaves no process behind.
    """
    before = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(
        max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),)
    )
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for child in set(multiprocessing.active_children()) - before:
            child.kill()
            child.join()
        raise
    pool.shutdown(wait=True)


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM into :class:`SystemExit`, so ``finally`` blocks and cleanups run."""
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def sigterm_exits() -> Iterator[None]:
    """Within the block, SIGTERM raises ``SystemExit(143)`` in the main thread.

    Cleanups then run as on Ctrl-C (workers killed, locks released, temporary files
    removed) instead of the process vanishing. Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
