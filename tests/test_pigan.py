"""PI-GAN: the autograd operator against analytic and finite-difference f, sensor-group critics."""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from physgen.models.pigan import PIGAN, elliptic_source
from physgen.paths import load_module_from_path
from physgen.problem import load

C = 0.1


def test_autograd_source_matches_the_analytic_operator() -> None:
    # u_b = a_b sin(pi x), k = exp(x / 2): f = -c (k' u' + k u'').
    a = torch.tensor([[0.5], [1.0], [-2.0]], dtype=torch.float64)
    x = torch.linspace(-1, 1, 33, dtype=torch.float64).expand(3, -1)
    u, k, f = elliptic_source(
        lambda s: a * torch.sin(math.pi * s), lambda s: torch.exp(s / 2), x, diffusion_scale=C
    )
    k_true = torch.exp(x / 2)
    u_x = a * math.pi * torch.cos(math.pi * x)
    u_xx = -a * math.pi**2 * torch.sin(math.pi * x)
    f_true = -C * (0.5 * k_true * u_x + k_true * u_xx)
    torch.testing.assert_close(k, k_true)
    torch.testing.assert_close(u, a * torch.sin(math.pi * x))
    torch.testing.assert_close(f, f_true, rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # derivatives are still taken, then detached
        _, _, f_no_grad = elliptic_source(
            lambda s: a * torch.sin(math.pi * s), lambda s: torch.exp(s / 2), x, C
        )
    assert not f_no_grad.requires_grad
    torch.testing.assert_close(f_no_grad, f_true, rtol=1e-12, atol=1e-12)


def test_generated_f_is_the_operator_of_generated_u_and_k() -> None:
    # The sde1d problem's own discrete residual (the conservative stencil its generator
    # solves) of the generated (k, u, f) vanishes at second order as the grid is refined.
    torch.manual_seed(0)
    model = PIGAN.for_shape((11,), latent_dim=3).double()
    z = torch.randn(4, 3, dtype=torch.float64)
    errors = []
    for n in (65, 129, 257):
        problem = load("sde1d", n=n)
        x = torch.as_tensor(problem.grid.coords(0))
        u, k, f = model.fields(z, x)
        residual = problem.residual(torch.stack([k, u, f], dim=1))  # (B, n - 2)
        errors.append(residual.abs().max().item())
    orders = [math.log2(e0 / e1) for e0, e1 in pairwise(errors)]
    assert errors[-1] < 1e-3 * f.abs().max().item()
    assert all(1.8 < p < 2.2 for p in orders), (errors, orders)


def test_sample_is_the_sensor_vector_of_sample_fields() -> None:
    torch.manual_seed(0)
    model = PIGAN(u_sensors=[-1, 1], k_sensors=[-0.5, 0, 0.5], f_sensors=[-0.2, 0.3])
    model = model.double()
    z = torch.randn(5, 4, dtype=torch.float64)
    vector = model.generate(z)
    u = model.sample_fields(5, torch.tensor([-1.0, 1.0]), z=z)[:, 0]
    k = model.sample_fields(5, torch.tensor([-0.5, 0.0, 0.5]), z=z)[:, 1]
    f = model.sample_fields(5, torch.tensor([-0.2, 0.3]), z=z)[:, 2]
    torch.testing.assert_close(vector, torch.cat([u, k, f], dim=1))
    assert model.sample(7).shape == (7, 7)


def test_each_sensor_group_has_its_own_critic_and_penalty() -> None:
    # Linear critics (no hidden layer) have constant gradients w_g, so the penalty is
    # sum_g (|w_g| - 1)^2, not (|[w_1, w_2]| - 1)^2 of one joint critic.
    model = PIGAN(
        u_sensors=[-1, 1],
        k_sensors=[-0.5, 0.5],
        f_sensors=[-0.3, 0.0, 0.3],
        critic_depth=0,
        groups=[["u", "k"], ["f"]],
    )
    w1, w2 = (net[0].weight.detach().flatten() for net in model.critic_net)
    assert w1.numel() == 4 and w2.numel() == 3
    real, fake = torch.randn(2, 6, 7)
    expected = (w1.norm() - 1) ** 2 + (w2.norm() - 1) ** 2
    torch.testing.assert_close(model.penalty(real, fake), expected.expand(6))
    # The f-critic sees only the f columns.
    x = torch.randn(3, 7)
    scores = model.critic_net[1](x[:, 4:]).squeeze(-1) + model.critic_net[0](x[:, :4]).squeeze(-1)
    torch.testing.assert_close(model.score(x), scores)


def test_pigan_losses_and_bad_settings() -> None:
    model = PIGAN.for_shape((11,))
    x = torch.randn(8, 11)
    assert model.discriminator_loss(x).shape == (8,)
    assert model.generator_loss(x).shape == (8,)
    assert model.n_critic == 5
    with pytest.raises(ValueError, match="groups"):
        PIGAN(u_sensors=[0], k_sensors=[0], f_sensors=[0], groups=[["u", "q"]])
    with pytest.raises(ValueError, match="k_transform"):
        PIGAN(u_sensors=[0], k_sensors=[0], f_sensors=[0], k_transform="softplus")
    with pytest.raises(ValueError, match="at least one sensor"):
        PIGAN(u_sensors=[], k_sensors=[0], f_sensors=[0])
    with pytest.raises(ValueError, match="at least 4"):
        PIGAN.for_shape((3,))
    positive = PIGAN.for_shape((11,), k_transform="exp")
    assert positive.sample_fields(4, torch.linspace(-1, 1, 9))[:, 1].min() > 0


def test_pigan_row_reports_the_study_metrics() -> None:
    path = Path(__file__).parents[1] / "studies" / "pivae_sde" / "pigan_row.py"
    study = load_module_from_path(path, "pivae_sde_pigan_row")
    row = study.pigan_row(
        n_data=16,
        steps=2,
        batch_size=8,
        n_eval=8,
        eval_points=26,
        width=8,
        critic_width=8,
        problem=load("sde1d", n=51),
    )
    for key in ("u_mean_err", "u_std_err", "k_mean_err", "k_std_err", "residual", "boundary"):
        assert math.isfinite(row[key]) and row[key] >= 0, key
    assert row["method"] == "PI-WGAN" and row["task"] == "forward"
