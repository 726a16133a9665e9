"""Emulation: leak-free pairs, exact rollouts of the reference solver, lead-time scores on AR(1)."""

from __future__ import annotations

import csv
import itertools
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
    Emulator,
    Regressor,
    SolverModel,
    TrajectoryPairs,
    climatology_model,
    correlation_horizon,
    lead_time_residuals,
    lead_time_scores,
    lead_time_spectrum_error,
    persistence_model,
    rollout,
    score_forecast,
    stability_horizon,
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


def _assert_ar1_closed_forms(
    scores: dict[str, list[float]], members: Tensor, truth: Tensor, s: Tensor
) -> None:
    """Per-lead scores of an AR(1) ensemble against their closed forms."""
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


def test_lead_time_scores_of_an_ar1_ensemble_match_the_closed_forms() -> None:
    scores, members, truth, s = _ar1_scores(sigma_model=0.5)
    _assert_ar1_closed_forms(scores, members, truth, s)


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
    targets = frames[:, :, 2:].transpose(1, 2).reshape(-1, 1, 8)
    climate = Emulator(climatology_model(targets, settings), settings)
    drawn = rollout(climate, init, 4, 3, seed=1)  # (2, 3, 4, 1, 8)
    known = {float(v) for v in frames[:, 0, 2:, 0].flatten()}  # the targets' labels
    # (labels up to 105 come back through the z-scoring within round-off of an integer)
    assert {round(float(v), 6) for v in drawn[..., 0, 0].flatten()} <= known
    assert len({round(float(v), 6) for v in drawn[..., 0, 0].flatten()}) > 1
    # The regressor is deterministic: a zero-spread ensemble of f_θ, and its loss is the MSE.
    reg = Regressor((1, 8), (2, 8), channels=[8, 8])
    x, cond = pairs.tensors()
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


def test_increment_pairs_target_the_change_over_the_newest_frame() -> None:
    n, c, t, k = 2, 2, 6, 2
    data = _labelled(n, c, t, (3,))
    data[1, :, 4] += 7.0  # one uneven step, so increments differ across pairs
    pairs = TrajectoryPairs(
        data, k, mean=[0.0] * c, scale=[1.0] * c, target="increment",
        increment_mean=[0.0] * c, increment_scale=[1.0] * c,
    )  # fmt: skip
    frame_pairs = TrajectoryPairs(data, k, mean=[0.0] * c, scale=[1.0] * c)
    x, cond = pairs.tensors()
    fx, fcond = frame_pairs.tensors()
    assert torch.equal(cond, fcond)  # the same history, no later frame
    for i in range(len(pairs)):
        s, j = (int(v) for v in pairs.index[i])
        torch.testing.assert_close(x[i], (data[s, :, j] - data[s, :, j - 1]).float())
    # Negative control: the frame target is not the increment where the frame is not 1.
    assert not torch.equal(x, fx)
    # Default statistics: the z-scoring of all frame differences.
    stats = TrajectoryPairs(data, k, target="increment").describe()
    diffs = data.diff(dim=2).transpose(1, 2).reshape(-1, c, 3)
    torch.testing.assert_close(
        torch.tensor(stats["increment_mean"], dtype=torch.float64), diffs.mean((0, 2))
    )
    with pytest.raises(ValueError, match="target must be 'frame' or 'increment'"):
        TrajectoryPairs(data, k, target="delta")


def test_rollout_of_the_exact_solver_on_increments_reproduces_the_trajectory() -> None:
    reference = load("burgers", n=32, t_end=0.1)
    frames = reference.to_tensor(reference.generate(2, seed=4))
    settings = TrajectoryPairs(frames, 2, target="increment").describe()
    emulator = Emulator(SolverModel(reference.advance, settings), settings)
    out = rollout(emulator, frames[:, :, :2].transpose(1, 2), frames.shape[2] - 2)
    truth = frames[:, :, 2:].transpose(1, 2)
    assert float((out[:, 0] - truth).abs().max()) < 1e-12 * float(truth.abs().max())


