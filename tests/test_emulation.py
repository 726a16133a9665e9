"""Emulation: leak-free pairs, exact rollouts of the reference solver, lead-time scores on AR(1)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import Tensor, nn

from physgen.cli import main
from physgen.data import open_fields, write_fields
from physgen.emulation import (
    ClimatologyModel,
    Emulator,
    Regressor,
    SolverModel,
    TrajectoryPairs,
    correlation_horizon,
    lead_time_scores,
    persistence_model,
    rollout,
    score_forecast,
    train_emulator,
)
from physgen.problem import load


def _labelled(n: int, c: int, t: int, grid: tuple[int, ...]) -> Tensor:
    """Trajectories whose every value encodes (sample, channel, frame): 100 s + 10 c + j."""
    s = torch.arange(n, dtype=torch.float64).reshape(n, 1, 1)
    ch = torch.arange(c, dtype=torch.float64).reshape(1, c, 1)
    j = torch.arange(t, dtype=torch.float64).reshape(1, 1, t)
    label = 100 * s + 10 * ch + j
    return label.reshape(n, c, t, *([1] * len(grid))).expand(n, c, t, *grid).clone()


def test_pairs_condition_on_the_k_previous_frames_only() -> None:
    n, c, t, k = 3, 2, 7, 3
    data = _labelled(n, c, t, (4, 5))
    pairs = TrajectoryPairs(data, k, mean=[0.0] * c, scale=[1.0] * c)  # identity scaling
    assert len(pairs) == n * (t - k)
    assert pairs.cond_shape == (k * c, 4, 5) and pairs.sample_shape == (c, 4, 5)
    seen = set()
    for i in range(len(pairs)):
        s, j = (int(v) for v in pairs.index[i])
        past = pairs.history_frames(i)
        assert past == list(range(j - k, j)) and max(past) < j and min(past) >= 0
        x, cond = pairs[i]
        # The target is frame j of sample s; the condition holds frames j−k..j−1, oldest
        # first, channel by channel within a frame.
        assert torch.equal(x[:, 0, 0], torch.tensor([100.0 * s + 10 * ch + j for ch in range(c)]))
        expected = [100.0 * s + 10 * ch + f for f in past for ch in range(c)]
        assert torch.equal(cond[:, 0, 0], torch.tensor(expected))
        seen.add((s, j))
    assert seen == {(s, j) for s in range(n) for j in range(k, t)}
    # Changing the target and every later frame leaves every condition up to it unchanged.
    for i in range(len(pairs)):
        s, j = (int(v) for v in pairs.index[i])
        future = data.clone()
        future[s, :, j:] = -1.0
        _, cond = TrajectoryPairs(future, k, mean=[0.0] * c, scale=[1.0] * c)[i]
        assert torch.equal(cond, pairs[i][1])
    # Negative control: changing the newest history frame does change the condition.
    past = data.clone()
    past[0, :, k - 1] = -1.0
    assert not torch.equal(
        TrajectoryPairs(past, k, mean=[0.0] * c, scale=[1.0] * c)[0][1], pairs[0][1]
    )


def test_pairs_from_a_file_with_a_parameter_channel(tmp_path: Path) -> None:
    heat = load("heat", n=8, t_end=0.05)
    ds = heat.generate(3, seed=0)
    ds["kappa"] = (("sample",), np.array([0.01, 0.02, 0.03]), {"long_name": "diffusivity"})
    path = write_fields(ds, tmp_path / "heat.nc")
    pairs = TrajectoryPairs.from_file(path, 2, param_fields=["kappa"])
    assert pairs.cond_shape == (3, 8, 8) and len(pairs) == 3 * 4
    x, cond = pairs.tensors()
    # The parameter plane is constant and z-scored across samples: -1.22, 0, 1.22.
    planes = cond[:, 2].flatten(1)
    assert torch.equal(planes.amin(1), planes.amax(1))
    assert sorted({round(float(v), 2) for v in planes[:, 0]}) == [-1.22, 0.0, 1.22]
    # The frames are z-scored with the file's statistics.
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 0.2
    settings = pairs.describe()
    assert settings["fields"] == ["u"] and settings["param_fields"] == ["kappa"]
    json.dumps(settings)  # checkpoint-safe
    with pytest.raises(ValueError, match="has dims \\('sample',\\); emulation needs"):
        TrajectoryPairs.from_file(path, 2, fields=["kappa"])


def _burgers_rollout(members: int, viscosity: float) -> tuple[Tensor, Tensor]:
    """Rollout of the solver of a Burgers problem with ``viscosity`` from reference frames."""
    reference = load("burgers", n=32, t_end=0.1)
    frames = reference.to_tensor(reference.generate(2, seed=4))  # (B, 1, 11, 32)
    pairs = TrajectoryPairs(frames, 2)
    solver = load("burgers", n=32, t_end=0.1, viscosity=viscosity)
    emulator = Emulator(SolverModel(solver.advance, pairs.describe()), pairs.describe())
    init = frames[:, :, :2].transpose(1, 2)
    out = rollout(emulator, init, frames.shape[2] - 2, members, batch_size=3)
    return out, frames[:, :, 2:].transpose(1, 2)


def test_rollout_of_the_exact_solver_reproduces_the_reference_trajectory() -> None:
    out, truth = _burgers_rollout(members=1, viscosity=0.1)
    assert out.shape == (2, 1, 9, 1, 32)
    scale = float(truth.abs().max())
    # ETDRK4 in float64 on both sides: the trajectories agree to round-off.
    assert float((out[:, 0] - truth).abs().max()) < 1e-12 * scale
    scores = lead_time_scores(out, truth)
    assert scores["spread"] == [0.0] * 9 and max(scores["rmse"]) < 1e-12 * scale
    # Several members of a deterministic model: no spread at all.
    many, _ = _burgers_rollout(members=3, viscosity=0.1)
    assert torch.equal(many[:, 0], many[:, 1]) and torch.equal(many[:, 1], many[:, 2])
    assert max(lead_time_scores(many, truth)["spread"]) == 0.0


def test_rollout_of_a_wrong_solver_drifts_away() -> None:
    out, truth = _burgers_rollout(members=1, viscosity=0.2)
    errors = lead_time_scores(out, truth)["rmse"]
    assert errors[0] > 1e-6 * float(truth.abs().max()) and errors[-1] > errors[0]


class _AR1(nn.Module):
    """u_{j+1} = φ u_j + σ ε as a next-frame "model" (identity normalization)."""

    def __init__(self, phi: float, sigma: float) -> None:
        super().__init__()
        self.phi, self.sigma = phi, sigma

    def sample(self, n: int, cond: Tensor) -> Tensor:
        return self.phi * cond[:, -1:] + self.sigma * torch.randn_like(cond[:, -1:])


def _ar1_scores(sigma_model: float) -> tuple[dict[str, list[float]], Tensor, Tensor, Tensor]:
    phi, sigma, b, m, points, steps = 0.8, 0.5, 4, 8, 2500, 5
    settings = {"history": 1, "sample_shape": [1, points], "mean": [0.0], "scale": [1.0]}
    x0 = torch.randn(b, 1, 1, points, generator=torch.Generator().manual_seed(1)).double()
    members = rollout(Emulator(_AR1(phi, sigma_model), settings), x0, steps, m, seed=2)
    truth = rollout(Emulator(_AR1(phi, sigma), settings), x0, steps, 1, seed=3)[:, 0]
    lead = torch.arange(1, steps + 1, dtype=torch.float64)
    s = sigma * torch.sqrt((1 - phi ** (2 * lead)) / (1 - phi**2))  # true std at each lead
    return lead_time_scores(members, truth), members, truth, s


def test_lead_time_scores_of_an_ar1_ensemble_match_the_closed_forms() -> None:
    scores, members, truth, s = _ar1_scores(sigma_model=0.5)
    m = members.shape[1]
    for tau in range(len(s)):
        xt, yt = members[:, :, tau].flatten(2), truth[:, tau].flatten(1)  # (B, M, P), (B, P)
        n = yt.numel()
        # Members and truth are iid N(φ^τ x0, s_τ²) per point: E CRPS = s/√π, E spread² = s²,
        # E (x̄ − y)² = s²(1 + 1/M). Tolerances: 4 standard errors of the per-point means.
        pair = (xt[:, :, None] - xt[:, None]).abs().sum((1, 2)) / (2 * m * (m - 1))
        crps_points = (xt - yt[:, None]).abs().mean(1) - pair
        assert abs(scores["crps"][tau] - s[tau] / math.sqrt(math.pi)) < 4 * float(
            crps_points.std() / math.sqrt(n)
        )
        var_points = xt.var(1, correction=1)
        spread2 = scores["spread"][tau] ** 2
        assert abs(spread2 - s[tau] ** 2) < 4 * float(var_points.std() / math.sqrt(n))
        err_points = (xt.mean(1) - yt).square()
        mse = scores["rmse"][tau] ** 2
        assert abs(mse - s[tau] ** 2 * (1 + 1 / m)) < 4 * float(err_points.std() / math.sqrt(n))
        # The corrected ratio of the two: 1 within the propagated relative errors.
        rel = 0.5 * math.hypot(
            float(var_points.std() / math.sqrt(n)) / spread2,
            float(err_points.std() / math.sqrt(n)) / mse,
        )
        assert abs(scores["spread_skill"][tau] - 1) < 4 * rel


def test_an_under_dispersed_ar1_ensemble_fails_the_closed_forms() -> None:
    scores, _, _, s = _ar1_scores(sigma_model=0.25)
    for tau in range(len(s)):
        assert scores["spread_skill"][tau] < 0.7
        assert scores["crps"][tau] > 1.05 * float(s[tau]) / math.sqrt(math.pi)


def test_correlation_horizon() -> None:
    assert correlation_horizon([0.9, 0.6, 0.4, 0.7], [1.0, 2.0, 3.0, 4.0]) == 3.0
    assert correlation_horizon([0.9, 0.6], [1.0, 2.0]) == math.inf


def test_train_a_conditional_emulator_and_roll_it_out_from_the_cli(tmp_path: Path) -> None:
    heat = load("heat", n=8, t_end=0.06)
    train = write_fields(heat.generate(4, seed=0), tmp_path / "train.nc")
    test = write_fields(heat.generate(2, seed=1), tmp_path / "test.nc")
    pairs = TrajectoryPairs.from_file(train, 2)
    emulator, result = train_emulator(
        pairs,
        "flow-matching",
        steps=3,
        batch_size=8,
        model_options={"channels": [8, 8], "method": "euler", "steps": 2},
        checkpoint_dir=tmp_path / "run",
        progress=False,
    )
    assert emulator.step(torch.zeros(3, 2, 1, 8, 8)).shape == (3, 1, 8, 8)
    out = tmp_path / "forecast.nc"
    argv = ["rollout", str(result.checkpoint), "--init", str(test), "--steps", "3"]
    assert main([*argv, "--members", "2", "--out", str(out), "--start", "1"]) == 0
    with open_fields(out) as ds:
        assert ds["u"].dims == ("sample", "member", "time", "x", "y")
        assert ds["u"].shape == (2, 2, 3, 8, 8)
        # Initial frames 1 and 2 (t = 0.01, 0.02): the forecast starts at t = 0.03.
        np.testing.assert_allclose(ds["time"].values, [0.03, 0.04, 0.05])
        assert ds.attrs["problem"] == "heat" and ds.attrs["history"] == 2
        assert bool(np.isfinite(ds["u"].values).all())
        with open_fields(test) as ref:
            report = score_forecast(ds, ref)  # the forecast frames are test frames 3..5
        assert report["time"] == pytest.approx([0.03, 0.04, 0.05])
        assert all(math.isfinite(v) for v in report["fields"]["u"]["crps"])


def test_rollout_cli_refuses_a_checkpoint_without_emulation_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from physgen.models import get_model_class
    from physgen.training import fit

    model = get_model_class("flow-matching").for_shape((2,))
    result = fit(
        model, torch.randn(16, 2), steps=1, batch_size=8, checkpoint_dir=tmp_path, progress=False
    )
    heat = load("heat", n=8, t_end=0.03)
    init = write_fields(heat.generate(1, seed=0), tmp_path / "init.nc")
    argv = ["rollout", str(result.checkpoint), "--init", str(init), "--steps", "2"]
    assert main([*argv, "--out", str(tmp_path / "x.nc")]) == 1
    assert "no 'emulation' metadata" in capsys.readouterr().err


def test_baselines_persistence_climatology_and_regressor() -> None:
    frames = _labelled(2, 1, 6, (8,))
    pairs = TrajectoryPairs(frames, 2)
    settings = pairs.describe()
    init = frames[:, :, :2].transpose(1, 2)
    # Persistence repeats the newest initial frame at every lead time, exactly.
    still = rollout(Emulator(persistence_model(settings), settings), init, 3, 2)
    assert torch.equal(still, init[:, None, 1:].expand(2, 2, 3, 1, 8))
    # Climatology draws training frames, whatever the history.
    x, _ = pairs.tensors()
    climate = Emulator(ClimatologyModel(x.double()), settings)
    drawn = rollout(climate, init, 4, 3, seed=1)  # (2, 3, 4, 1, 8)
    known = {float(v) for v in frames[:, 0, 2:, 0].flatten()}  # the targets' labels
    # (float32 pairs: labels up to 105 come back within 1e-5 of an integer)
    assert {round(float(v), 3) for v in drawn[..., 0, 0].flatten()} <= known
    # The regressor is deterministic: a zero-spread ensemble of f_θ, and its loss is the MSE.
    reg = Regressor((1, 8), (2, 8), channels=[8, 8])
    _, cond = pairs.tensors()
    first, second = reg.sample(len(cond), cond), reg.sample(len(cond), cond)
    assert torch.equal(first, second) and first.shape == (len(cond), 1, 8)
    torch.testing.assert_close(reg.loss(x, cond), (first - x).pow(2).flatten(1).mean(1))
    with pytest.raises(ValueError, match="one grid"):
        Regressor((1, 8), (2,))


def test_score_forecast_matches_frames_by_sample_and_time() -> None:
    heat = load("heat", n=8, t_end=0.05)
    ref = heat.generate(3, seed=0)  # frames at t = 0, 0.01, ..., 0.05
    u = ref["u"].transpose("sample", "time", "x", "y")
    # A forecast of samples 2 and 1 (file order differs) at t = 0.03..0.05, two members:
    # member 0 is the truth, member 1 the truth + 0.2.
    picked = u.sel(sample=[2, 1]).isel(time=slice(3, 6)).values
    members = np.stack([picked, picked + 0.2], axis=1)
    forecast = xr.Dataset(
        {"u": (("sample", "member", "time", "x", "y"), members)},
        coords={"sample": [2, 1], "member": [0, 1], "time": ref["time"].values[3:]},
        attrs={"fields": ["u"]},
    )
    report = score_forecast(forecast, ref)
    np.testing.assert_allclose(report["time"], [0.03, 0.04, 0.05])
    scores = report["fields"]["u"]
    # Fair CRPS of {y, y + c} at y: (0 + c)/2 − c/2 = 0; spread² = c²/2; |mean − y| = c/2.
    np.testing.assert_allclose(scores["crps"], 0.0, atol=1e-12)
    np.testing.assert_allclose(scores["spread"], 0.2 / math.sqrt(2), rtol=1e-9)
    np.testing.assert_allclose(scores["rmse"], 0.1, rtol=1e-9)
    # Negative control: the same forecast labelled one frame late is scored against other
    # frames and no longer matches.
    late = forecast.assign_coords(time=ref["time"].values[2:5])
    assert min(score_forecast(late, ref)["fields"]["u"]["rmse"]) > 0.1 + 1e-3
    with pytest.raises(ValueError, match="not all reference times"):
        score_forecast(forecast.assign_coords(time=[0.031, 0.04, 0.05]), ref)
