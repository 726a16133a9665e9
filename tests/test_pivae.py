"""PI-VAE: MMD estimator, f by autograd through the operator, physics terms and schedule."""

from __future__ import annotations

import math

import pytest
import torch

from physgen.models.pivae import SDEPIVAE, mmd_rows, synthetic_latents


def _sde_model(decoder: str, **kw: object) -> SDEPIVAE:
    torch.manual_seed(0)
    grid = torch.linspace(-1, 1, 401)
    return SDEPIVAE(
        grid[[0, 400]].tolist(),
        grid[::50].tolist(),
        grid[::40].tolist(),
        width=16,
        depth=2,
        decoder=decoder,
        degree=10,
        **kw,
    ).double()


def test_mmd_rows_average_to_the_mmd_and_vanish_for_equal_batches() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 5, generator=g), torch.randn(40, 5, generator=g) + 0.5
    total = torch.cat([a, b])
    d2 = torch.cdist(total, total) ** 2
    base = d2.sum() / (80 * 79) / 4
    k = sum(torch.exp(-d2 / (base * 2**i)) for i in range(5))
    expected = (k[:40, :40] + k[40:, 40:] - k[:40, 40:] - k[40:, :40]).mean()
    rows = mmd_rows(a, b)
    assert rows.shape == (40,)
    torch.testing.assert_close(rows.mean(), expected)
    assert mmd_rows(a, b, kernel_mul=3.0, kernel_num=3).mean() > 0
    assert mmd_rows(a, a.clone()).abs().max() < 1e-6
    # A larger shift gives a larger discrepancy.
    assert mmd_rows(a, b + 1.0).mean() > rows.mean()


@pytest.mark.parametrize("decoder", ["mlp", "chebyshev"])
@pytest.mark.parametrize("k_transform", ["identity", "exp"])
def test_f_by_autograd_is_the_operator_applied_to_decoded_u_and_k(
    decoder: str, k_transform: str
) -> None:
    """f̂ = −c(k u')' from autograd matches the conservative finite difference, O(h²)."""
    model = _sde_model(decoder, k_transform=k_transform)
    z = torch.randn(3, 4, dtype=torch.float64)
    errors = []
    for n in (101, 201):
        x = torch.linspace(-1, 1, n, dtype=torch.float64)
        h = 2.0 / (n - 1)
        u, _, f = model.decode_fields(z, x)
        xh = x[:-1] + h / 2
        _, k_half, _ = model.decode_fields(z, xh, with_f=False)
        flux = k_half * (u[:, 1:] - u[:, :-1]) / h
        f_fd = -model.c * (flux[:, 1:] - flux[:, :-1]) / h
        errors.append(((f[:, 1:-1] - f_fd).abs().max() / f.abs().max()).item())
    assert errors[1] < 1e-2
    assert math.log2(errors[0] / errors[1]) > 1.8  # second order: the same operator


def test_sample_is_a_sensor_vector_and_fields_come_anywhere() -> None:
    model = _sde_model("chebyshev")
    assert model.sample(5).shape == (5, 2 + 9 + 11)
    fields = model.sample_fields(4, torch.linspace(-1, 1, 33, dtype=torch.float64))
    assert fields.shape == (4, 3, 33) and not fields.requires_grad
    x = model.sample(6).float()
    assert model.float().loss(x).shape == (6,)


def test_boundary_penalty_measures_the_dirichlet_violation() -> None:
    model = _sde_model("mlp", boundary_values=(0.5, -1.0))
    z = torch.randn(4, 4, dtype=torch.float64)
    ends = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    u, _, _ = model.decode_fields(z, ends, with_f=False)
    expected = 0.5 * ((u[:, 0] - 0.5) ** 2 + (u[:, 1] + 1.0) ** 2)
    torch.testing.assert_close(model.boundary_penalty(z), expected)


def test_two_stage_schedule_switches_physics_on_after_pretraining() -> None:
    model = _sde_model("chebyshev", alpha1=10.0, alpha2=10.0, pretrain_steps=2, n_syn=64)
    x = model.sample(8)
    plain = _sde_model("chebyshev", n_syn=64)
    plain.load_state_dict(model.state_dict())
    losses = []
    for _ in range(3):
        torch.manual_seed(5)
        with_physics = model.loss(x)
        torch.manual_seed(5)
        losses.append(torch.allclose(with_physics, plain.loss(x)))
    # Steps 1 and 2 are the VAE stage; from step 3 the physics terms add a positive amount.
    assert losses == [True, True, False]
    assert int(model.steps) == 3
    model.eval()
    before = int(model.steps)
    model.loss(x)
    assert int(model.steps) == before  # evaluation does not advance the schedule


def test_synthetic_latents_are_a_latin_hypercube_of_the_prior() -> None:
    z = synthetic_latents(200, 3, "lhs", seed=1).double()
    strata = torch.floor(0.5 * (1 + torch.erf(z / math.sqrt(2))) * 200).long()
    for j in range(3):
        assert torch.equal(strata[:, j].sort().values, torch.arange(200))
    normal = synthetic_latents(200, 3, "normal", seed=1).double()
    assert not torch.equal(
        torch.floor(0.5 * (1 + torch.erf(normal[:, 0] / math.sqrt(2))) * 200).long().sort().values,
        torch.arange(200),
    )
    with pytest.raises(ValueError, match="syn_sampling"):
        synthetic_latents(4, 2, "sobol")


def test_zhu_pivae_physics_is_zero_on_exact_fields_and_enters_after_pretraining() -> None:
    from physgen.models.pivae import PIVAE
    from physgen.problem import load

    problem = load("sde1d", n=33)
    fields = problem.to_tensor(problem.generate(8, seed=1)).float()  # (B, 3, 33)
    mean = fields.mean(dim=(0, 2))
    std = fields.std(dim=(0, 2))
    torch.manual_seed(0)
    model = PIVAE(
        (3, 33),
        problem="sde1d",
        problem_params={"n": 33},
        channel_mean=mean.tolist(),
        channel_std=std.tolist(),
        latent_dim=3,
        hidden=(32,),
        alpha1=1.0,
        alpha2=1.0,
        n_syn=16,
        pretrain_steps=1,
    )
    normalised = (fields - mean[:, None]) / std[:, None]
    torch.testing.assert_close(model.physical(normalised), fields, rtol=1e-5, atol=1e-5)
    assert model.physics_loss(normalised.double()).max() < 1e-8  # float32 data: round-off
    assert torch.all(model.physics_loss(normalised * 1.05) > 1e-4)
    # The LHS synthetic set covers the prior: one point per stratum.
    strata = torch.floor(0.5 * (1 + torch.erf(model.z_syn.double() / math.sqrt(2))) * 16)
    assert torch.equal(strata[:, 0].sort().values.long(), torch.arange(16))
    # Stage 1 (one step) is the plain negative ELBO; stage 2 adds the physics terms.
    torch.manual_seed(2)
    stage1 = model.loss(normalised)
    torch.manual_seed(2)
    rec, kl, _ = model._terms(normalised, None)
    torch.testing.assert_close(stage1, -(rec - kl))
    torch.manual_seed(2)
    stage2 = model.loss(normalised)
    assert torch.all(stage2 > stage1)
    with pytest.raises(ValueError, match="does not match problem"):
        PIVAE((3, 20), problem="sde1d", problem_params={"n": 33})
