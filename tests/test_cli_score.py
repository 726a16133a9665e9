"""``physgen score``: scores of a labelled Darcy file under trained checkpoints, checked against
the model called directly, and AUROC / AUPRC against the file's labels."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from physgen.cli import main
from physgen.data import compute_stats, load_stats, open_fields, save_stats, write_fields
from physgen.diagnostics import auroc
from physgen.problem import load
from physgen.training import build_model, read_checkpoint

N = 8  # Darcy cells per axis


@pytest.fixture(scope="module")
def darcy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Darcy dataset folder and a labelled file: 6 solutions, 6 with u scaled by 1.01
    (label 1, the pressure of a 1 % source-term error) and 6 with u shifted (label 2)."""
    folder = tmp_path_factory.mktemp("darcy")
    problem = load("darcy", n=N)
    write_fields(problem.generate(32, seed=0), folder / "train.nc")
    with open_fields(folder / "train.nc") as ds:
        save_stats(compute_stats(ds, ["a", "u"]), folder / "stats.json", source="train.nc")
    test = problem.generate(18, seed=1)
    label = np.repeat([0, 1, 2], 6)
    u = test["u"].values.copy()
    u[label == 1] *= 1.01
    u[label == 2] += 0.05
    test["u"] = (test["u"].dims, u, test["u"].attrs)
    test["label"] = ("sample", label, {"flag_values": [1, 2], "flag_meanings": "source shift"})
    write_fields(test, folder / "labelled.nc")
    return {"data": folder, "labelled": folder / "labelled.nc"}


def _train(folder: Path, run: Path, model: str, *extra: str) -> Path:
    argv = ["train", "--data", str(folder), "--model", model, "--steps", "3", "--batch-size", "8"]
    assert main([*argv, "--device", "cpu", "--out", str(run), "--no-progress", *extra]) == 0
    return run / "checkpoint.pt"


def _normalized(folder: Path, path: Path) -> tuple[torch.Tensor, np.ndarray]:
    """The labelled fields z-scored with the training stats, and the per-channel std."""
    stats = load_stats(folder / "stats.json")
    with open_fields(path) as ds:
        z = np.stack([(ds[c].values - stats[c].mean) / stats[c].scale for c in ("a", "u")], 1)
    return torch.as_tensor(z, dtype=torch.float32), np.array([stats[c].scale for c in "au"])


def test_score_vae_with_residual_and_labels(
    darcy: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = _train(darcy["data"], tmp_path / "vae", "vae")
    out = tmp_path / "scores.nc"
    argv = ["score", str(ckpt), str(darcy["labelled"]), "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--problem", "darcy", "--labels"]) == 0
    printed = capsys.readouterr().out
    ds = xr.load_dataset(out)
    assert set(ds.data_vars) == {"neg_elbo", "neg_iwae", "reconstruction", "residual", "label"}
    # The reconstruction error is deterministic: the model's decoded posterior mean.
    model = build_model(read_checkpoint(ckpt))
    z, _ = _normalized(darcy["data"], darcy["labelled"])
    with torch.no_grad():
        mu, _ = model.encode(z)
        mse = (model.decode(mu) - z).double().pow(2).flatten(1).mean(1).numpy()
    np.testing.assert_allclose(ds["reconstruction"].values, mse, rtol=1e-5)
    # The residual of the 1 % source error is 0.01 (relative); solutions sit at float32's floor.
    label = ds["label"].values
    np.testing.assert_allclose(ds["residual"].values[label == 1], 0.01, rtol=1e-3)
    assert ds["residual"].values[label == 0].max() < 1e-4
    detection = json.loads(ds.attrs["detection_json"])
    assert detection["residual"]["source"]["auroc"]["value"] == 1.0
    expected = auroc(ds["neg_elbo"].values[label == 0], ds["neg_elbo"].values[label > 0])
    assert detection["neg_elbo"]["all"]["auroc"]["value"] == pytest.approx(expected.value)
    assert re.search(r"^residual +source +1\.000 ± 0\.000", printed, re.MULTILINE)


def test_score_flow_nll_is_in_physical_bits_per_dim(darcy: dict[str, Path], tmp_path: Path) -> None:
    ckpt = _train(darcy["data"], tmp_path / "flow", "realnvp", "--flatten")
    out = tmp_path / "scores.nc"
    assert main(["score", str(ckpt), str(darcy["labelled"]), "--out", str(out)]) == 0
    nll = xr.load_dataset(out)["nll"].values
    # log p_y(y) = log p_z(z) − Σ_d log s_d for z = (y − m)/s: 64 dims per channel.
    model = build_model(read_checkpoint(ckpt))
    z, scale = _normalized(darcy["data"], darcy["labelled"])
    with torch.no_grad():
        log_pz = model.log_prob(z.flatten(1)).double().numpy()
    d = 2 * N * N
    expected = -(log_pz - N * N * np.log(scale).sum()) / (d * math.log(2))
    np.testing.assert_allclose(nll, expected, rtol=1e-5)


def test_score_errors(darcy: dict[str, Path], tmp_path: Path, capsys) -> None:
    ckpt = _train(darcy["data"], tmp_path / "vae", "vae")
    train = darcy["data"] / "train.nc"
    argv = ["score", str(ckpt), str(train), "--out", str(tmp_path / "s.nc"), "--labels"]
    assert main(argv) == 1
    assert "--labels needs a variable 'label'" in capsys.readouterr().err
    assert main([*argv[:-1], "--scores", "nll"]) == 1
    assert "scores ['nll'] are not available" in capsys.readouterr().err
    assert not (tmp_path / "s.nc").exists()
