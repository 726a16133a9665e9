"""Every error of a ``physgen`` command ends with one line (the path and the cause for OSError)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from test_metrics_evaluate_cli import grf_dataset, write

from physgen.cli import describe_os_error, main
from physgen.data import atomic


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A small file of samples and a reference file."""
    gen = write(grf_dataset(8, seed=1, size=8), tmp_path / "gen.nc")
    return gen, write(grf_dataset(16, seed=0, size=8), tmp_path / "ref.nc")


def _evaluate(pair: tuple[Path, Path], out: Path, *extra: str) -> int:
    argv = ["evaluate", str(pair[0]), "--ref", str(pair[1]), "--out", str(out), "--no-figures"]
    return main([*argv, "--permutations", "0", "--splits", "1", "--quiet", *extra])


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_full_disk_names_the_file_and_the_cause(
    pair: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    assert _evaluate(pair, out) == 0  # control: the same command succeeds on a sound disk
    capsys.readouterr()

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    assert _evaluate(pair, out) == 1
    err = _one_line(capsys)
    expected = f"physgen evaluate: error: cannot write {out / 'metrics.json'}: "
    assert err.startswith(expected + os.strerror(errno.ENOSPC)), err
    assert not list(out.glob(".*.tmp"))  # the temporary file is gone


def test_read_only_output_folder_is_one_line(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o555)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("permission bits do not bind this user (root)")
        assert _evaluate(pair, out) == 1
        err = _one_line(capsys)
        assert f"{out / 'metrics.json'}: {os.strerror(errno.EACCES)}" in err
        assert ".tmp" not in err  # the target is named, not the hidden temporary file
    finally:
        out.chmod(0o755)


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from physgen.cli import evaluate

    def broken(args: object) -> int:
        raise TypeError("unsupported format string passed to NoneType.__format__")

    monkeypatch.setattr(evaluate, "_run", broken)
    argv = ["evaluate", str(tmp_path / "a.nc"), "--ref", str(tmp_path / "b.nc")]
    assert main(argv) == 1
    err = _one_line(capsys)
    assert "TypeError: unsupported format string" in err and "--debug" in err
    for debug in (["--debug", *argv], [argv[0], "--debug", *argv[1:]]):
        with pytest.raises(TypeError, match="unsupported format string"):
            main(debug)


def test_debug_reraises_user_errors_too(tmp_path: Path) -> None:
    argv = ["evaluate", str(tmp_path / "none.nc"), "--ref", str(tmp_path / "none.nc")]
    assert main(argv) == 1
    with pytest.raises(FileNotFoundError):
        main(["--debug", *argv])


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/x/y.nc"), "cannot write /x/y.nc: No"),
        (PermissionError(errno.EACCES, "Permission denied", "/r/o"), "cannot access /r/o: Perm"),
        (OSError(errno.EIO, "Input/output error"), "cannot access a file: Input/output error"),
        (FileNotFoundError("no checkpoint file at /c.pt"), "no checkpoint file at /c.pt"),
    ],
)
def test_os_errors_are_described_by_path_and_cause(err: OSError, expected: str) -> None:
    assert describe_os_error(err).startswith(expected)