class _Walk(nn.Module):
    """u_{j+1} = u_j + ε: a model whose every step adds one noise draw (identity scaling)."""

    def sample(self, n: int, cond: Tensor) -> Tensor:
        return cond[:, -1:] + torch.randn_like(cond[:, -1:])


def test_noise_refreshes_replay_the_draws_between_refreshes() -> None:
    settings = {"history": 1, "sample_shape": [1, 4], "mean": [0.0], "scale": [1.0]}
    emulator = Emulator(_Walk(), settings)
    init = torch.zeros(2, 1, 1, 4, dtype=torch.float64)
    fresh = rollout(emulator, init, 6, 3, seed=5)
    assert torch.equal(rollout(emulator, init, 6, 3, seed=5, noise_refresh=1), fresh)
    for every in (2, 3, 0):
        out = rollout(emulator, init, 6, 3, seed=5, noise_refresh=every)
        steps = torch.cat([out[:, :, :1], out.diff(dim=2)], dim=2)  # the noise of each step
        starts = range(0, 6, every) if every else [0]
        blocks = [list(range(j, min(j + (every or 6), 6))) for j in starts]
        for block in blocks:
            for j in block[1:]:  # replayed: the same draw as at the block's refresh
                # (up to the round-off of differencing the float64 random walk)
                torch.testing.assert_close(
                    steps[:, :, j], steps[:, :, block[0]], rtol=0, atol=1e-12
                )
        for a, b in itertools.pairwise(blocks):  # a refresh draws anew
            assert not torch.allclose(steps[:, :, a[0]], steps[:, :, b[0]])
        # The first refresh is the default rollout's first step; the members still differ.
        assert torch.equal(steps[:, :, 0], fresh[:, :, 0])
        assert not torch.allclose(steps[:, 0], steps[:, 1])
    # Negative control: without replays consecutive steps differ.
    assert not torch.allclose(fresh[:, :, 1] - fresh[:, :, 0], fresh[:, :, 0])
    with pytest.raises(ValueError, match="noise_refresh must be >= 0"):
        rollout(emulator, init, 2, noise_refresh=-1)


