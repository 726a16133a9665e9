"""Diffusion model: parameterizations, exact-denoiser likelihood, guidance, physics term, U-Net."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gaussian_closed_form import GaussianData
from scipy.integrate import solve_ivp
from torch import Tensor, nn

from physgen.likelihood import solve_ode
from physgen.models.diffusion import Diffusion, dps_guidance
from physgen.nn import UNet
from physgen.sde import VPSDE
from physgen.utils import append_dims


class _Oracle(nn.Module):
    """The exact network output for Gaussian data, in any parameterization."""

    def __init__(self, data: GaussianData, prediction: str) -> None:
        super().__init__()
        self.data, self.prediction = data, prediction
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x_in: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        alpha, sigma = (append_dims(c, x_in.ndim) for c in self.data.sde.coefficients(t))
        r = (alpha**2 + sigma**2).sqrt()
        x = x_in * r
        eps = -sigma * self.data.score(x, t)
        x0 = (x - sigma * eps) / alpha
        return {"eps": eps, "x0": x0, "v": (alpha * eps - sigma * x0) / r}[self.prediction]


def _model_with_oracle(sde: str, prediction: str) -> tuple[Diffusion, GaussianData]:
    model = Diffusion((1, 2), sde=sde, prediction=prediction).double()
    data = GaussianData(
        torch.tensor([0.8, -1.2], dtype=torch.float64),
        torch.tensor([[0.5, 0.35], [0.35, 1.5]], dtype=torch.float64),
        model.sde,
        (1, 2),
    )
    model.net = _Oracle(data, prediction)
    return model, data


@pytest.mark.parametrize(("sde", "prediction"), [("vp", "eps"), ("ve", "x0"), ("subvp", "v")])
def test_every_parameterization_gives_the_exact_score_and_likelihood(
    sde: str, prediction: str, generator: torch.Generator
) -> None:
    model, data = _model_with_oracle(sde, prediction)
    x = data.sample(16, 0.3, generator)
    t = torch.full((16,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(model.score(x, t), data.score(x, t))
    x_eps = data.sample(16, model.eps, generator)
    with torch.no_grad():
        lp = model.log_prob(x_eps, rtol=1e-8, atol=1e-8)
    # The prior replaces the exact terminal marginal p_T at the ODE's end point z: the
    # likelihood is the analytic one up to exactly log N(z; prior) - log p_T(z).
    flow = model.sde.probability_flow(data.score)
    z, _ = solve_ode(flow.drift, x_eps, model.eps, model.sde.T, rtol=1e-10, atol=1e-10)
    mismatch = model.sde.prior_log_prob(z) - data.log_prob(z, model.sde.T)
    exact = data.log_prob(x_eps, model.eps)
    torch.testing.assert_close(lp - exact, mismatch, rtol=0, atol=1e-6)


def test_denoising_loss_is_minimal_at_the_exact_denoiser(generator: torch.Generator) -> None:
    """E‖ε̂ - ε‖² at the exact (posterior-mean) denoiser is below any perturbation of it."""
    model, data = _model_with_oracle("vp", "eps")
    x = data.sample(20000, 0.0, generator)
    torch.manual_seed(0)
    best = model.loss(x).mean()

    class Scaled(nn.Module):
        def __init__(self, inner: nn.Module, scale: float) -> None:
            super().__init__()
            self.inner, self.scale = inner, scale

        def forward(self, *args: Tensor) -> Tensor:
            return self.scale * self.inner(*args)

    oracle = model.net
    for scale in (0.9, 1.1):
        model.net = Scaled(oracle, scale)
        torch.manual_seed(0)
        assert model.loss(x).mean() > best


def test_physics_term_sees_the_denoised_estimate(generator: torch.Generator) -> None:
    seen: list[Tensor] = []

    def penalty(x0: Tensor) -> Tensor:
        seen.append(x0.detach().clone())
        return x0.pow(2).flatten(1).sum(1)

    model = Diffusion((1, 8), physics_weight=0.5, physics_penalty=penalty, channels=(8, 16))
    captured: list[tuple[Tensor, Tensor]] = []
    denoise = model.denoise

    def spy(x: Tensor, t: Tensor, cond: Tensor | None = None, keep: Tensor | None = None):
        out = denoise(x, t, cond, keep)
        captured.append((x.detach().clone(), out[1].detach().clone()))
        return out

    model.denoise = spy
    x = torch.randn(4, 1, 8, generator=generator)
    loss = model.loss(x)
    xt, x0_hat = captured[0]
    torch.testing.assert_close(seen[0], x0_hat)
    assert not torch.allclose(seen[0], xt)
    model.physics_weight = 0.0
    torch.manual_seed(0)
    plain = model.loss(x)
    torch.manual_seed(0)
    model.physics_weight = 0.5
    torch.testing.assert_close(model.loss(x) - plain, 0.5 * seen[-1].pow(2).flatten(1).sum(1))
    assert loss.shape == (4,)


def test_signal_time_weight_scales_the_physics_term(generator: torch.Generator) -> None:
    """``physics_time_weight="signal"`` multiplies the term by α²/(α² + σ²) at the drawn t."""
    times: list[Tensor] = []
    model = Diffusion((1, 8), physics_weight=0.5, channels=(8, 16), physics_time_weight="signal")
    model.physics_penalty = lambda x0: torch.ones(x0.shape[0])
    coefficients = model.sde.coefficients

    def spy(t: Tensor) -> tuple[Tensor, Tensor]:
        times.append(t.detach().clone())
        return coefficients(t)

    model.sde.coefficients = spy
    x = torch.randn(4, 1, 8, generator=generator)
    torch.manual_seed(0)
    weighted = model.loss(x)
    t = times[0]
    model.physics_time_weight = "none"
    torch.manual_seed(0)
    unweighted = model.loss(x)
    alpha, sigma = coefficients(t)
    signal = alpha**2 / (alpha**2 + sigma**2)
    torch.testing.assert_close(unweighted - weighted, 0.5 * (1 - signal))
    with pytest.raises(ValueError, match="physics_time_weight"):
        Diffusion((1, 8), physics_time_weight="snr")


def test_classifier_free_guidance_combines_the_two_predictions(generator: torch.Generator) -> None:
    torch.manual_seed(0)
    model = Diffusion((3,), cond_shape=(2,), hidden=(16, 16))
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    x = torch.randn(5, 3, generator=generator)
    c = torch.randn(5, 2, generator=generator)
    t = torch.rand(5, generator=generator)
    eps_c, _ = model.denoise(x, t, c)
    eps_u, _ = model.denoise(x, t, c, keep=torch.zeros(5))
    eps_u2, _ = model.denoise(x, t, torch.zeros_like(c) + 7.0, keep=torch.zeros(5))
    torch.testing.assert_close(eps_u, eps_u2)  # the null condition ignores cond
    sigma = model.sde.coefficients(t)[1][:, None]
    torch.testing.assert_close(model.score(x, t, c, guidance_scale=0.0), -eps_c / sigma)
    w = 2.0
    torch.testing.assert_close(
        model.score(x, t, c, guidance_scale=w), -((1 + w) * eps_c - w * eps_u) / sigma
    )


def test_no_context_is_the_null_condition(generator: torch.Generator) -> None:
    """``cond=None`` on a conditional model is the unconditional branch of classifier-free
    training (keep = 0), not a context of zeros."""
    torch.manual_seed(0)
    model = Diffusion((3,), cond_shape=(2,), hidden=(16, 16))
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    x = torch.randn(5, 3, generator=generator)
    t = torch.rand(5, generator=generator)
    zeros = torch.zeros(5, 2)
    eps_none, _ = model.denoise(x, t, None)
    eps_null, _ = model.denoise(x, t, zeros, keep=torch.zeros(5))
    eps_zero_context, _ = model.denoise(x, t, zeros)
    torch.testing.assert_close(eps_none, eps_null)
    assert not torch.allclose(eps_none, eps_zero_context)


def _dps_limit(sde: VPSDE, y: float, k: float, eps: float) -> tuple[float, float]:
    """Mean and variance at ``eps`` of the reverse VP SDE driven by the DPS score, in the limit
    of many steps, for N(0, 1) data observed as ``y = x + N(0, σ_y²)`` with ``k = ζ/σ_y²``.

    For N(0, 1) data ``p_t = N(0, 1)`` and ``x̂0 = αx``, so the guided score is linear,
    ``s_g = −x + kα(y − αx)``, and the reverse SDE ``dx = [−½βx − β s_g]dt + √β dw̄`` carries
    the moments ``−dm/dt = β[kαy − (½ + kα²)m]`` and ``−dV/dt = β[1 − (1 + 2kα²)V]`` from
    ``m = 0, V = 1`` at ``t = T`` down to ``eps``. (DPS is not the exact posterior, whose
    variance would be ``σ_y²/(1 + σ_y²)``; this is the distribution DPS itself converges to.)
    """

    def rhs(t: float, state: np.ndarray) -> list[float]:
        m, v = state
        tt = torch.tensor([t], dtype=torch.float64)
        a, b = float(sde.coefficients(tt)[0]), float(sde.beta(tt))
        return [-b * (k * a * y - (0.5 + k * a * a) * m), -b * (1 - (1 + 2 * k * a * a) * v)]

    sol = solve_ivp(rhs, (sde.T, eps), [0.0, 1.0], rtol=1e-10, atol=1e-12)
    return float(sol.y[0, -1]), float(sol.y[1, -1])


@pytest.mark.parametrize("strength", [0.1, 1.0])
def test_posterior_sampling_pulls_samples_to_the_observation(
    strength: float, generator: torch.Generator
) -> None:
    """Prior N(0, I) in 2-D, observation y = x_1 + noise(0.1), DPS with ζ = 0.1: x_1 has the
    moments of DPS's many-step limit (``_dps_limit``: mean 1.500, std 0.2236), x_2 stays
    N(0, 1).

    Tolerances: the DDPM sampler's measured error at 200 steps (2·10⁵ draws: x_1's std is
    0.2033, 0.020 below the limit, its mean 1.500; x_2's std 0.979, its first-order variance
    bias) plus 4 Monte-Carlo standard errors (σ/√n for a mean, σ/√(2n) for a std).
    Negative control (``strength = 1``): a sampler that drops ``guidance_strength`` gives
    x_1 std ≈ 0.05, which the same check rejects; the old bound "std < 0.3" accepted it.
    """
    model, _ = _model_with_oracle("vp", "eps")
    data = GaussianData(
        torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64), model.sde, (1, 2)
    )
    model.net = _Oracle(data, "eps")
    y = torch.tensor([[1.5]], dtype=torch.float64)
    guide = dps_guidance(lambda x0: x0[:, 0, :1], y, noise_std=0.1)
    n = 8000
    x = model.sample(n, sampler="ddpm", steps=200, generator=generator, guidance=guide,
                     guidance_strength=strength)  # fmt: skip
    mean, var = _dps_limit(model.sde, 1.5, 0.1 / 0.1**2, model.eps)
    std = math.sqrt(var)
    x1, x2 = x[:, 0, 0], x[:, 0, 1]
    observed_ok = abs(float(x1.mean()) - mean) < 0.002 + 4 * std / math.sqrt(n) and abs(
        float(x1.std()) - std
    ) < 0.022 + 4 * std / math.sqrt(2 * n)
    assert observed_ok == (strength == 0.1), (float(x1.mean()), float(x1.std()), mean, std)
    assert abs(float(x2.mean())) < 4 / math.sqrt(n)
    assert abs(float(x2.std()) - 1) < 0.025 + 4 / math.sqrt(2 * n)
    if strength == 0.1:
        unguided = model.sample(2000, sampler="ddpm", steps=200, generator=generator)
        assert abs(float(unguided[:, 0, 0].mean())) < 4 / math.sqrt(2000)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_unet_is_dimension_generic_and_periodic_equivariant(ndim: int) -> None:
    torch.manual_seed(0)
    net = UNet(ndim, 2, channels=(8, 16), attention=(False, True), periodic=True).double()
    nn.init.normal_(net.conv_out.weight, std=0.1)
    grid = {1: (16,), 2: (8, 12), 3: (4, 4, 6)}[ndim]
    x = torch.randn(2, 2, *grid, dtype=torch.float64)
    t = torch.rand(2, dtype=torch.float64)
    y = net(x, t)
    assert y.shape == x.shape
    dims = tuple(range(2, 2 + ndim))
    shifts = (2,) * ndim  # a multiple of 2**(levels - 1)
    torch.testing.assert_close(net(torch.roll(x, shifts, dims), t), torch.roll(y, shifts, dims))


def test_unet_handles_odd_grids_and_starts_at_zero() -> None:
    net = UNet(2, 1, channels=(8, 16, 16), attention=(False, False, True))
    x = torch.randn(2, 1, 17, 11)
    assert torch.equal(net(x, torch.rand(2)), torch.zeros_like(x))


def test_diffusion_trains_on_fields_with_any_sampler() -> None:
    torch.manual_seed(0)
    model = Diffusion((1, 12), cond_shape=(1, 12), channels=(8, 16), periodic=True)
    x, c = torch.randn(4, 1, 12), torch.randn(4, 1, 12)
    loss = model.loss(x, c)
    loss.mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    for sampler in ("ddim", "ddpm", "pc", "euler-maruyama"):
        s = model.sample(2, c[:2], sampler=sampler, steps=3, guidance_scale=1.0)
        assert s.shape == (2, 1, 12) and torch.isfinite(s).all()


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="prediction"):
        Diffusion((2,), prediction="score")
    with pytest.raises(ValueError, match="unknown sde"):
        Diffusion((2,), sde="vq")
    with pytest.raises(ValueError, match="p_uncond"):
        Diffusion((2,), cond_shape=(1,), p_uncond=1.0)
    with pytest.raises(ValueError, match="UNet: this network is conditional"):
        UNet(1, 1, channels=(8,), cond_features=2)(torch.zeros(2, 1, 4), torch.rand(2))
    model = Diffusion((2,), hidden=(8,))
    with pytest.raises(ValueError, match="sample shape"):
        model.loss(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="sample shape"):
        model.log_prob(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="unconditional"):
        model.loss(torch.zeros(3, 2), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="trace must be"):
        model.log_prob(torch.zeros(3, 2), trace="hutchinon")
    with pytest.raises(ValueError, match="noise_std"):
        dps_guidance(lambda x: x, torch.zeros(1), 0.0)
    assert math.isfinite(float(model.loss(torch.zeros(3, 2)).sum().detach()))


@pytest.mark.slow
def test_probability_flow_likelihood_lands_near_the_cnf_on_a_toy_density() -> None:
    """A 2-D two-component mixture: the diffusion model's PF-ODE NLL and a flow-matching CNF's
    NLL on held-out points agree, and both approach the true NLL."""
    torch.manual_seed(0)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.tensor([0.4, 0.6])),
        torch.distributions.Independent(
            torch.distributions.Normal(
                torch.tensor([[-1.0, 0.5], [1.0, -0.5]]), torch.tensor([[0.35, 0.5], [0.5, 0.3]])
            ),
            1,
        ),
    )
    data, test = mix.sample((20000,)), mix.sample((1000,))
    truth = float(-mix.log_prob(test).mean())
    from physgen.models.cnf import FlowMatching

    nll = {}
    for name, model in (
        ("diffusion", Diffusion((2,), hidden=(128, 128, 128), eps=1e-4)),
        ("cnf", FlowMatching((2,), hidden=(128, 128, 128), act="silu")),
    ):
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 3000)
        g = torch.Generator().manual_seed(1)
        for _ in range(3000):
            batch = data[torch.randint(0, data.shape[0], (512,), generator=g)]
            opt.zero_grad()
            model.loss(batch).mean().backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            nll[name] = float(-model.log_prob(test).mean())
    assert abs(nll["diffusion"] - nll["cnf"]) < 0.1, f"{nll}, truth {truth:.3f}"
    assert nll["cnf"] - truth < 0.1 and nll["diffusion"] - truth < 0.15, f"{nll}, {truth:.3f}"


def test_models_run_on_every_device(device: torch.device) -> None:
    from physgen.models.cnf import CNF, FlowMatching

    torch.manual_seed(0)
    field = Diffusion((1, 8, 8), sde="ddpm-linear", channels=(8, 16)).to(device)
    x = torch.randn(2, 1, 8, 8, device=device)
    assert field.loss(x).device == x.device
    for sampler in ("ddim", "ddpm", "pc", "euler-maruyama"):
        s = field.sample(2, sampler=sampler, steps=2, generator=torch.Generator().manual_seed(0))
        assert s.device == x.device and s.shape == x.shape
    vec = Diffusion((2,), sde="ve", hidden=(8,)).to(device)
    with torch.no_grad():
        assert vec.log_prob(torch.randn(3, 2, device=device)).device == x.device
    for cls in (CNF, FlowMatching):
        flow = cls((2,), hidden=(8,)).to(device)
        assert flow.loss(torch.randn(3, 2, device=device)).device == x.device
        assert flow.sample(3).device == x.device


def test_fields_default_to_v_prediction_and_vectors_to_eps() -> None:
    for build in (Diffusion, Diffusion.for_shape):  # the constructor and for_shape agree
        assert build((2, 8, 8)).prediction == "v"
        assert build((1, 16), (1, 16)).prediction == "v"
        assert build((3,)).prediction == "eps"
        assert build((2, 8, 8), prediction="eps").prediction == "eps"
    model = Diffusion((1, 8))
    assert model.config["prediction"] == "v"  # saved resolved: a reload does not re-default
    assert Diffusion.from_config(model.config).prediction == "v"


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_denoiser_sensitivity_to_the_network_output(prediction: str) -> None:
    r"""∂x̂0/∂(network output) is −σ/α for ε, 1 for x0 and −σ/r for v (Salimans & Ho 2022):
    at t = T of the default VP SDE ε amplifies an output error δ by σ/α ≈ 150, v by ≤ 1,
    which is why fields default to v (:func:`default_prediction`)."""
    model = Diffusion((1, 8), prediction=prediction, channels=(4, 4)).double()
    delta = 1e-3
    x = torch.randn(3, 1, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.full((3,), model.sde.T, dtype=torch.float64)
    _, x0 = model.denoise(x, t)
    model.net.register_forward_hook(lambda module, args, out: out + delta)
    _, x0_shifted = model.denoise(x, t)
    alpha, sigma = model.sde.coefficients(t[:1])
    r = (alpha**2 + sigma**2).sqrt()
    gain = {"eps": -sigma / alpha, "x0": torch.ones_like(r), "v": -sigma / r}[prediction]
    torch.testing.assert_close(x0_shifted - x0, (gain * delta).expand_as(x0), rtol=1e-9, atol=0)
    assert (float(gain.abs()) > 100) == (prediction == "eps")


def _smooth_fields(n: int, size: int, seed: int) -> Tensor:
    """Gaussian random fields with spectrum |k|⁻⁴ on a periodic ``size``² grid, unit std."""
    k = torch.fft.fftfreq(size, dtype=torch.float64) * size
    amp = (k[:, None] ** 2 + k[None] ** 2).sqrt().clamp_min(1) ** -2
    z = torch.randn(n, 1, size, size, dtype=torch.complex128,
                    generator=torch.Generator().manual_seed(seed))  # fmt: skip
    f = torch.fft.ifft2(z * amp).real
    return (f / f.std()).float()


@pytest.mark.slow
@pytest.mark.parametrize("prediction", [None, "eps"])
def test_conditional_field_model_returns_its_condition(prediction: str | None) -> None:
    """Trained briefly on y = c, a conditional field model with the default parameterization
    (v) must return its condition; ε-prediction (the old default), same budget, must not: its
    x̂0 near T carries the ε error × σ/α, and its draws have many times the data's std."""
    from physgen.training import fit

    c, c_test = _smooth_fields(512, 8, 1), _smooth_fields(16, 8, 2)
    torch.manual_seed(0)
    extra = {} if prediction is None else {"prediction": prediction}
    model = Diffusion((1, 8, 8), (1, 8, 8), channels=(16, 32), **extra)
    fit(model, (c, c), steps=300, batch_size=16, lr=2e-3, grad_clip=1.0, progress=False, seed=0)
    model.eval()
    x = model.sample(16, c_test, sampler="ddpm", steps=50,
                     generator=torch.Generator().manual_seed(0))  # fmt: skip
    rel = float(((x - c_test).flatten(1).norm(dim=1) / c_test.flatten(1).norm(dim=1)).mean())
    # The draws' spread around c is what an 8² field of unit std leaves after 300 steps;
    # a model that ignored c would score ≈ √2 (independent draws of unit std).
    assert (rel < 0.35) == (prediction is None), f"rel. L2 {rel:.3f} with prediction={prediction}"
