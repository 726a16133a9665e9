"""PI-VAE: MMD estimator, f by autograd through the operator, physics terms and schedule."""

from __future__ import annotations

import math

import pytest
import torch

from physgen.models.pivae import mmd_rows, synthetic_latents
from physgen.models.pivae_sde import SDEPIVAE
from physgen.problem import Problem


def _sde_model(decoder: str, model_class: type[SDEPIVAE] = SDEPIVAE, **kw: object) -> SDEPIVAE:
    torch.manual_seed(0)
    grid = torch.linspace(-1, 1, 401)
    return model_class(
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


def test_mmd_polynomial_kernel_matches_means_and_second_moments() -> None:
    """The degree-2 kernel adds 2/D‖Δμ‖² + ‖ΔM‖²_F/D² of the standardised readings."""
    g = torch.Generator().manual_seed(1)
    y = torch.randn(30, 6, generator=g, dtype=torch.float64) * 2.0 + 1.0
    y[:, 0] = 0.0  # a reading without spread (u at a wall) keeps its scale
    x = torch.randn(30, 6, generator=g, dtype=torch.float64)
    x[:, 2] = x[:, 2] + 0.8 * x[:, 3]  # a cross-correlation the data lack
    std = y.std(0)
    std[0] = 1.0
    a, b = (x - y.mean(0)) / std, (y - y.mean(0)) / std
    d = x.shape[1]
    m_a, m_b = a.T @ a / len(a), b.T @ b / len(b)
    expected = 2 / d * (a.mean(0) - b.mean(0)).square().sum() + (m_a - m_b).square().sum() / d**2
    added = mmd_rows(x, y, poly_weight=3.0).mean() - mmd_rows(x, y).mean()
    torch.testing.assert_close(added, 3.0 * expected)
    assert mmd_rows(y, y.clone(), poly_weight=3.0).abs().max() < 1e-9


@pytest.mark.parametrize("form", ["u", "flux"])
@pytest.mark.parametrize("decoder", ["mlp", "chebyshev"])
@pytest.mark.parametrize("k_transform", ["identity", "exp"])
def test_f_by_autograd_is_the_operator_applied_to_decoded_u_and_k(
    decoder: str, k_transform: str, form: str
) -> None:
    """f̂ = −c(k u')' from autograd matches the conservative finite difference, O(h²).

    In flux form u is the quadrature of q/k and f̂ = −c q', so this checks both halves.
    """
    if form == "flux" and k_transform == "identity":
        with pytest.raises(ValueError, match="needs k > 0"):
            _sde_model(decoder, k_transform=k_transform, form=form)
        return
    model = _sde_model(decoder, k_transform=k_transform, form=form)
    z = torch.randn(3, 4, dtype=torch.float64)
    errors = []
    for n in (201, 401):
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


@pytest.mark.parametrize("form", ["u", "flux"])
def test_sample_is_a_sensor_vector_and_fields_come_anywhere(form: str) -> None:
    model = _sde_model("chebyshev", form=form, k_transform="exp")
    assert model.sample(5).shape == (5, 2 + 9 + 11)
    fields = model.sample_fields(4, torch.linspace(-1, 1, 33, dtype=torch.float64))
    assert fields.shape == (4, 3, 33) and not fields.requires_grad
    x = model.sample(6).float()
    assert model.float().loss(x).shape == (6,)


@pytest.mark.parametrize("form", ["u", "flux"])
def test_boundary_penalty_measures_the_dirichlet_violation(form: str) -> None:
    model = _sde_model("mlp", boundary_values=(0.5, -1.0), form=form, k_transform="exp")
    z = torch.randn(4, 4, dtype=torch.float64)
    ends = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    u, _, _ = model.decode_fields(z, ends, with_f=False)
    expected = 0.5 * ((u[:, 0] - 0.5) ** 2 + (u[:, 1] + 1.0) ** 2)
    torch.testing.assert_close(model.boundary_penalty(z), expected)


def test_flux_form_integrates_q_over_k_from_the_left_boundary_value() -> None:
    """u(a) = g_a exactly, u' = q/k, and u(b) − g_a = ∫ q/k (closed form for constant k)."""
    model = _sde_model("chebyshev", form="flux", k_transform="exp", boundary_values=(0.5, 0.0))
    z = torch.randn(3, 4, dtype=torch.float64)
    x = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    u, k, _ = model.decode_fields(z, x)
    assert torch.equal(u[:, 0], torch.full_like(u[:, 0], 0.5))
    q = model.flux_decoder(x.expand(3, -1), z)
    h = float(x[1] - x[0])
    # Fourth-order central difference: truncation h⁴·|u⁽⁵⁾|/30 ≲ 1e-8 for these fields.
    slope = (u[:, :-4] - 8 * u[:, 1:-3] + 8 * u[:, 3:-1] - u[:, 4:]) / (12 * h)
    torch.testing.assert_close(slope, (q / k)[:, 2:-2], rtol=0, atol=1e-7)
    # With k ≡ 1 and q linear in x the integral is a closed-form quadratic.
    for param in model.k_decoder.parameters():
        torch.nn.init.zeros_(param)
    with torch.no_grad():
        for param in model.flux_decoder.parameters():
            param.zero_()
        model.flux_decoder.coef[-1].bias[1] = 2.0  # q = 2·damping[1]·x
    q1 = 2.0 * float(model.flux_decoder.damping[1])
    u, k, f = model.decode_fields(z, x)
    torch.testing.assert_close(k, torch.ones_like(k))
    torch.testing.assert_close(u, (0.5 + 0.5 * q1 * (x**2 - 1)).expand(3, -1))
    torch.testing.assert_close(f, torch.full_like(f, -model.c * q1))
    with pytest.raises(ValueError, match="form must be"):
        _sde_model("mlp", form="potential")


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


def test_log_k_option_compares_k_readings_on_the_log_scale() -> None:
    model = _sde_model("chebyshev", k_transform="exp", mmd_k="log", kernel_num=3)
    x = model.sample(6)
    torch.manual_seed(7)
    loss = model.loss(x)
    torch.manual_seed(7)
    mu, logvar = model.encode(x)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    recon = model.sensors(z)

    def logk(v: torch.Tensor) -> torch.Tensor:
        return torch.cat([v[:, :2], v[:, 2:11].log(), v[:, 11:]], dim=1)

    expected = mmd_rows(logk(recon), logk(x), kernel_num=3) + mmd_rows(
        z, torch.randn_like(z), kernel_num=3
    )
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="positive k"):
        model.loss(torch.cat([x[:, :2], -x[:, 2:11], x[:, 11:]], dim=1))


