"""``physgen infer`` writes ensembles with a member dimension; ``physgen evaluate`` scores them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from physgen.cli import main
from physgen.cli.evaluate import evaluate_files
from physgen.cli.infer import inverse_metadata
from physgen.data import compute_stats, open_fields, write_fields
from physgen.models.vae import CVAE
from physgen.problem import load
from physgen.training.checkpoint import model_entries, save_checkpoint


@pytest.fixture(scope="module")
def darcy(tmp_path_factory):
    """A small Darcy test file (8² cells) and its statistics."""
    folder = tmp_path_factory.mktemp("darcy")
    problem = load("darcy", n=8)
    path = write_fields(problem.generate(6, seed=0), folder / "test.nc")
    return problem, path, compute_stats(open_fields(path))


def _checkpoint(path, problem, stats, task: str):
    torch.manual_seed(0)
    model = CVAE((1, 8, 8), (1, 8, 8), latent_dim=4, arch="conv", channels=(8,), hidden=(16,))
    meta = inverse_metadata(
        list(problem.field_names), problem.grid, stats, task=task,
        sample_options={"mean": False},
    )  # fmt: skip
    save_checkpoint(path, {**model_entries(model), "metadata": meta})
    return path


def test_infer_writes_and_rereads_an_ensemble_with_a_member_dimension(tmp_path, darcy):
    problem, obs, stats = darcy
    ckpt = _checkpoint(tmp_path / "cvae.pt", problem, stats, "colorize:u")
    out = tmp_path / "ens.nc"
    argv = ["infer", str(ckpt), "--task", "colorize:u", "--obs", str(obs)]
    assert main([*argv, "--n-samples", "5", "--out", str(out)]) == 0
    ens = open_fields(out, load=True)
    truth = open_fields(obs, load=True)
    assert ens["u"].dims == ("sample", "member", "x", "y")
    assert ens.sizes["member"] == 5 and ens.sizes["sample"] == 6
    assert ens.attrs["task"] == "colorize:u" and ens.attrs["method"] == "conditional"
    assert ens.attrs["observation_fraction"] == pytest.approx(1.0)
    # The observed permeability is carried unchanged in physical units by every member.
    for m in range(5):
        np.testing.assert_allclose(ens["a"].isel(member=m), truth["a"], rtol=1e-5)
    # Members differ (the model samples), and they are de-normalized (pressure-scale values).
    assert float(ens["u"].std("member").mean()) > 0
    np.testing.assert_allclose(ens["x"], truth["x"])
    # physgen evaluate reads it as an ensemble.
    result = evaluate_files(out, obs, out=tmp_path / "eval", fields=["u"], figures=False)
    assert result["mode"] == "ensemble" and result["fields"]["u"]["members"] == 5
    # A conditional model answers only the task it was trained for.
    assert main([*argv[:3], "sr4", *argv[4:], "--out", str(tmp_path / "x.nc")]) == 1


def test_infer_accepts_coarse_observations_for_super_resolution(tmp_path, darcy):
    problem, obs, stats = darcy
    torch.manual_seed(0)
    model = CVAE((1, 8, 8), (1, 8, 8), latent_dim=2, arch="conv", channels=(8,), hidden=(16,))
    meta = inverse_metadata(["u"], problem.grid, stats, task="sr2")
    ckpt = save_checkpoint(tmp_path / "sr.pt", {**model_entries(model), "metadata": meta})
    fine = open_fields(obs, load=True)
    coarse = fine[["u"]].coarsen(x=2, y=2).mean()
    coarse.attrs = {"fields": ["u"]}
    coarse_path = write_fields(coarse, tmp_path / "coarse.nc")
    for source, synthesized in ((coarse_path, 0), (obs, 1)):
        out = tmp_path / f"sr-{synthesized}.nc"
        args = ["infer", str(ckpt), "--task", "sr2", "--obs", str(source), "--out", str(out)]
        assert main([*args, "--n-samples", "3"]) == 0
        ens = open_fields(out, load=True)
        assert ens["u"].shape == (6, 3, 8, 8)
        assert ens.attrs["observations_synthesized"] == synthesized
        assert ens.attrs["observation_fraction"] == pytest.approx(0.25)
    bad_ds = fine[["u"]].isel(x=slice(0, 6)).assign_attrs(fields=["u"])
    bad = write_fields(bad_ds, tmp_path / "bad.nc")
    args = ["infer", str(ckpt), "--task", "sr2", "--obs", str(bad), "--out", str(out)]
    assert main(args) == 1


def test_evaluate_scores_a_calibrated_synthetic_ensemble_file_at_spread_skill_one(tmp_path):
    rng = np.random.default_rng(0)
    n, m, grid = 400, 8, (16, 16)
    mu = rng.normal(size=(n, 1, *grid))
    s = rng.uniform(0.5, 1.5, size=(n, 1, *grid))
    members = mu + s * rng.normal(size=(n, m, *grid))
    truth = mu[:, 0] + s[:, 0] * rng.normal(size=(n, *grid))
    coords = {"x": np.linspace(0, 1, 16), "y": np.linspace(0, 1, 16)}
    ens = xr.Dataset({"u": (("sample", "member", "x", "y"), members)}, coords=coords)
    ref = xr.Dataset({"u": (("sample", "x", "y"), truth)}, coords=coords)
    write_fields(ens.assign_attrs(fields=["u"]), tmp_path / "ens.nc")
    write_fields(ref.assign_attrs(fields=["u"]), tmp_path / "ref.nc")
    result = evaluate_files(
        tmp_path / "ens.nc", tmp_path / "ref.nc", out=tmp_path / "eval", figures=False
    )
    scores = json.loads((tmp_path / "eval" / "metrics.json").read_text())["fields"]["u"]
    assert scores == result["fields"]["u"]
    assert scores["spread_skill_corrected"] == pytest.approx(1.0, abs=0.02)
    # Linear-interpolated member quantiles at ranks 1 + (M−1)p cover (M−1)(1−2p)/(M+1) of
    # exchangeable truths in expectation (E U_(k) = k/(M+1)): 0.7 for the 90 % band, M = 8.
    assert scores["coverage"]["0.9"] == pytest.approx(0.9 * (m - 1) / (m + 1), abs=0.03)
