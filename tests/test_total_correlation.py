"""KL decomposition (Chen et al. 2018): known values on separated codes, and unbiasedness."""

from __future__ import annotations

import math

import pytest
import torch

from physgen.models.total_correlation import kl_decomposition, log_aggregate_posterior
from physgen.models.vae import gaussian_kl


def _draw(mu: torch.Tensor, logvar: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen, dtype=mu.dtype)


def test_a_posterior_that_ignores_x_has_no_mi_and_no_tc(generator: torch.Generator) -> None:
    # q(z|x) = q(z) = N(m, diag s²) for every x: index-code MI and TC are 0 exactly (the
    # whole data set is the batch, M = N), and the dimension-wise KL is the analytic KL.
    n = 400
    mu = torch.tensor([0.7, -0.3, 0.1], dtype=torch.float64).expand(n, 3)
    logvar = torch.tensor([-0.5, 0.4, 0.0], dtype=torch.float64).expand(n, 3)
    z = _draw(mu, logvar, generator)
    terms = kl_decomposition(z, mu, logvar, dataset_size=n)
    torch.testing.assert_close(
        terms.index_mi, torch.zeros(n, dtype=torch.float64), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        terms.total_correlation, torch.zeros(n, dtype=torch.float64), atol=1e-12, rtol=0
    )
    kl = gaussian_kl(mu[:1], logvar[:1])[0]
    dim = terms.dimwise_kl
    assert abs(dim.mean() - kl) < 4 * dim.std() / math.sqrt(n)
    # per sample the three terms add up to log q(z|x) − log p(z)
    log_q = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(sum(terms), log_q - log_p, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("layout", "tc"), [("diagonal", math.log(16)), ("grid", 0.0)])
def test_separated_codes_have_known_mi_and_tc(
    generator: torch.Generator, layout: str, tc: float
) -> None:
    # 16 data points with narrow posteriors (sd 0.01) at well separated means (4 apart):
    # I(x; z) = log 16. On the diagonal (z₁ = z₂) the marginals each carry all of it, so
    # TC = log 16; on a 4 × 4 grid the two coordinates are independent, TC = 0. Overlaps are
    # e^{-(4/0.01)²/2}: nothing at float64 precision.
    a = 4.0 * torch.arange(16, dtype=torch.float64)
    if layout == "diagonal":
        mu = torch.stack([a, a], 1)
    else:
        mu = 4.0 * torch.cartesian_prod(torch.arange(4.0), torch.arange(4.0)).double()
    logvar = torch.full_like(mu, 2 * math.log(0.01))
    z = _draw(mu, logvar, generator)
    terms = kl_decomposition(z, mu, logvar, dataset_size=16)
    ones = torch.ones(16, dtype=torch.float64)
    torch.testing.assert_close(terms.index_mi, math.log(16) * ones, atol=1e-9, rtol=0)
    torch.testing.assert_close(terms.total_correlation, tc * ones, atol=1e-9, rtol=0)


def test_the_stratified_estimate_is_unbiased_for_q_of_z(generator: torch.Generator) -> None:
    # N = 40 posteriors; for a fixed draw z₀ of sample 0, batches of M = 6 (sample 0 plus 5
    # others without replacement) estimate q(z₀) = (1/N) Σ_n q(z₀|x_n) without bias. Equal
    # weights 1/M (the naive batch mixture) overweight the own posterior: the control.
    n, m, reps = 40, 6, 4000
    mu = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    logvar = torch.randn(n, 2, generator=generator, dtype=torch.float64) - 1.0
    z0 = _draw(mu[:1], logvar[:1], generator)
    comp = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z0).sum(1)
    exact = comp.exp().mean()
    est, naive = [], []
    for _ in range(reps):
        idx = torch.cat(
            [
                torch.zeros(1, dtype=torch.long),
                1 + torch.randperm(n - 1, generator=generator)[: m - 1],
            ]
        )
        z = torch.cat([z0, _draw(mu[idx[1:]], logvar[idx[1:]], generator)])
        log_qz, _ = log_aggregate_posterior(z, mu[idx], logvar[idx], dataset_size=n)
        est.append(log_qz[0].exp())
        naive.append(comp[idx].exp().mean())
    est_t, naive_t = torch.stack(est), torch.stack(naive)
    se = est_t.std() / math.sqrt(reps)
    assert abs(est_t.mean() - exact) < 4 * se
    assert abs(naive_t.mean() - exact) > 10 * naive_t.std() / math.sqrt(reps)


def test_bad_batches_are_refused() -> None:
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="dataset_size must be at least the batch size 3"):
        log_aggregate_posterior(x, x, x, dataset_size=2)
    with pytest.raises(ValueError, match="batch of at least 2"):
        log_aggregate_posterior(x[:1], x[:1], x[:1], dataset_size=5)
    with pytest.raises(ValueError, match="share one"):
        log_aggregate_posterior(x, x[:, :1], x, dataset_size=5)
