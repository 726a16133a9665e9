"""Ensemble files: the physgen-field/1 ``member`` dimension and a calibrated ensemble's scores."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from physgen.data import FieldFileError, open_fields, validate_fields, write_fields
from physgen.metrics import crps_fair, spread_skill_ratio


def _ensemble(n: int = 3, m: int = 5, grid=(4, 6)) -> xr.Dataset:
    rng = np.random.default_rng(0)
    coords = {"x": np.linspace(0, 1, grid[0]), "y": np.linspace(0, 1, grid[1])}
    data = {"u": (("sample", "member", "x", "y"), rng.normal(size=(n, m, *grid)))}
    return xr.Dataset(data, coords=coords, attrs={"fields": ["u"]})


def test_member_dimension_round_trips(tmp_path):
    path = write_fields(_ensemble(), tmp_path / "ens.nc", provenance={"task": "sr4"})
    ds = open_fields(path, load=True)
    assert ds["u"].dims == ("sample", "member", "x", "y")
    assert list(ds["member"].values) == [0, 1, 2, 3, 4]
    assert ds.attrs["task"] == "sr4"


def test_member_dimension_must_follow_sample():
    ds = _ensemble().transpose("member", "sample", "x", "y")
    ds = ds.assign_coords(sample=np.arange(3), member=np.arange(5))
    ds.attrs["physgen_schema"] = "physgen-field/1"
    ds["u"] = ds["u"].astype("float32")
    with pytest.raises(FieldFileError, match="disagree with the layout"):
        validate_fields(ds)


@pytest.mark.parametrize("m", [2, 5, 20])
def test_a_calibrated_synthetic_ensemble_scores_spread_skill_one(m):
    # Truth and members are exchangeable draws of N(μ_i, s_i²) per point: a perfectly
    # reliable ensemble. The corrected spread-skill ratio is 1, and the fair CRPS is unbiased
    # for the CRPS of N(μ, s²) against truth drawn from it, whose expectation is s/√π.
    rng = np.random.default_rng(m)
    n = 200_000 // m
    mu, s = rng.normal(size=n), rng.uniform(0.5, 2.0, size=n)
    members = mu + s * rng.normal(size=(m, n))
    truth = mu + s * rng.normal(size=n)
    assert float(spread_skill_ratio(members, truth)) == pytest.approx(1.0, abs=0.02)
    crps = crps_fair(members, truth).numpy()
    se = crps.std() / np.sqrt(n)
    assert abs(crps.mean() - np.mean(s) / np.sqrt(np.pi)) < 4 * se
    # An over-confident ensemble (half the spread) is caught.
    narrow = mu + 0.5 * s * rng.normal(size=(m, n))
    assert float(spread_skill_ratio(narrow, truth)) < 0.6