def test_flux_form_caches_the_training_integrals_without_changing_them() -> None:
    """Sensor and wall integrals come from a per-device cache and equal the uncached ones."""
    model = _sde_model("chebyshev", form="flux", k_transform="exp")
    z = torch.randn(5, 4, dtype=torch.float64)
    sensors = model.sensors(z)
    ends = torch.tensor(model.domain, dtype=torch.float64)
    assert set(model._integrals) == {(model.u_points, "cpu")}  # the u sensors, this device
    model.boundary_penalty(z)
    assert (model.domain, "cpu") in model._integrals  # the walls (here also the u sensors)
    assert torch.equal(sensors[:, : model.n_u], model._u(model.u_coords, z))
    assert torch.equal(model._u(ends, z, model.domain), model._u(ends, z))


def test_exact_boundary_shifts_the_flux_so_both_walls_hold_and_f_is_unchanged() -> None:
    """u(a) = g_a and u(b) = g_b to rounding; u' = (q − C)/k; f̂ equals the soft form's."""
    options = {"form": "flux", "k_transform": "exp", "boundary_values": (0.5, -0.25)}
    exact = _sde_model("chebyshev", exact_boundary=True, **options)
    soft = _sde_model("chebyshev", **options)
    soft.load_state_dict(exact.state_dict())
    z = torch.randn(4, 4, dtype=torch.float64)
    x = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    with torch.no_grad():
        u, k, f = exact.decode_fields(z, x)
        u_soft, k_soft, f_soft = soft.decode_fields(z, x)
        q = exact.flux_decoder(x.expand(4, -1), z)
    torch.testing.assert_close(u[:, 0], torch.full_like(u[:, 0], 0.5), rtol=0, atol=1e-13)
    torch.testing.assert_close(u[:, -1], torch.full_like(u[:, -1], -0.25), rtol=0, atol=1e-13)
    assert float(exact.boundary_penalty(z).detach().max()) < 1e-25
    assert float((u_soft[:, -1] + 0.25).abs().min()) > 1e-3  # the soft form misses u(b)
    torch.testing.assert_close(f, f_soft, rtol=0, atol=0)
    torch.testing.assert_close(k, k_soft, rtol=0, atol=0)
    # u' = (q − C)/k with one constant C per sample: (q − k u') is constant in x.
    h = float(x[1] - x[0])
    slope = (u[:, :-4] - 8 * u[:, 1:-3] + 8 * u[:, 3:-1] - u[:, 4:]) / (12 * h)
    shift = q[:, 2:-2] - k[:, 2:-2] * slope
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="exact_boundary"):
        _sde_model("chebyshev", exact_boundary=True)


