"""``physgen evaluate``: floors on same-distribution files, alarms on wrong ones, ensembles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from physgen.cli import main
from physgen.cli.evaluate import format_table
from physgen.metrics import compare_to_floor


def grf_dataset(n: int, seed: int, *, shift: float = 0.0, scale: float = 1.0, size: int = 24):
    """Periodic Gaussian random fields N(0, (−Δ + 9)^-2) on [0, 1)², as physgen-field/1."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(size, d=1 / size)
    kk = 4 * np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2)
    amp = (kk + 9.0) ** -1.0
    amp[0, 0] = 0.0
    noise = rng.normal(size=(n, size, size))
    a = np.fft.ifft2(np.fft.fft2(noise) * amp).real
    a = shift + scale * a / a.std()
    x = (np.arange(size) + 0.5) / size
    return xr.Dataset(
        {
            "a": (
                ("sample", "x", "y"),
                a.astype("f4"),
                {"units": "1", "long_name": "log-permeability"},
            )
        },
        coords={
            "sample": np.arange(n),
            "x": ("x", x, {"units": "m", "axis": "X"}),
            "y": ("y", x, {"units": "m", "axis": "Y"}),
        },
        attrs={
            "Conventions": "CF-1.8",
            "physgen_schema": "physgen-field/1",
            "fields": ["a"],
            "bc_x": "periodic",
            "bc_y": "periodic",
        },
    )


def write(ds: xr.Dataset, path: Path) -> Path:
    ds.to_netcdf(path, engine="h5netcdf")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("evaluate")
    return {
        "ref": write(grf_dataset(240, seed=0), d / "ref.nc"),
        "same": write(grf_dataset(120, seed=1), d / "same.nc"),
        "wrong": write(grf_dataset(120, seed=1, shift=0.5, scale=1.5), d / "wrong.nc"),
    }


def test_same_distribution_sits_at_the_floor(files, tmp_path, capsys) -> None:
    out = tmp_path / "same"
    args = ["evaluate", str(files["same"]), "--ref", str(files["ref"]), "--out", str(out)]
    assert main([*args, "--permutations", "100"]) == 0
    printed = capsys.readouterr().out
    assert "spectrum_lsd" in printed and "value/floor" in printed
    result = json.loads((out / "metrics.json").read_text())
    a = result["fields"]["a"]
    assert result["mode"] == "distribution" and a["mean_error"]["n"] == 120
    for name in ("mean_error", "std_error", "total_std_error", "marginal_w1", "frechet_pca"):
        assert a[name]["value"] < 2.5 * a[name]["floor"], name
    assert a["sliced_wasserstein"]["value"] < 2.5 * a["sliced_wasserstein"]["floor"]
    assert a["mmd2"]["p_value"] > 0.05
    for png in ("a_samples.png", "a_spectrum.png", "a_marginals.png"):
        assert (out / png).stat().st_size > 5_000
    assert not list(out.glob(".*"))  # atomic writes leave no temporary files


def test_shifted_and_rescaled_fields_are_flagged(files, tmp_path) -> None:
    out = tmp_path / "wrong"
    args = ["evaluate", str(files["wrong"]), "--ref", str(files["ref"]), "--out", str(out)]
    assert main([*args, "--permutations", "100", "--no-figures"]) == 0
    a = json.loads((out / "metrics.json").read_text())["fields"]["a"]
    flagged = ("mean_error_std_units", "std_error", "total_std_error", "marginal_w1")
    for name in (*flagged, "sliced_wasserstein", "frechet_pca", "energy_distance", "spectrum_lsd"):
        assert a[name]["value"] > 3 * a[name]["floor"], name
    assert a["total_std_error"]["value"] == pytest.approx(0.5, abs=0.05)
    assert a["mean_error_std_units"]["value"] == pytest.approx(0.5, abs=0.1)
    assert a["mmd2"]["p_value"] < 0.02


def test_ensemble_file_gets_ensemble_scores(tmp_path, capsys) -> None:
    truth = grf_dataset(60, seed=2)
    rng = np.random.default_rng(3)
    # Members = truth + the same noise law that generated the truth's error: calibrated.
    center = truth["a"].values + rng.normal(size=truth["a"].shape)
    truth["a"].values[:] = center + rng.normal(size=center.shape)
    members = center[:, None] + rng.normal(size=(60, 8, *center.shape[1:]))
    ens = truth.drop_vars("a").assign(
        a=(("sample", "member", "x", "y"), members.astype("f4"), dict(truth["a"].attrs))
    )
    ref_path, ens_path = write(truth, tmp_path / "truth.nc"), write(ens, tmp_path / "ens.nc")
    out = tmp_path / "ens-out"
    assert main(["evaluate", str(ens_path), "--ref", str(ref_path), "--out", str(out)]) == 0
    assert "crps_fair" in capsys.readouterr().out
    a = json.loads((out / "metrics.json").read_text())["fields"]["a"]
    assert a["members"] == 8
    assert a["spread_skill_corrected"] == pytest.approx(1.0, abs=0.05)
    assert a["crps_fair"] == pytest.approx(1 / np.sqrt(np.pi), abs=0.02)
    assert a["crps_nrg_biased"] > a["crps_fair"]
    assert len(a["rank_histogram"]) == 9
    assert (out / "a_rank_histogram.png").stat().st_size > 5_000


