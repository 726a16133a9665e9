"""Langevin dynamics against a Gaussian energy, and the EBM's contrastive-divergence machinery."""

from __future__ import annotations

import pytest
import torch

from physgen.models.ebm import EBM, langevin_dynamics
from physgen.training import fit

MEAN = torch.tensor([1.0, -2.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=torch.float64)
PRECISION = torch.linalg.inv(COV)


def quadratic_energy(x: torch.Tensor) -> torch.Tensor:
    d = x - MEAN
    return 0.5 * ((d @ PRECISION) * d).sum(1)


def ula_covariance(step: float) -> torch.Tensor:
    """ULA's exact stationary covariance: C = A C A + 2 step I with A = I - step P."""
    eye = torch.eye(2, dtype=torch.float64)
    A = eye - step * PRECISION
    return 2 * step * torch.linalg.inv(eye - A @ A)


@pytest.mark.parametrize("step", [0.02, 0.15])
def test_langevin_on_a_quadratic_energy_has_the_right_mean_and_covariance(step: float) -> None:
    n = 10000
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    # P has eigenvalues 0.71 and 10: the slowest mode contracts by 1 - 0.71 step per step,
    # so 10 / (0.71 step) steps leave e^-10 of the start.
    n_steps = int(10 / (0.714 * step))
    x = langevin_dynamics(quadratic_energy, start, n_steps, step, generator=gen)
    mean, cov = x.mean(0), torch.cov(x.T)
    # ULA's mean is exact; the Monte-Carlo error of the mean is sqrt(diag(C) / n).
    assert torch.all((mean - MEAN).abs() < 5 * torch.sqrt(COV.diagonal() / n))
    # Sample-covariance entries have standard error sqrt((C_ii C_jj + C_ij^2) / n) <= 0.012.
    torch.testing.assert_close(cov, ula_covariance(step), rtol=0, atol=0.05)
    if step == 0.02:  # small step: the O(step) bias is below the Monte-Carlo error
        torch.testing.assert_close(cov, COV, rtol=0, atol=0.05)
    else:  # large step: the bias is real and predicted (the stiff direction's variance doubles)
        assert (cov - COV).abs().max() > 0.12


def test_langevin_leaves_energy_parameters_without_gradients() -> None:
    net = torch.nn.Linear(3, 1)
    langevin_dynamics(lambda x: net(x).squeeze(-1) ** 2, torch.randn(5, 3), 3, 0.1)
    assert net.weight.grad is None


def test_loss_is_contrastive_divergence_on_buffer_negatives() -> None:
    torch.manual_seed(0)
    model = EBM(sample_shape=[2], hidden=[16], buffer_size=32, langevin_steps=0, reg_weight=0.5)
    model.config  # noqa: B018 - the config must be JSON-able with noise_scale=None
    before = model.replay.clone()
    x = torch.randn(32, 2)
    torch.manual_seed(1)
    loss = model.loss(x)
    # With zero Langevin steps and no restarts the negatives are the buffer states themselves.
    torch.manual_seed(1)
    index = torch.randint(32, (32,))
    fresh = torch.rand(32) < 0.05
    negative = torch.where(fresh[:, None], model.replay[index], before[index])
    e_pos, e_neg = model.energy(x), model.energy(negative)
    expected = e_pos - e_neg + 0.5 * (e_pos**2 + e_neg**2)
    torch.testing.assert_close(loss[~fresh], expected[~fresh])
    assert loss.shape == (32,)


def test_negatives_are_written_back_to_the_replay_buffer() -> None:
    torch.manual_seed(0)
    model = EBM(sample_shape=[3], hidden=[8], buffer_size=16, langevin_steps=4)
    before = model.replay.clone()
    model.loss(torch.randn(64, 3))  # 64 draws from 16 slots: every slot is touched w.h.p.
    changed = (model.replay != before).any(dim=1)
    assert changed.float().mean() > 0.9


def test_log_prob_is_negative_energy_and_sample_shapes() -> None:
    model = EBM(sample_shape=[2, 3], hidden=[8], buffer_size=8, sample_steps=3)
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(model.log_prob(x), -model.energy(x))
    assert model.sample(5).shape == (5, 2, 3)
    assert model.sample(5, from_buffer=True, n_steps=1).shape == (5, 2, 3)
    with pytest.raises(ValueError, match="unconditional"):
        model.loss(x, torch.zeros(4, 1))
    with pytest.raises(ValueError, match="expected"):
        model.energy(torch.randn(4, 6))
    with pytest.raises(ValueError, match="buffer_size"):
        EBM(sample_shape=[2], buffer_size=0)


@pytest.mark.slow
def test_ebm_learns_a_gaussian() -> None:
    gen = torch.Generator().manual_seed(0)
    chol = torch.linalg.cholesky(COV).float()
    data = MEAN.float() + torch.randn(20_000, 2, generator=gen) @ chol.T
    torch.manual_seed(0)
    model = EBM(sample_shape=[2], hidden=[64, 64], langevin_steps=40, step_size=0.02)
    fit(model, data, steps=1500, batch_size=256, lr=1e-3, progress=False)
    samples = model.sample(4000, n_steps=800, generator=gen).double()
    print("mean", samples.mean(0).tolist(), "cov", torch.cov(samples.T).tolist())
    torch.testing.assert_close(samples.mean(0), MEAN, rtol=0, atol=0.15)
    torch.testing.assert_close(torch.cov(samples.T), COV, rtol=0, atol=0.15)