class _KnownDecoder:
    """A stand-in for a trained ``SDEPIVAE`` whose decodings have known statistics.

    With ``ξ = z₀``, ``η = z₁`` (the evaluation's standard-normal latents):
    ``u = 1.1 φ + β + b_u ξ sin(2π(x+1))``, ``k = μ_k + 0.05 x + b_k η cos(πx/2)``, and
    ``f̂ = −(k u′)′/10`` by the problem's own stencil, so the decoded triple has zero
    residual and boundary value ``2|β|``.
    """

    latent_dim = 2
    beta, b_u, b_k = 0.01, 0.45, 0.08

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.u_coords = torch.zeros(1, dtype=torch.float64)

    def eval(self) -> _KnownDecoder:
        return self

    def sample_fields(self, n: int, coords: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        from physgen.operators import flux_divergence

        x = coords[None]
        xi, eta = z[:, :1], z[:, 1:2]
        u = 1.1 * (1 - x**2) + self.beta + self.b_u * xi * torch.sin(2 * math.pi * (x + 1))
        k = (
            1
            + 0.2 * torch.cos(math.pi * x)
            + 0.05 * x
            + self.b_k * eta * torch.cos(math.pi * x / 2)
        )
        f = -flux_divergence(k, u, self.problem.grid, mean="arithmetic") / 10
        return torch.stack([u, k, f], dim=1)


def test_evaluate_sde_reports_the_known_errors_of_u_and_k() -> None:
    """Each number of ``evaluate_sde`` against its closed form, within 4 sampling sds.

    Reference (whitened, so its moments are exact): ``u = φ + 0.3 ξ sin(π(x+1))``,
    ``k = μ_k + 0.1 η cos(πx/2)`` with ``φ = 1 − x²``, ``μ_k = 1 + 0.2 cos(πx)``. The decoder
    above shifts both means, and scales the spreads by 1.5 (u, with a different shape of the
    same norm) and 0.8 (k). Exact values on the evaluation nodes x_j:

    * ``u_mean_err = ‖0.1 φ + β‖ / ‖φ‖``, ``k_mean_err = ‖0.05 x‖ / ‖μ_k‖``;
    * ``u_std_err = |1.5 − 1| = 0.5``, ``k_std_err = |0.8 − 1| = 0.2`` (the total std
      ``|b| ‖ψ‖`` of the PI-VAE code);
    * the std-curve errors ``u_std_curve_err = ‖0.45 |ψ_u,gen| − 0.3 |ψ_u|‖ / ‖0.3 ψ_u‖``
      (not 0.5: the shapes differ) and ``k_std_curve_err = 0.2``;
    * ``residual = 0``, ``boundary = 2β``.

    The reference f is the decoder's own f̂ on the whitened latents, so ``f_std_curve_err`` is
    sampling error only: with f̂ bilinear in (ξ, η), a pointwise std moves by a relative
    ≤ √(2/N) from each set.

    Sampling error of N generated draws: a mean error moves by at most
    ``|b| ‖ψ‖ |ξ̄| / ‖μ_ref‖`` with sd ``|b| ‖ψ‖ / (√N ‖μ_ref‖)``; a std (total or pointwise)
    by a relative ``1/√(2N)``.
    """
    from physgen.metrics.sde_sensors import evaluate_sde
    from physgen.problem import load

    problem = load("sde1d", n=65)
    n_ref, n_eval, stride = 8000, 8000, 2
    x = torch.as_tensor(problem.grid.coords(0))
    g = torch.Generator().manual_seed(3)
    w = torch.randn(n_ref, 2, generator=g, dtype=torch.float64)
    w = (w - w.mean(0)) / w.std(0, correction=0)  # exact mean 0, population variance 1
    phi, mu_k = 1 - x**2, 1 + 0.2 * torch.cos(math.pi * x)
    psi_u, psi_ug = torch.sin(math.pi * (x + 1)), torch.sin(2 * math.pi * (x + 1))
    psi_k = torch.cos(math.pi * x / 2)
    u_ref = phi + 0.3 * w[:, :1] * psi_u
    k_ref = mu_k + 0.1 * w[:, 1:] * psi_k
    model = _KnownDecoder(problem)
    f_ref = model.sample_fields(n_ref, x, w)[:, 2]
    fields = torch.stack([k_ref, u_ref, f_ref], dim=1)  # (N, 3, n): k, u, f
    got = evaluate_sde(model, problem, fields, n_eval=n_eval, eval_points=33, seed=5)

    e = slice(None, None, stride)  # the evaluation nodes
    norm = torch.linalg.vector_norm
    b, beta = model, model.beta
    assert float(norm(psi_ug[e])) == pytest.approx(float(norm(psi_u[e])), rel=1e-12)
    exact = {
        "u_mean_err": float(norm(0.1 * phi[e] + beta) / norm(phi[e])),
        "k_mean_err": float(norm(0.05 * x[e]) / norm(mu_k[e])),
        "u_std_err": b.b_u / 0.3 - 1,
        "k_std_err": 1 - b.b_k / 0.1,
        "u_std_curve_err": float(
            norm(b.b_u * psi_ug[e].abs() - 0.3 * psi_u[e].abs()) / norm(0.3 * psi_u[e])
        ),
        "k_std_curve_err": 1 - b.b_k / 0.1,
        "f_std_curve_err": 0.0,
    }
    sd = {
        "u_mean_err": float(b.b_u * norm(psi_ug[e]) / norm(phi[e])) / math.sqrt(n_eval),
        "k_mean_err": float(b.b_k * norm(psi_k[e]) / norm(mu_k[e])) / math.sqrt(n_eval),
        "u_std_err": b.b_u / 0.3 / math.sqrt(2 * n_eval),
        "k_std_err": b.b_k / 0.1 / math.sqrt(2 * n_eval),
        "u_std_curve_err": b.b_u / 0.3 / math.sqrt(2 * n_eval),
        "k_std_curve_err": b.b_k / 0.1 / math.sqrt(2 * n_eval),
        "f_std_curve_err": 2 * math.sqrt(2 / n_eval),  # both sets, f̂ bilinear in (ξ, η)
    }
    for name, value in exact.items():
        assert abs(got[name] - value) < 4 * sd[name], (name, got[name], value, sd[name])
    assert got["residual"] < 1e-12
    assert got["boundary"] == pytest.approx(2 * beta, rel=1e-9)
    # The tolerances separate u from k and the total std from the pointwise-std curve error.
    assert abs(exact["u_std_err"] - exact["k_std_err"]) > 8 * sd["u_std_err"]
    assert abs(exact["u_mean_err"] - exact["k_mean_err"]) > 8 * sd["u_mean_err"]
    assert abs(exact["u_std_curve_err"] - exact["u_std_err"]) > 8 * sd["u_std_err"]
