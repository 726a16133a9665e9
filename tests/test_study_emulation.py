"""The emulation study end to end on tiny Burgers data: rows, lead times, the persistence row."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from physgen.emulation import SpreadCalibration, read_trajectories
from physgen.paths import load_module_from_path
from physgen.recipes import make_dataset

STUDY = Path(__file__).parents[1] / "studies" / "emulation" / "run.py"

RECIPE = """problem = "burgers"
seed = 0
description = "tiny Burgers for the emulation study test"
[params]
n = 32
t_end = 0.2
[splits]
train = 6
valid = 4
test = 4
"""


def _tiny(cfg: dict, recipe: Path, **overrides: object) -> dict:
    """A study configuration shrunk to seconds on a CPU: 4 test and validation cases,
    2 members, 2 training steps, networks of a few channels."""
    cfg = copy.deepcopy(cfg)
    cfg.update(recipe=str(recipe), n_test=4, n_valid=4, members=2, steps=2, batch_size=8)
    cfg.update(overrides)
    cfg["models"] = {
        "unet": {"channels": [4, 8], "blocks": 1, "periodic": True},
        "cvae": {"latent_dim": 2, "channels": [4, 8]},
        "glow": {"hidden": 4, "levels": 2, "periodic": True},
    }
    cfg["sample"] = {"flow-matching": {"method": "euler", "steps": 2}, "diffusion": {"steps": 2}}
    return cfg


def test_the_study_scores_every_method_per_lead_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHYSGEN_DATA_DIR", str(tmp_path / "data"))
    study = load_module_from_path(STUDY, "emulation_study_run")
    recipe = tmp_path / "tiny-burgers.toml"
    recipe.write_text(RECIPE)
    cfg = _tiny(study.CONFIGS["quick"], recipe, stride=4, inflation=[1.0, 0.5])
    monkeypatch.setitem(study.CONFIGS, "quick", cfg)
    assert study.main(["--quick", "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    # 21 frames every 0.01 → every 4th: 6 frames 0.04 apart; history 2 → 4 lead times.
    assert report["lead_times"] == pytest.approx([0.04, 0.08, 0.12, 0.16])
    methods = report["results"]
    generative = {"conditional flow matching", "conditional diffusion", "conditional VAE",
                  "conditional Glow", "residual flow matching"}  # fmt: skip
    rolled = {f"residual flow matching, {n}-step residuals" for n in cfg["rollout_residuals"]}
    assert rolled
    calibrated = {
        f"{name}, λ = {entry['inflation']:g}"
        for name, entry in report["calibration"].items()
        if entry["inflation"] != 1.0
    }
    spread = {f"{name}, s(t)" for name, entry in report["calibration"].items() if "spread" in entry}
    assert spread  # at least one model had a spread to calibrate
    assert set(report["calibration"]) == generative | rolled
    assert set(methods) == generative | rolled | calibrated | spread | {
        "deterministic U-Net", "persistence", "climatology",
    }  # fmt: skip
    # The s(t) rows: the plain rollout moved about its mean (the ensemble-mean RMSE is kept),
    # the factors those of the stored coefficients, the degree the cross-validated best.
    for name in {n for n in generative | rolled if f"{n}, s(t)" in methods}:
        entry = report["calibration"][name]["spread"]
        row, plain = methods[f"{name}, s(t)"], methods[name]
        assert row["scores"]["rmse"] == pytest.approx(plain["scores"]["rmse"], rel=1e-5)
        cal = SpreadCalibration(tuple(entry["coefficients"]), entry["t_max"])
        assert row["spread_factors"] == pytest.approx(cal.factors(report["lead_times"]).tolist())
        ratio = torch.tensor(row["scores"]["spread"]) / torch.tensor(plain["scores"]["spread"])
        assert ratio.tolist() == pytest.approx(row["spread_factors"], rel=1e-4)
        assert entry["cv_mean_abs_log_ssr"][str(entry["degree"])] == min(
            entry["cv_mean_abs_log_ssr"].values()
        )
    # The chosen λ has the smallest validation misfit of the grid (λ = 1 only for the rows
    # trained on rolled-out residuals).
    for name, entry in report["calibration"].items():
        misfit = entry["mean_abs_log_ssr"]
        assert set(misfit) == ({"1.0"} if name in rolled else {"1.0", "0.5"})
        assert misfit[str(entry["inflation"])] == min(misfit.values())
    assert all(len(r["scores"]["crps"]) == 4 for r in methods.values())
    # Every ensemble row carries a case-bootstrap interval of its spread–skill ratio.
    for name in generative | rolled:
        ci, ratio = methods[name]["scores"]["spread_skill_interval"], methods[name]["scores"]
        assert all(lo <= hi for lo, hi in zip(ci["low"], ci["high"], strict=True))
        assert len(ratio["spread_skill"]) == len(ci["low"]) == 4
    # The persistence row, recomputed by hand: CRPS of a point forecast = MAE of u_1 vs u_j.
    test, _, _ = read_trajectories(make_dataset(recipe, progress=False)["test"])
    frames = test[:4, :, ::4]  # (4, 1, 6, 32)
    expected = [float((frames[:, :, 1] - frames[:, :, j]).abs().mean()) for j in range(2, 6)]
    assert methods["persistence"]["scores"]["crps"] == pytest.approx(expected, rel=1e-9)
    assert methods["deterministic U-Net"]["scores"]["spread"] == [0.0] * 4
    assert (tmp_path / "out" / "results.md").read_text().startswith("| method |")
    assert (tmp_path / "out" / "lead_times.png").stat().st_size > 0
    assert torch.isfinite(torch.tensor(methods["conditional diffusion"]["scores"]["crps"])).all()


def test_wins_and_calibrated_until() -> None:
    study = load_module_from_path(STUDY, "emulation_study_run")
    assert study.wins([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]) == 1  # ties do not count
    # Lower is better: the order of the arguments matters (swapped: the other lead wins).
    assert study.wins([1.0, 1.0, 3.0], [2.0, 2.0, 2.0]) == 2
    assert study.wins([2.0, 2.0, 2.0], [1.0, 1.0, 3.0]) == 1
    times = [0.1, 0.2, 0.3, 0.4]
    assert study.calibrated_until([1.0, 0.8, 1.2, 0.9], times) == 0.4
    assert study.calibrated_until([1.0, 1.19, 1.25, 1.0], times) == 0.2  # stops at the first miss
    assert study.calibrated_until([0.5, 1.0, 1.0, 1.0], times) == 0.0


KOLMOGOROV = """problem = "kolmogorov"
seed = 0
description = "tiny Kolmogorov flow for the smoke test of the full emulation study"
[params]
n = 16
t_start = 0.25
t_end = 0.5
[splits]
train = 4
valid = 4
test = 4
"""


def test_the_full_configuration_runs_on_a_tiny_kolmogorov_flow_on_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU configuration's path (2-D vorticity fields, every stored frame) end to end,
    shrunk and on the CPU: the same code as ``physgen run emulation`` without ``--quick``."""
    monkeypatch.setenv("PHYSGEN_DATA_DIR", str(tmp_path / "data"))
    study = load_module_from_path(STUDY, "emulation_study_run")
    assert study.CONFIGS["full"]["recipe"] == "kolmogorov-64"
    recipe = tmp_path / "tiny-kolmogorov.toml"
    recipe.write_text(KOLMOGOROV)
    cfg = _tiny(study.CONFIGS["full"], recipe, inflation=[1.0])
    monkeypatch.setitem(study.CONFIGS, "full", cfg)
    assert study.main(["--device", "cpu", "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    # Frames every 1/32 on [0.25, 0.5]: 9 frames; history 2 → 7 lead times.
    assert report["lead_times"] == pytest.approx([j / 32 for j in range(1, 8)])
    persistence = report["results"]["persistence"]
    test, _, _ = read_trajectories(make_dataset(recipe, progress=False)["test"])
    assert test.shape[-2:] == (16, 16)
    expected = [float((test[:4, :, 1] - test[:4, :, j]).abs().mean()) for j in range(2, 9)]
    assert persistence["scores"]["crps"] == pytest.approx(expected, rel=1e-9)
    crps = torch.tensor(report["results"]["residual flow matching"]["scores"]["crps"])
    assert torch.isfinite(crps).all()
