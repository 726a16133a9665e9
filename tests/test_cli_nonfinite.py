"""Non-finite samples: ``evaluate`` scores the finite ones and reports their fraction,
refuses a non-finite reference, and ``sample`` warns when it writes any."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_metrics_evaluate_cli import grf_dataset, write
from test_training_cli import _train_argv, dataset  # noqa: F401 - the fixture is used

import physgen.cli.sample as sample_cli
from physgen.cli import main
from physgen.data import open_fields

BAD = [3, 17, 40, 41, 59]  # positions of the broken samples


def _evaluate(samples: Path, ref: Path, out: Path) -> int:
    argv = ["evaluate", str(samples), "--ref", str(ref), "--out", str(out), "--quiet"]
    return main([*argv, "--no-figures", "--no-residual", "--permutations", "20"])


def test_evaluate_scores_the_finite_samples_and_reports_the_fraction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = write(grf_dataset(120, seed=0), tmp_path / "ref.nc")
    gen = grf_dataset(60, seed=1)
    values = gen["a"].values.copy()
    values[BAD[:-1], 2, 5] = np.nan
    values[BAD[-1], 0, 0] = np.inf
    gen["a"].values = values
    broken = write(gen, tmp_path / "broken.nc")
    keep = np.setdiff1d(np.arange(60), BAD)
    clean = write(gen.isel(sample=keep), tmp_path / "clean.nc")

    assert _evaluate(broken, ref, tmp_path / "broken-eval") == 0
    printed = capsys.readouterr().out
    assert "5 of 60 generated fields (8.3%) hold NaN/Inf" in printed
    result = json.loads((tmp_path / "broken-eval" / "metrics.json").read_text())
    assert result["nonfinite"] == {"count": 5, "total": 60, "fraction": 5 / 60}
    assert result["fields"]["a"]["mean_error"]["n"] == 55
    # The scores are those of the finite samples alone, to the last bit (same seed).
    assert _evaluate(clean, ref, tmp_path / "clean-eval") == 0
    expected = json.loads((tmp_path / "clean-eval" / "metrics.json").read_text())
    assert expected["nonfinite"]["count"] == 0
    assert result["fields"] == expected["fields"]


def test_evaluate_refuses_a_nonfinite_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = grf_dataset(40, seed=0)
    values = ds["a"].values.copy()
    values[7, 1, 1] = np.nan
    ds["a"].values = values
    ref = write(ds, tmp_path / "ref.nc")
    gen = write(grf_dataset(20, seed=1), tmp_path / "gen.nc")
    out = tmp_path / "eval"
    assert _evaluate(gen, ref, out) == 1
    err = capsys.readouterr().err
    assert f"{ref}: the reference holds NaN/Inf in 1 sample(s) (positions [7])" in err
    assert "must be finite" in err and not out.exists()


def test_evaluate_drops_ensemble_cases_with_a_broken_member(tmp_path: Path) -> None:
    ref_ds = grf_dataset(12, seed=0, size=8)
    ref = write(ref_ds, tmp_path / "ref.nc")
    members = np.stack([grf_dataset(12, seed=s, size=8)["a"].values for s in (1, 2, 3, 4)], 1)
    members[5, 2, 0, 0] = np.nan  # case 5, member 2
    ens = ref_ds.copy()
    ens["a"] = (("sample", "member", "x", "y"), members, ref_ds["a"].attrs)
    ens = ens.assign_coords(member=np.arange(4))
    path = write(ens, tmp_path / "ens.nc")
    assert _evaluate(path, ref, tmp_path / "eval") == 0
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result["mode"] == "ensemble"
    assert result["nonfinite"] == {
        "count": 1,
        "total": 48,
        "fraction": 1 / 48,
        "cases_dropped": 1,
    }
    assert result["fields"]["a"]["n"] == 11


def test_sample_warns_when_it_writes_nonfinite_samples(
    dataset: Path,  # noqa: F811 - the fixture
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = tmp_path / "run"
    assert main(_train_argv(dataset, run, "vae", "--steps", "2")) == 0
    argv = ["sample", str(run / "checkpoint.pt"), "--n", "6", "--quiet"]
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "fine.nc")]) == 0
    assert "warning" not in capsys.readouterr().err  # negative control: a finite draw

    real_draw = sample_cli.draw

    def draw_with_two_broken(*args: object, **kwargs: object) -> torch.Tensor:
        x = real_draw(*args, **kwargs)
        x[1, 0, 0] = float("nan")
        x[4, -1, -1] = float("inf")
        return x

    monkeypatch.setattr(sample_cli, "draw", draw_with_two_broken)
    out = tmp_path / "broken.nc"
    assert main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: 2 of 6 samples in {out} hold NaN/Inf" in err
    with open_fields(out, nonfinite="ignore") as ds:
        assert int(ds.attrs["nonfinite_samples"]) == 2