@pytest.mark.parametrize(
    ("family", "options"),
    [("cvae", {"latent_dim": 4}), ("glow", {"hidden": 8, "levels": 2, "periodic": True})],
)
def test_cvae_and_glow_train_on_pairs_and_roll_out(family: str, options: dict) -> None:
    burgers = load("burgers", n=16, t_end=0.05)
    frames = burgers.to_tensor(burgers.generate(3, seed=0))  # (3, 1, 6, 16)
    pairs = TrajectoryPairs(frames, 2)
    emulator, result = train_emulator(
        pairs, family, steps=2, batch_size=8, model_options=options, progress=False
    )
    assert result.step == 2
    init = frames[:2, :, :2].transpose(1, 2)
    out = rollout(emulator, init, 3, 4, seed=0)
    assert out.shape == (2, 4, 3, 1, 16) and bool(torch.isfinite(out).all())
    assert float(out.std(1).max()) > 0  # members differ through the model's noise
    # Each case sees only its own history: changing case 1's initial frames leaves case 0's
    # members unchanged for the same seed (and does change case 1's: the negative control).
    changed = init.clone()
    changed[1] += 1.0
    again = rollout(emulator, changed, 3, 4, seed=0)
    torch.testing.assert_close(again[0], out[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(again[1], out[1])


def _white_ensemble(jump_at: int | None) -> tuple[Tensor, Tensor]:
    """Truth ``(16, 6, 64)`` and members ``(16, 4, 6, 64)`` of white noise; from lead index
    ``jump_at`` on the members' amplitude is 1000× the truth's, a spectrum error of
    log10(10⁶) = 6 (``None``: never)."""
    g = torch.Generator().manual_seed(7)
    truth = torch.randn(16, 6, 64, generator=g, dtype=torch.float64)
    members = torch.randn(16, 4, 6, 64, generator=g, dtype=torch.float64)
    if jump_at is not None:
        members[:, :, jump_at:] *= 1000.0
    return members, truth


def test_spectrum_error_and_its_floor_per_lead_time() -> None:
    members, truth = _white_ensemble(None)
    # A perfect ensemble (every member is its case's truth) compares the same cases with the
    # same half as the floor does: value = floor exactly.
    perfect = lead_time_spectrum_error(truth[:, None].expand(16, 3, 6, 64), truth, spatial_dims=1)
    np.testing.assert_allclose(perfect["value"], perfect["floor"], rtol=1e-12)
    assert min(perfect["floor"]) > 0 and min(perfect["floor_std"]) > 0
    # Members of the truth's distribution sit within a few floors; 30× the amplitude is
    # log10(900) = 2.95 away in every shell.
    same = lead_time_spectrum_error(members, truth, spatial_dims=1)
    assert max(v / f for v, f in zip(same["value"], same["floor"], strict=True)) < 3
    louder = lead_time_spectrum_error(30 * members, truth, spatial_dims=1)
    np.testing.assert_allclose(louder["value"], math.log10(900), atol=3 * max(same["value"]))
    with pytest.raises(ValueError, match="at least 4 cases"):
        lead_time_spectrum_error(members[:3], truth[:3], spatial_dims=1)


def test_stability_horizon_is_the_first_lead_beyond_ten_floors() -> None:
    times = [0.1 * (j + 1) for j in range(6)]
    members, truth = _white_ensemble(jump_at=3)
    crossing = lead_time_spectrum_error(members, truth, spatial_dims=1)
    # (the floor of 8 against 8 cases of white noise is ~0.25: 10 floors ~2.5 < 6)
    assert max(crossing["floor"]) < 0.4
    assert stability_horizon(crossing["value"], crossing["floor"], times) == times[3]
    # The control never leaves its floor: no horizon within the rollout.
    members, truth = _white_ensemble(jump_at=None)
    steady = lead_time_spectrum_error(members, truth, spatial_dims=1)
    assert stability_horizon(steady["value"], steady["floor"], times) == math.inf
    assert stability_horizon([1.0, 2.1, 5.0], [0.1, 0.2, 0.1], [1.0, 2.0, 3.0]) == 2.0
    assert stability_horizon([1.0, 2.0], [0.1, 0.2], [1.0, 2.0]) == math.inf  # = 10×: not above
    with pytest.raises(ValueError, match="2 errors, 1 floors"):
        stability_horizon([1.0, 2.0], [0.1], [1.0, 2.0])


def test_residual_per_lead_time_of_exact_and_wrong_rollouts() -> None:
    members, _ = _burgers_rollout(members=2, viscosity=0.1)  # (2, 2, 9, 1, 32)
    problem = load("burgers", n=32, t_end=0.1)
    reference = load("burgers", n=32, t_end=0.1)
    frames = reference.to_tensor(reference.generate(2, seed=4)).transpose(1, 2)  # (2, 11, ...)
    exact = lead_time_residuals(problem, members, frames[:, 1:])
    assert len(exact["value"]) == 9 and exact["relative"] is True
    # The solver's own rollout satisfies the one-step defect to round-off, as the data do.
    assert max(exact["value"]) < 1e-10 and max(exact["floor"]) < 1e-10
    wrong, _ = _burgers_rollout(members=2, viscosity=0.2)
    drift = lead_time_residuals(problem, wrong, frames[:, 1:])
    np.testing.assert_allclose(drift["floor"], exact["floor"], rtol=1e-12)
    assert min(drift["value"]) > 1e3 * max(exact["floor"])
    with pytest.raises(ValueError, match="truth must be"):
        lead_time_residuals(problem, members, frames[:, 2:])


def test_residual_per_lead_time_of_an_overshooting_rollout_is_one_half() -> None:
    r"""A rollout that takes twice each solver step, :math:`u_\tau = u + 2(Su - u)` with
    :math:`u = u_{\tau-1}`, has defect :math:`\|Su - u\|` over a change of
    :math:`2\|Su - u\|`: exactly 1/2 at every lead (float64 rounding of u against a step
    change ~1e-3 of it: 1e-9 relative is a wide margin)."""
    problem = load("burgers", n=32, t_end=0.1)
    truth = problem.to_tensor(problem.generate(2, seed=4)).transpose(1, 2)[:, :4]  # (2,4,1,32)

    def overshoot(factor: float) -> Tensor:
        frames, u = [], truth[:, 0]
        for _ in range(3):
            u = u + factor * (problem.advance(u) - u)
            frames.append(u)
        return torch.stack(frames, 1)[:, None].expand(2, 2, 3, 1, 32)

    over = lead_time_residuals(problem, overshoot(2.0), truth)
    np.testing.assert_allclose(over["value"], 0.5, rtol=1e-9)
    np.testing.assert_allclose(over["ratio"], np.divide(over["value"], over["floor"]), rtol=1e-12)
    # Negative control (the 1/2 is not built in): three times the step is 2 over 3.
    np.testing.assert_allclose(lead_time_residuals(problem, overshoot(3.0), truth)["value"],
                               2 / 3, rtol=1e-9)  # fmt: skip


def _trajectory_files(members: Tensor, truth: Tensor, start: Tensor, folder: Path):
    """A rollout file ``(sample, member, time, x)`` and its reference ``(sample, time, x)``
    (the start frame at t = 0, then the T lead times 0.1 apart)."""
    b, m, t, _, p = members.shape
    times = 0.1 * np.arange(t + 1)
    x = np.linspace(0, 1, p, endpoint=False)
    forecast = xr.Dataset(
        {"u": (("sample", "member", "time", "x"), members[:, :, :, 0].numpy())},
        coords={"sample": np.arange(b), "member": np.arange(m), "time": times[1:], "x": x},
    )
    path = torch.cat([start[:, None], truth], dim=1)[:, :, 0].numpy()
    reference = xr.Dataset(
        {"u": (("sample", "time", "x"), path)},
        coords={"sample": np.arange(b), "time": times, "x": x},
    )
    return (
        write_fields(forecast, folder / "forecast.nc"),
        write_fields(reference, folder / "truth.nc"),
    )


def test_evaluate_scores_an_ar1_ensemble_per_lead_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, members, truth, s = _ar1_scores(sigma_model=0.5)
    start = torch.zeros_like(truth[:, 0])
    forecast, reference = _trajectory_files(members, truth, start, tmp_path)
    out = tmp_path / "eval"
    assert main(["evaluate", str(forecast), "--ref", str(reference), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stability horizon" in printed and "lead_time" in printed
    report = json.loads((out / "metrics.json").read_text())
    assert report["mode"] == "lead_time"
    np.testing.assert_allclose(report["lead_time"], 0.1 * np.arange(1, 6), rtol=1e-12)
    entry = report["fields"]["u"]
    # The files hold float32: the scores are those of the stored values, and those match
    # the AR(1) closed forms.
    with open_fields(forecast) as f, open_fields(reference) as r:
        stored = torch.as_tensor(f["u"].values, dtype=torch.float64)[:, :, :, None]
        stored_truth = torch.as_tensor(r["u"].values[:, 1:], dtype=torch.float64)[:, :, None]
    expected = lead_time_scores(stored, stored_truth)
    for key in ("crps", "spread_skill", "rmse", "spread", "correlation"):
        np.testing.assert_allclose(entry[key], expected[key], rtol=1e-12)
    _assert_ar1_closed_forms(entry, stored, stored_truth, s)
    # Same-distribution members: the spectrum stays near its floor, no stability horizon.
    assert entry["stability_horizon"] is None  # JSON for "never" (inf)
    with open(out / "lead_times.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and rows[0]["field"] == "u"
    np.testing.assert_allclose([float(r["crps"]) for r in rows], entry["crps"], rtol=1e-12)
    assert (out / "lead_times.png").stat().st_size > 0


def test_train_roll_out_and_evaluate_from_the_cli(tmp_path: Path) -> None:
    heat = load("heat", n=8, t_end=0.05)
    train = write_fields(heat.generate(4, seed=0), tmp_path / "train.nc")
    test = write_fields(heat.generate(4, seed=1), tmp_path / "test.nc")
    _, result = train_emulator(
        TrajectoryPairs.from_file(train, 2), "flow-matching", steps=2, batch_size=8,
        model_options={"channels": [4, 4], "method": "euler", "steps": 2},
        checkpoint_dir=tmp_path / "run", progress=False,
    )  # fmt: skip
    forecast = tmp_path / "forecast.nc"
    argv = ["rollout", str(result.checkpoint), "--init", str(test), "--steps", "4"]
    argv += ["--members", "3", "--noise-refresh", "2", "--inflation", "0.8"]
    assert main([*argv, "--out", str(forecast)]) == 0
    out = tmp_path / "eval"
    argv = ["evaluate", str(forecast), "--ref", str(test), "--out", str(out), "--no-figures"]
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    # Frames 0 and 1 start the rollout: forecasts at t = 0.02 .. 0.05, lead times 0.01 .. 0.04.
    np.testing.assert_allclose(report["time"], [0.02, 0.03, 0.04, 0.05], rtol=1e-9)
    np.testing.assert_allclose(report["lead_time"], [0.01, 0.02, 0.03, 0.04], rtol=1e-9)
    with open_fields(forecast) as f, open_fields(test) as r:
        assert f.attrs["noise_refresh"] == 2 and f.attrs["inflation"] == 0.8
        direct = score_forecast(f, r)["fields"]["u"]
    entry = report["fields"]["u"]
    for key in ("crps", "spread_skill", "rmse"):
        np.testing.assert_allclose(entry[key], direct[key], rtol=1e-12)
    assert len(entry["spectrum_lsd"]["value"]) == 4 and min(entry["spectrum_lsd"]["floor"]) > 0
    # The heat problem has a solver: one relative one-step defect per lead time, against
    # the float32-stored data's own floor.
    residual = report["residual"]
    assert residual["problem"] == "heat" and len(residual["value"]) == 4
    assert all(f > 0 for f in residual["floor"]) and all(v > 0 for v in residual["value"])
    assert not (out / "lead_times.png").exists()


def test_inflation_scales_each_steps_spread_about_the_member_mean() -> None:
    settings = {"history": 1, "sample_shape": [1, 4], "mean": [0.0], "scale": [1.0]}
    emulator = Emulator(_Walk(), settings)
    init = torch.zeros(2, 1, 1, 4, dtype=torch.float64)
    plain = rollout(emulator, init, 1, 5, seed=3)
    half = rollout(emulator, init, 1, 5, seed=3, inflation=0.5)
    # One step from a shared start: the same draws, moved halfway to their mean.
    mean = plain.mean(1, keepdim=True)
    torch.testing.assert_close(half, mean + 0.5 * (plain - mean), rtol=0, atol=1e-14)
    torch.testing.assert_close(half.mean(1), plain.mean(1), rtol=0, atol=1e-14)
    # Deflation keeps shrinking the spread over later steps; λ = 1 is the plain rollout.
    many = rollout(emulator, init, 4, 5, seed=3, inflation=0.5)
    assert float(many.std(1).mean()) < float(rollout(emulator, init, 4, 5, seed=3).std(1).mean())
    assert torch.equal(
        rollout(emulator, init, 4, 5, seed=3, inflation=1.0), rollout(emulator, init, 4, 5, seed=3)
    )
    with pytest.raises(ValueError, match="inflation must be > 0"):
        rollout(emulator, init, 2, 2, inflation=0.0)


def test_evaluate_refuses_a_forecast_without_reference_trajectories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, members, truth, _ = _ar1_scores(sigma_model=0.5)
    forecast, reference = _trajectory_files(members, truth, truth[:, 0], tmp_path)
    with open_fields(reference) as ref:
        frame = ref.isel(time=0).drop_vars("time")
        snapshot = write_fields(frame.load(), tmp_path / "snapshot.nc")
    argv = ["evaluate", str(forecast), "--ref", str(snapshot), "--out", str(tmp_path / "e")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "need reference trajectories ('sample', 'time', 'x')" in err and "\n" not in err
    assert not (tmp_path / "e").exists()
