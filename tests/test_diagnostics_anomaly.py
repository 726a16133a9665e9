"""Anomaly scores: likelihood ratio and typicality on Gaussians with known densities, and the
per-family scores of trained-model interfaces."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from torch import Tensor

from physgen.diagnostics import (
    auroc,
    available_scores,
    entropy_estimate,
    log_likelihood_ratio,
    model_scores,
    perturb,
    reconstruction_error,
    residual_score,
    typicality_statistic,
    typicality_threshold,
)
from physgen.metrics import residual_rms
from physgen.models.autoencoder import Autoencoder
from physgen.models.base import DensityModel, get_model_class
from physgen.models.vae import VAE


class _Gaussian(DensityModel):
    """N(mean, std² I) on vectors of ``dim``: a density model with a closed form."""

    def __init__(self, dim: int, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__(dim=dim, mean=mean, std=std)
        self.dim, self.mean, self.std = dim, mean, std

    @classmethod
    def for_shape(cls, sample_shape: Any, cond_shape: Any = None, **kw: Any) -> _Gaussian:
        return cls(int(np.prod(sample_shape)), **kw)

    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return torch.distributions.Normal(self.mean, self.std).log_prob(x).flatten(1).sum(1)

    def sample(self, n: int, cond: Tensor | None = None, **options: Any) -> Tensor:
        return self.mean + self.std * torch.randn(n, self.dim, dtype=torch.float64)


def _mixture_logpdf(x: np.ndarray, rate: float, half_width: float) -> np.ndarray:
    """Per-coordinate log-density of N(0, 1) data after ``perturb`` with U(−a, a): the mixture
    (1 − μ) φ(x) + μ/(2a) 1{|x| < a}, summed over coordinates."""
    pdf = (1 - rate) * stats.norm.pdf(x) + rate / (2 * half_width) * (np.abs(x) < half_width)
    return np.log(pdf).sum(-1)


def test_perturbed_gaussian_has_the_mixture_density() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 1, generator=g, dtype=torch.float64)
    rate, a = 0.2, 3.0
    y = perturb(x, rate, -a, a, generator=g).numpy().ravel()

    def cdf(v: np.ndarray, mu: float) -> np.ndarray:
        return (1 - mu) * stats.norm.cdf(v) + mu * np.clip((v + a) / (2 * a), 0, 1)

    assert stats.kstest(y, lambda v: cdf(v, rate)).pvalue > 1e-3
    # Negative control: the mixture with the wrong rate is rejected.
    assert stats.kstest(y, lambda v: cdf(v, 0.1)).pvalue < 1e-6
    with pytest.raises(ValueError, match="rate must lie in"):
        perturb(x, 1.5, -a, a)


def test_likelihood_ratio_equals_the_analytic_log_ratio() -> None:
    # Model N(0, I) in 16 dims; background: the density of its perturbed inputs. The ratio
    # of the two models' log_prob is the closed-form log-ratio at every point.
    rate, a, d = 0.2, 3.0, 16
    model = _Gaussian(d)
    x = torch.randn(64, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1.3
    background = torch.from_numpy(_mixture_logpdf(x.numpy(), rate, a))
    llr = log_likelihood_ratio(model.log_prob(x), background)
    exact = stats.norm.logpdf(x.numpy()).sum(-1) - _mixture_logpdf(x.numpy(), rate, a)
    np.testing.assert_allclose(llr.numpy(), exact, rtol=1e-12, atol=1e-12)
    # Between two Gaussians the ratio is ½Σ[x²/σ_b² − x²] + D log σ_b (σ_b = 2).
    wide = _Gaussian(d, std=2.0)
    closed = 0.5 * (x.pow(2) / 4 - x.pow(2)).sum(1) + d * math.log(2.0)
    torch.testing.assert_close(log_likelihood_ratio(model.log_prob(x), wide.log_prob(x)), closed)
    # Negative control: the ratio is not symmetric; swapping the models flips its sign.
    swapped = log_likelihood_ratio(wide.log_prob(x), model.log_prob(x))
    assert not torch.allclose(swapped, closed)
    with pytest.raises(ValueError, match="log_p_background"):
        log_likelihood_ratio(torch.zeros(3), torch.zeros(4))


def test_typicality_flags_the_too_likely_inputs_raw_likelihood_prefers() -> None:
    # In D = 100, N(0, ½² I) inputs are MORE likely under N(0, I) than its own samples, yet
    # far from its typical set (NLL ≈ H − 37.5 nats with H ≈ D/2 log 2πe and sd √(D/2) ≈ 7).
    d, g = 100, torch.Generator().manual_seed(2)
    model = _Gaussian(d)
    nll = lambda x: -model.log_prob(x)  # noqa: E731
    train = torch.randn(2000, d, generator=g, dtype=torch.float64)
    valid = torch.randn(500, d, generator=g, dtype=torch.float64)
    test_in = torch.randn(500, d, generator=g, dtype=torch.float64)
    test_out = 0.5 * torch.randn(500, d, generator=g, dtype=torch.float64)
    h = entropy_estimate(nll(train))
    assert h == pytest.approx(
        d / 2 * math.log(2 * math.pi * math.e), abs=4 * math.sqrt(d / 2 / 2000)
    )
    assert auroc(nll(test_in), nll(test_out)).value < 0.01  # the famous failure
    t_in, t_out = typicality_statistic(nll(test_in), h), typicality_statistic(nll(test_out), h)
    assert auroc(t_in, t_out).value > 0.99
    # The bootstrap threshold at level α rejects about α of in-distribution batches.
    m, alpha = 5, 0.05
    eps = typicality_threshold(nll(valid), h, m, alpha=alpha, n_bootstrap=4000)
    fpr = float((typicality_statistic(nll(test_in), h, m) > eps).double().mean())
    assert abs(fpr - alpha) < 3 * math.sqrt(alpha * (1 - alpha) / 100) + 0.02
    assert bool((typicality_statistic(nll(test_out), h, m) > eps).all())


def test_model_scores_per_family() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 8)
    # Density model: bits/dim of −log p, with the data-scale offset of a z-score.
    gauss = _Gaussian(8)
    got = model_scores(gauss, x.double(), data_scale=0.5)
    exact = -(stats.norm.logpdf(x.double().numpy()).sum(-1) + 8 * math.log(0.5)) / (8 * math.log(2))
    np.testing.assert_allclose(got["nll"].numpy(), exact, rtol=1e-12)
    # A flow: the NLL is −log_prob in bits/dim, batched or not.
    flow = get_model_class("realnvp").for_shape((8,)).eval()
    with torch.no_grad():
        ref = -flow.log_prob(x).double() / (8 * math.log(2))
    torch.testing.assert_close(model_scores(flow, x, batch_size=4)["nll"], ref)
    # VAE: the bounds order as −IWAE_K ≤ −ELBO on average, and reconstruction is deterministic.
    vae = VAE((8,), latent_dim=2, hidden=(16,)).eval()
    torch.manual_seed(1)
    s = model_scores(vae, x, iwae_samples=256)
    assert set(s) == {"neg_elbo", "neg_iwae", "reconstruction"}
    assert float(s["neg_iwae"].mean()) <= float(s["neg_elbo"].mean())
    with torch.no_grad():
        mu, _ = vae.encode(x)
        mse = (vae.decode(mu) - x).double().pow(2).mean(1)
    torch.testing.assert_close(s["reconstruction"], mse)
    ae = Autoencoder((8,), latent_dim=2, hidden=(16,)).eval()
    assert available_scores(ae) == ("reconstruction",)
    with torch.no_grad():
        torch.testing.assert_close(reconstruction_error(ae, x), (ae(x) - x).double().pow(2).mean(1))
    ebm = get_model_class("ebm").for_shape((8,)).eval()
    with torch.no_grad():
        torch.testing.assert_close(model_scores(ebm, x)["energy"], ebm.energy(x).double())
    # Refusals: a family without a density or an encoder, a score the family lacks.
    gan = get_model_class("gan").for_shape((8,))
    with pytest.raises(TypeError, match="offers no anomaly score"):
        model_scores(gan, x)
    with pytest.raises(ValueError, match=r"scores \['nll'\] are not available"):
        model_scores(vae, x, scores=["nll"])


def test_residual_score_separates_solutions_from_violations() -> None:
    from physgen.problem import load

    problem = load("darcy", n=16)
    fields = problem.to_tensor(problem.generate(4, seed=0))
    wrong = fields.clone()
    wrong[:, 1] *= 1.01  # the pressure of a 1 % larger source term
    torch.testing.assert_close(
        residual_score(problem, fields), residual_rms(problem, fields, relative=True)
    )
    assert float(residual_score(problem, fields).max()) < 1e-8
    # u·1.01 solves −∇·(a∇u) = 1.01 f: the relative residual is exactly 0.01 everywhere.
    torch.testing.assert_close(
        residual_score(problem, wrong),
        torch.full((4,), 0.01, dtype=torch.float64),
        atol=1e-8,
        rtol=0,
    )


@pytest.mark.parametrize("name", ["flow-matching", "diffusion"])
def test_ode_families_score_through_their_log_prob(name: str) -> None:
    # The NLL of an ODE family (probability-flow ODE for diffusion) is its own log_prob,
    # with the options passed on, in bits/dim; it needs autograd inside no_grad scoring.
    cls = get_model_class(name)
    model = cls.for_shape(cls.example_shape).eval()
    x, _ = cls.example_batch(3, generator=torch.Generator().manual_seed(0))
    got = model_scores(model, x, log_prob_options={"trace": "exact"})["nll"]
    d = x[0].numel()
    expected = -model.log_prob(x, trace="exact").detach().double() / (d * math.log(2))
    torch.testing.assert_close(got, expected)
