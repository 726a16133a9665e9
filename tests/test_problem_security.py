"""A problem named by data (file attribute, checkpoint) is never a path: no code runs from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_metrics_evaluate_cli import grf_dataset, write

from physgen.cli import main
from physgen.problem import (
    UnregisteredProblemError,
    find_project_dir,
    load_registered,
    registered_problem_path,
)
from physgen.training.checkpoint import build_model

# A problem module whose import leaves a marker file: proof that its code ran.
_PROBLEM_SOURCE = """
from dataclasses import dataclass
from pathlib import Path

from physgen.grids import Grid
from physgen.problem import Field, Problem

Path({marker!r}).write_text("this module's code ran")


@dataclass(frozen=True)
class Params:
    n: int = 8


class Marked(Problem):
    name = "marked"
    Params = Params
    fields = (Field("a", "a field"),)

    @property
    def grid(self) -> Grid:
        return Grid((self.params.n, self.params.n), bc="periodic")

    def _generate(self, rngs):
        raise NotImplementedError
"""


def _marked_problem(folder: Path, marker: Path, name: str = "evil.py") -> Path:
    """Write a problem file that creates ``marker`` when imported."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(_PROBLEM_SOURCE.format(marker=str(marker)))
    return path


def _reference(tmp_path: Path, problem: str) -> tuple[Path, Path]:
    """Samples and a reference file whose ``problem`` attribute is ``problem``."""
    ref = grf_dataset(16, seed=0, size=8)
    ref.attrs["problem"] = problem
    return write(grf_dataset(8, seed=1, size=8), tmp_path / "gen.nc"), write(ref, tmp_path / "r.nc")


def _evaluate(gen: Path, ref: Path, out: Path, *extra: str) -> int:
    argv = ["evaluate", str(gen), "--ref", str(ref), "--out", str(out), "--no-figures"]
    return main([*argv, "--permutations", "0", "--splits", "1", *extra])


def _assert_refused(capsys: pytest.CaptureFixture[str], ref: Path, marker: Path) -> str:
    """One line naming the file and ``--problem PATH``; the module's code never ran."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(ref) in err and "--problem PATH" in err
    assert not marker.exists()
    return err


def test_absolute_path_in_the_problem_attribute_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "MARKER"
    evil = _marked_problem(tmp_path / "elsewhere", marker)
    gen, ref = _reference(tmp_path, str(evil))
    assert _evaluate(gen, ref, tmp_path / "out") == 1
    assert "is a path" in _assert_refused(capsys, ref, marker)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_traversal_in_the_problem_attribute_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "MARKER"
    evil = _marked_problem(tmp_path / "elsewhere", marker)
    # Relative to the problems folder, without the suffix: problems/<text>.py is the file.
    text = os.path.relpath(evil.with_suffix(""), find_project_dir("problems").resolve())
    assert text.startswith("..") and (find_project_dir("problems") / f"{text}.py").is_file()
    gen, ref = _reference(tmp_path, text)
    assert _evaluate(gen, ref, tmp_path / "out") == 1
    _assert_refused(capsys, ref, marker)


def test_symlink_out_of_the_problems_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "MARKER"
    outside = _marked_problem(tmp_path / "outside", marker)
    problems = tmp_path / "problems"
    problems.mkdir()
    (problems / "evil.py").symlink_to(outside)
    monkeypatch.setenv("PHYSGEN_PROBLEMS_DIR", str(problems))
    gen, ref = _reference(tmp_path, "evil")
    assert _evaluate(gen, ref, tmp_path / "out") == 1
    assert "outside the problems folder" in _assert_refused(capsys, ref, marker)
    # Control: the same module as a real file inside the folder is registered and loads.
    (problems / "evil.py").unlink()
    _marked_problem(problems, marker)
    assert _evaluate(gen, ref, tmp_path / "out") == 0
    assert marker.exists()


def test_explicit_problem_path_still_loads_a_users_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "MARKER"
    mine = _marked_problem(tmp_path / "mine", marker, "mine.py")
    gen, ref = _reference(tmp_path, "not_a_known_problem")
    assert _evaluate(gen, ref, tmp_path / "out", "--problem", str(mine)) == 0
    assert marker.exists()  # the user's own file was imported, as asked
    assert "PDE residual skipped (marked)" in capsys.readouterr().out


def test_an_unknown_plain_name_in_the_attribute_is_only_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gen, ref = _reference(tmp_path, "Darcy flow (external)")
    assert _evaluate(gen, ref, tmp_path / "out") == 0
    assert "PDE residual skipped" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["/etc/passwd", "../grf", "sub/grf", "grf.py", "~/x", ".grf"])
def test_registered_names_are_plain_names(text: str) -> None:
    with pytest.raises(UnregisteredProblemError, match="is a path"):
        registered_problem_path(text)


def test_registered_problem_loads_by_name() -> None:
    assert registered_problem_path("grf").name == "grf.py"
    assert load_registered("grf", n=16).params.n == 16
    with pytest.raises(FileNotFoundError, match="no problem 'no_such_problem'"):
        load_registered("no_such_problem")


def test_checkpoint_config_naming_a_problem_file_is_refused(tmp_path: Path) -> None:
    """A PI-VAE checkpoint's model config names its problem: a path there is not imported."""
    marker = tmp_path / "MARKER"
    evil = _marked_problem(tmp_path, marker)
    contents = {
        "model_name": "pivae",
        "model_config": {"sample_shape": [1, 8, 8], "problem": str(evil)},
        "model_state": {},
    }
    with pytest.raises(UnregisteredProblemError, match="is a path"):
        build_model(contents)
    assert not marker.exists()


def test_a_problem_files_data_name_the_file_and_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Data generated by a user's problem file record the file and its SHA-256; evaluate
    never runs it from there, says which file to pass, and refuses an edited file."""
    import json

    from physgen.data import write_fields
    from physgen.problem import file_sha256, load

    source = (find_project_dir("problems") / "darcy.py").read_text()
    mine = tmp_path / "mydarcy.py"
    mine.write_text(source.replace('name = "darcy"', 'name = "mydarcy"'))
    problem = load(mine, n=8)
    ds = problem.generate(12, seed=0)
    assert ds.attrs["problem_file"] == str(mine.resolve())
    assert ds.attrs["problem_sha256"] == file_sha256(mine)
    ref = write_fields(ds, tmp_path / "ref.nc")
    gen = write_fields(problem.generate(6, seed=1), tmp_path / "gen.nc")

    assert _evaluate(gen, ref, tmp_path / "plain") == 0  # the file is only named
    assert "pass --problem FILE" in capsys.readouterr().out
    assert _evaluate(gen, ref, tmp_path / "explicit", "--problem", str(mine)) == 0
    residual = json.loads((tmp_path / "explicit" / "metrics.json").read_text())["residual"]
    assert residual["problem_file"] == str(mine.resolve())
    assert residual["problem_sha256"] == file_sha256(mine)

    mine.write_text(mine.read_text() + "\n# edited\n")  # negative control: other bytes
    assert _evaluate(gen, ref, tmp_path / "edited", "--problem", str(mine)) == 1
    assert "differs from" in capsys.readouterr().err
