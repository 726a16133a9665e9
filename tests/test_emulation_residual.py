"""Residual (corrective) emulators: exact composition of mean and residual, residual targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from physgen.cli import main
from physgen.data import write_fields
from physgen.emulation import (
    Emulator,
    Regressor,
    ResidualModel,
    SolverModel,
    TrajectoryPairs,
    lead_time_scores,
    persistence_model,
    residual_targets,
    rollout,
    train_residual_emulator,
)
from physgen.problem import load


class _Zero(nn.Module):
    """A residual model that always draws r = 0."""

    def sample(self, n: int, cond: Tensor, **options: object) -> Tensor:
        return torch.zeros_like(cond[:, :1])


class _Correction(nn.Module):
    """The residual an exact solver leaves after ``mean``: (solver(c) − μ) / s, read from the
    condition [c, μ], times ``sign``."""

    def __init__(self, exact: SolverModel, scale: float, sign: float) -> None:
        super().__init__()
        self.exact, self.scale, self.sign = exact, scale, sign

    def sample(self, n: int, cond: Tensor, **options: object) -> Tensor:
        history, mu = cond[:, :-1], cond[:, -1:]
        return self.sign * (self.exact.sample(n, history) - mu) / self.scale


def _burgers() -> tuple[Tensor, dict, SolverModel]:
    """Two reference Burgers trajectories ``(B, 1, 11, 32)``, increment settings, the solver."""
    reference = load("burgers", n=32, t_end=0.1)
    frames = reference.to_tensor(reference.generate(2, seed=4))
    settings = TrajectoryPairs(frames, 2, target="increment").describe()
    return frames, settings, SolverModel(reference.advance, settings)


def _max_error(model: nn.Module, frames: Tensor, settings: dict, members: int = 1) -> float:
    """Largest error of a rollout of ``model`` against the reference, relative to max |u|."""
    out = rollout(Emulator(model, settings), frames[:, :, :2].transpose(1, 2), 9, members)
    truth = frames[:, :, 2:].transpose(1, 2)
    return float((out - truth[:, None]).abs().max()) / float(truth.abs().max())


def test_residual_rollout_of_an_exact_mean_and_a_zero_residual_is_the_trajectory() -> None:
    frames, settings, exact = _burgers()
    zero = ResidualModel(exact, _Zero(), [0.37])
    # ETDRK4 in float64 on both sides: the trajectories agree to round-off, every member.
    assert _max_error(zero, frames, settings, members=2) < 1e-12
    init = frames[:, :, :2].transpose(1, 2)
    ens = rollout(Emulator(zero, settings), init, 9, 3)
    assert max(lead_time_scores(ens, frames[:, :, 2:].transpose(1, 2))["spread"]) == 0.0


def test_residual_model_adds_the_scaled_residual_to_the_mean() -> None:
    # Mean: persistence; residual: the exact solver's correction to it, scaled by s. The sum
    # μ + s·r is the solver's step, so the rollout is the trajectory; the same correction
    # with the wrong sign (the negative control) leaves it at once.
    frames, settings, exact = _burgers()
    still = persistence_model(settings)
    right = ResidualModel(still, _Correction(exact, 0.37, 1.0), [0.37])
    assert _max_error(right, frames, settings) < 1e-12
    wrong = ResidualModel(still, _Correction(exact, 0.37, -1.0), [0.37])
    assert _max_error(wrong, frames, settings) > 1e-3
    # Without the mean as a condition the residual model sees the history only.
    blind = ResidualModel(still, _Zero(), [1.0], condition_on_mean=False)
    assert _max_error(blind, frames, settings) > 1e-3  # persistence: not the trajectory
    with pytest.raises(ValueError, match="one condition per sample"):
        right.sample(3, None)


def test_residual_targets_are_the_target_minus_the_mean_pair_by_pair() -> None:
    n, c, t, k = 2, 1, 6, 2
    s = torch.arange(n, dtype=torch.float64).reshape(n, 1, 1, 1)
    j = torch.arange(t, dtype=torch.float64).reshape(1, 1, t, 1)
    data = (100 * s + j * j).expand(n, c, t, 3).clone()  # frame j of sample s: 100 s + j²
    data[1, :, 4] += 7.0  # an uneven step
    pairs = TrajectoryPairs(data, k, mean=[0.0], scale=[1.0])  # identity scaling
    mean = persistence_model(pairs.describe())  # μ(c_i) = u_{j−1}
    r, cond_r, scale = residual_targets(pairs, mean, batch_size=3)
    x, cond = pairs.tensors()
    diffs = torch.stack([data[a, :, b] - data[a, :, b - 1] for a, b in pairs.index.tolist()])
    # s is the RMS of the residuals u_j − u_{j−1} over all pairs and points.
    assert scale == pytest.approx([float(diffs.pow(2).mean().sqrt())], rel=1e-12)
    for i, (a, b) in enumerate(pairs.index.tolist()):
        expected = (data[a, :, b] - data[a, :, b - 1]) / scale[0]
        torch.testing.assert_close(r[i], expected.float())
        # The condition is the history, then the mean: frame j−1 of the same sample.
        torch.testing.assert_close(cond_r[i, : k * c], cond[i])
        torch.testing.assert_close(cond_r[i, k * c :], data[a, :, b - 1].float())
    # Negative control: the wrong-sign residual μ − x is not the target.
    assert not torch.allclose(r, (cond_r[:, k * c :] - x) / scale[0])
    r2, cond2, _ = residual_targets(pairs, mean, condition_on_mean=False)
    assert torch.equal(r2, r) and torch.equal(cond2, cond)


def test_train_a_residual_flow_matching_emulator_on_a_regressor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames, _, _ = _burgers()
    pairs = TrajectoryPairs(frames, 2, target="increment")
    torch.manual_seed(0)
    regressor = Regressor((1, 32), (2, 32), channels=[4, 8], periodic=True)
    emulator, result = train_residual_emulator(
        pairs, regressor, "flow-matching", steps=2, batch_size=8, device="cpu",
        progress=False, checkpoint_dir=tmp_path / "run",
        model_options={"channels": [4, 8], "blocks": 1, "periodic": True},
        sample_options={"method": "euler", "steps": 2},
    )  # fmt: skip
    model = emulator.model
    assert model.mean is regressor and result.model.cond_shape == (3, 32)
    # Each draw is the regressor's prediction plus s times the residual model's draw.
    _, cond = pairs.tensors()
    torch.manual_seed(5)
    draws = model.sample(4, cond[:4], method="euler", steps=2)
    torch.manual_seed(5)
    mu = regressor.sample(4, cond[:4])
    residual = model.residual.sample(4, torch.cat([cond[:4], mu], 1), method="euler", steps=2)
    torch.testing.assert_close(draws, mu + model.scale.float() * residual)
    ens = rollout(emulator, frames[:, :, :2].transpose(1, 2), 3, 3)
    assert ens.shape == (2, 3, 3, 1, 32) and torch.isfinite(ens).all()
    assert float(ens.std(1).amax()) > 0  # the spread comes from the residual model
    # The checkpoint holds the residual model only: the rollout CLI refuses it.
    assert result.checkpoint is not None
    init = write_fields(load("burgers", n=32, t_end=0.02).generate(1, seed=0), tmp_path / "i.nc")
    argv = ["rollout", str(result.checkpoint), "--init", str(init), "--steps", "1"]
    assert main([*argv, "--out", str(tmp_path / "x.nc")]) == 1
    assert "the residual model of a residual emulator" in capsys.readouterr().err


def test_rollout_residuals_of_an_exact_solver_vanish() -> None:
    # The solver rolled n steps from the true frames reproduces them, so the history the
    # residual model is conditioned on is the true one and the residual is round-off.
    frames, settings, exact = _burgers()
    pairs = TrajectoryPairs(frames, 2, target="increment")
    _, cond_r, scale = residual_targets(pairs, exact, rollout_residuals=3)
    _, cond = pairs.tensors()
    torch.testing.assert_close(cond_r[:, :2], cond)
    assert scale[0] < 1e-10  # normalized units: the increments are O(1)
    # Negative control: persistence as the mean leaves the true increments, O(1).
    _, _, still = residual_targets(pairs, persistence_model(settings), rollout_residuals=3)
    assert still[0] > 0.1


def test_rollout_residuals_accumulate_a_known_bias() -> None:
    # Frames u_j = g_s + j·a; the "mean" steps u → u + a + b. Rolled m = min(n, j − k) steps
    # from the true frames, its history is u_{j−1} + m·b and its prediction u_j + (m + 1)·b,
    # so the residual target is −(m + 1)·b; n = 0 gives −b at every pair.
    n_s, k, t, b = 2, 2, 7, 0.25
    g = torch.arange(n_s, dtype=torch.float64).reshape(n_s, 1, 1, 1) * 10.0
    a = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    j = torch.arange(t, dtype=torch.float64).reshape(1, 1, t, 1)
    data = g + j * a  # (N, 1, T, 3)
    identity = {"mean": [0.0], "scale": [1.0], "increment_mean": [0.0], "increment_scale": [1.0]}
    pairs = TrajectoryPairs(data, k, target="increment", **identity)
    biased = SolverModel(lambda u: u + a + b, pairs.describe())
    for n in (0, 1, 3):
        r, cond_r, scale = residual_targets(pairs, biased, rollout_residuals=n, batch_size=5)
        for i, (s, jj) in enumerate(pairs.index.tolist()):
            m = min(n, jj - k)
            expected = torch.full((1, 3), -(m + 1) * b, dtype=torch.float64)
            torch.testing.assert_close((r[i] * scale[0]).double(), expected, rtol=0, atol=1e-6)
            # The history is the rolled one: its newest frame carries m·b, the older (m−1)⁺·b.
            newest = data[s, :, jj - 1] + m * b
            older = data[s, :, jj - 2] + max(m - 1, 0) * b
            torch.testing.assert_close(cond_r[i, 1].double(), newest[0], rtol=0, atol=1e-5)
            torch.testing.assert_close(cond_r[i, 0].double(), older[0], rtol=0, atol=1e-5)
        if n == 0:  # the one-step value everywhere
            assert scale == pytest.approx([b], rel=1e-12)
        else:  # later pairs accumulate more: a larger scale than n = 0
            assert scale[0] > b * 1.5
    with pytest.raises(ValueError, match="rollout_residuals must be >= 0"):
        residual_targets(pairs, biased, rollout_residuals=-1)