def test_paired_errors(files, tmp_path) -> None:
    out = tmp_path / "paired"
    args = ["evaluate", str(files["ref"]), "--ref", str(files["ref"]), "--out", str(out)]
    assert main([*args, "--paired", "--no-figures", "--permutations", "0", "--splits", "1"]) == 0
    paired = json.loads((out / "metrics.json").read_text())["fields"]["a"]["paired"]
    assert paired["relative_l2"] == 0.0 and paired["vrmse"] == 0.0


def test_bad_inputs_end_with_one_clear_line(files, tmp_path, capsys) -> None:
    assert main(["evaluate", str(tmp_path / "none.nc"), "--ref", str(files["ref"])]) == 1
    assert "no such file" in (err := capsys.readouterr().err) and "none.nc" in err
    bad = args = ["evaluate", str(files["same"]), "--ref", str(files["ref"]), "--fields", "u"]
    assert main([*bad, "--out", str(tmp_path / "x")]) == 1
    assert "no field 'u'" in capsys.readouterr().err
    junk = tmp_path / "junk.nc"
    junk.write_text("not hdf5")
    args = ["evaluate", str(junk), "--ref", str(files["ref"]), "--out", str(tmp_path / "y")]
    assert main(args) == 1
    assert "junk.nc" in capsys.readouterr().err
    good = ["evaluate", str(files["same"]), "--ref", str(files["ref"])]
    for flag, value in (("--splits", "0"), ("--permutations", "-1"), ("--max-samples", "1")):
        out = tmp_path / f"bad{flag}"
        assert main([*good, "--out", str(out), flag, value]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and flag in err and "Traceback" not in err
        assert not (out / "metrics.json").exists()


def test_member_axis_is_part_of_the_file_layout(tmp_path) -> None:
    from physgen.data import FieldFileError, open_fields

    ds = grf_dataset(4, seed=4)
    members = np.repeat(ds["a"].values[:, None], 3, axis=1)
    good = ds.drop_vars("a").assign(a=(("sample", "member", "x", "y"), members, ds["a"].attrs))
    assert open_fields(write(good, tmp_path / "good.nc"))["a"].dims[1] == "member"
    misplaced = ds.drop_vars("a").assign(
        a=(("sample", "x", "member", "y"), members.transpose(0, 2, 1, 3), ds["a"].attrs)
    )
    with pytest.raises(FieldFileError, match=r"disagree with the layout \(sample, \[member\]"):
        open_fields(write(misplaced, tmp_path / "bad.nc"))


def test_floor_comparison_branches() -> None:
    """Known inputs through every branch of ``compare_to_floor`` (k = 2 floor sds)."""
    # A floor statistically at zero (an unbiased MMD² estimate): no ratio, ever.
    zero = compare_to_floor(1.3, 3.9e-5, 0.011)
    assert zero.within is False and zero.ratio is None
    assert zero.z == pytest.approx((1.3 - 3.9e-5) / 0.011)
    assert compare_to_floor(0.02, 3.9e-5, 0.011).within  # 1.8 sd from the floor
    assert not compare_to_floor(0.023, 3.9e-5, 0.011).within  # 2.1 sd
    assert compare_to_floor(-0.015, -0.004, 0.011).within  # below 0 is fine for an unbiased one
    # A floor well above its spread (a biased estimator): the ratio is meaningful.
    far = compare_to_floor(0.3, 0.1, 0.01)
    assert far.within is False and far.ratio == pytest.approx(3.0) and far.z == pytest.approx(20)
    near = compare_to_floor(0.115, 0.1, 0.01)
    assert near.within and near.ratio == pytest.approx(1.15)
    # The edge: a floor at exactly 2 sd is distinguishable from 0, just below it is not.
    assert compare_to_floor(1.0, 0.02, 0.01).ratio == pytest.approx(50.0)
    assert compare_to_floor(1.0, 0.0199, 0.01).ratio is None
    # One split: the floor's own noise is unknown, so no verdict and no ratio.
    assert compare_to_floor(1.0, 0.5, None) == (None, None, None)


def test_table_never_divides_by_a_floor_at_zero() -> None:
    """The table prints "within floor", the ratio, or the distance in sds — not 1.3/3.9e-5."""
    result = {
        "fields": {
            "a": {
                "mmd2": {"value": 1.3, "floor": 3.9e-5, "floor_std": 0.011, "n": 100},
                "energy_distance": {"value": 0.004, "floor": -0.001, "floor_std": 0.01, "n": 100},
                "mean_error": {"value": 0.3, "floor": 0.1, "floor_std": 0.01, "n": 100},
                "std_error": {"value": 0.11, "floor": 0.1, "floor_std": 0.01, "n": 100},
            }
        }
    }
    rows = {line.split()[1]: line for line in format_table(result).splitlines()[2:]}
    assert "33333" not in rows["mmd2"] and rows["mmd2"].endswith("n/a (+118.2 sd)")
    assert rows["energy_distance"].endswith("within floor")
    assert rows["mean_error"].endswith(" 3.00")
    assert rows["std_error"].endswith("within floor")
