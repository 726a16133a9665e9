"""Residual metric with the project's problems: generated data at its floor, wrong data above."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from physgen.cli import main
from physgen.data import write_fields
from physgen.metrics import residual_metric
from physgen.problem import load


@pytest.mark.parametrize(("name", "params"), [("sde1d", {"n": 101}), ("darcy", {"n": 16})])
def test_problem_data_residual_equals_its_floor(name: str, params: dict) -> None:
    problem = load(name, **params)
    ref = problem.to_tensor(problem.generate(48, seed=0))
    gen = problem.to_tensor(problem.generate(48, seed=1))
    res = residual_metric(problem, gen, ref)
    assert res["relative"] is True
    assert res["ratio"] == pytest.approx(1.0, abs=0.5)  # both at round-off
    assert res["floor"] < 1e-8
    # A 1 % perturbation of the solution breaks the equation far above the floor.
    wrong = gen.clone()
    wrong[:, 1] *= 1.01
    assert residual_metric(problem, wrong, ref)["ratio"] > 1e4


def test_evaluate_reports_the_floor_of_stored_problem_data(tmp_path: Path) -> None:
    problem = load("sde1d", n=101)
    ref = write_fields(problem.generate(64, seed=0), tmp_path / "ref.nc")
    same = write_fields(problem.generate(64, seed=1), tmp_path / "same.nc")
    scaled = problem.generate(64, seed=1)
    scaled["u"] = scaled["u"] * 1.05  # right shape, wrong amplitude: violates the equation
    scaled = write_fields(scaled, tmp_path / "scaled.nc")
    results = {}
    for label, path in (("same", same), ("scaled", scaled)):
        out = tmp_path / label
        args = ["evaluate", str(path), "--ref", str(ref), "--out", str(out)]
        assert main([*args, "--no-figures", "--permutations", "0", "--splits", "1"]) == 0
        results[label] = json.loads((out / "metrics.json").read_text())["residual"]
    # The problem and its parameters (n = 101) come from the reference file itself.
    assert results["same"]["problem"] == "sde1d"
    assert results["same"]["ratio"] == pytest.approx(1.0, abs=0.3)  # float32 storage floor
    assert results["scaled"]["ratio"] > 100
    assert np.isfinite(results["same"]["floor"]) and results["same"]["floor"] > 0


def test_evaluate_checks_the_problem_first_and_skips_a_partial_hint(tmp_path: Path, capsys) -> None:
    problem = load("sde1d", n=33)
    ref = write_fields(problem.generate(8, seed=0), tmp_path / "ref.nc")
    only_u = problem.generate(8, seed=1)[["u"]]
    only_u.attrs["fields"] = ["u"]
    only_u = write_fields(only_u, tmp_path / "u.nc")
    # An explicit problem whose fields the samples lack: one line, before any output.
    out = tmp_path / "explicit"
    argv = ["evaluate", str(only_u), "--ref", str(ref), "--out", str(out), "--problem", "sde1d"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "u.nc" in err and "missing ['k', 'f']" in err and not out.exists()
    # The reference file's own problem is only a hint: the residual is skipped with a note.
    out = tmp_path / "hint"
    argv = ["evaluate", str(only_u), "--ref", str(ref), "--out", str(out), "--no-figures"]
    assert main([*argv, "--permutations", "0", "--splits", "1"]) == 0
    assert "PDE residual skipped (sde1d)" in capsys.readouterr().out
    residual = json.loads((out / "metrics.json").read_text())["residual"]
    assert residual == {"problem": "sde1d", "skipped": "the samples lack fields ['k', 'f']"}
