"""Posterior sampling reproduces the analytic linear-Gaussian posterior (guided and conditional)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from gaussian_closed_form import GaussianData
from torch import Tensor

from physgen.grids import Grid
from physgen.inverse import parse_task
from physgen.inverse.guided import ScorePrior, posterior_score
from physgen.inverse.solve import solve
from physgen.models.base import GenerativeModel
from physgen.samplers import euler_maruyama
from physgen.sde import VPSDE

M = 3000  # ensemble size: Monte-Carlo standard errors ≈ 1.8 % of a standard deviation
STEPS = 200


def _prior(shape: tuple[int, ...], seed: int) -> GaussianData:
    d = math.prod(shape)
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    cov = q @ torch.diag(torch.linspace(0.3, 2.0, d, dtype=torch.float64)) @ q.T
    mean = torch.randn(d, generator=gen, dtype=torch.float64)
    return GaussianData(mean, cov, VPSDE(), shape)


def _matrix(op, shape: tuple[int, ...]) -> Tensor:
    d = math.prod(shape)
    return op(torch.eye(d, dtype=torch.float64).reshape(d, *shape)).reshape(d, -1).T  # (m, D)


def _posterior(prior: GaussianData, a: Tensor, y: Tensor, noise: float) -> tuple[Tensor, Tensor]:
    """m = μ + K(y − Aμ), S = Σ − KAΣ with K = ΣAᵀ(AΣAᵀ + σ²I)⁻¹."""
    s0 = prior.cov
    gain = s0 @ a.T @ torch.linalg.inv(a @ s0 @ a.T + noise**2 * torch.eye(a.shape[0]))
    return prior.mean + gain @ (y - a @ prior.mean), s0 - gain @ a @ s0


def _check_moments(members: Tensor, mean: Tensor, cov: Tensor) -> None:
    """Sample mean and covariance within 5 Monte-Carlo standard errors (+ 1 % of the scale
    for the time discretization of the reverse SDE)."""
    x = members.reshape(members.shape[0], -1)
    n = x.shape[0]
    var = torch.diag(cov)
    m_hat, c_hat = x.mean(0), torch.cov(x.T)
    slack = 0.01 * float(var.max())
    se_mean = (var / n).sqrt()
    assert torch.all((m_hat - mean).abs() <= 5 * se_mean + slack), (m_hat, mean)
    se_cov = ((var[:, None] * var[None, :] + cov**2) / n).sqrt()
    assert torch.all((c_hat - cov).abs() <= 5 * se_cov + slack), (c_hat, cov)


CASES = [
    # (task, fields, grid, noise σ): colorization of a 2-channel 1-D field, block-average SR.
    ("colorize:u", ("a", "u"), (2,), 0.2),
    ("colorize:u", ("a", "u"), (2,), 0.0),
    ("sr2", ("u",), (4,), 0.1),
]


@pytest.mark.parametrize(("spec", "fields", "grid", "noise"), CASES)
def test_guided_sampler_with_exact_covariance_reproduces_the_gaussian_posterior(
    spec, fields, grid, noise
):
    task = parse_task(spec, fields, Grid(grid, bc="dirichlet"), noise_std=noise)
    prior = _prior(task.sample_shape, seed=len(spec) + int(10 * noise))
    a = _matrix(task.operator, task.sample_shape)
    x_true = prior.sample(1, 0.0, torch.Generator().manual_seed(1))
    y = task.observe(x_true, torch.Generator().manual_seed(2))
    mean, cov = _posterior(prior, a, y.flatten(), noise)
    ens = solve(
        ScorePrior(prior.sde, prior.score), task, y, M, batch_size=M, covariance="exact",
        steps=STEPS, generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    assert ens.shape == (1, M, *task.sample_shape)
    _check_moments(ens[0], mean, cov)
    # Without guidance the same sampler returns the prior: the check can fail.
    with pytest.raises(AssertionError):
        _check_moments(prior.sample(M, 0.0, torch.Generator().manual_seed(4)), mean, cov)


@pytest.mark.parametrize("covariance", ["pgdm", "isotropic"])
def test_pgdm_guidance_is_exact_for_a_standard_normal_prior_and_dps_is_not(covariance):
    task = parse_task("sr2", ("u",), Grid((4,), bc="dirichlet"), noise_std=0.3)
    d = 4
    prior = GaussianData(
        torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64), VPSDE(), (1, 4)
    )
    y = torch.tensor([[[1.5, -0.8]]], dtype=torch.float64)
    mean, cov = _posterior(prior, _matrix(task.operator, task.sample_shape), y.flatten(), 0.3)
    kw = {"batch_size": M, "steps": STEPS}
    ens = solve(ScorePrior(prior.sde, prior.score), task, y, M, covariance=covariance,
                generator=torch.Generator().manual_seed(5), **kw)  # fmt: skip
    _check_moments(ens[0], mean, cov)
    dps = solve(ScorePrior(prior.sde, prior.score), task, y, M, covariance="dps",
                generator=torch.Generator().manual_seed(5), **kw)  # fmt: skip
    with pytest.raises(AssertionError):
        _check_moments(dps[0], mean, cov)  # DPS ignores Cov[x0 | xt]: over-confident


def test_linear_residual_term_is_an_extra_gaussian_observation():
    # Physics term 0 = Bx + η, η ~ N(0, σ_R²): with exact covariance the sampler returns the
    # posterior given both the observation and the "residual observation".
    task = parse_task("colorize:u", ("a", "u"), Grid((2,), bc="dirichlet"), noise_std=0.3)
    prior = _prior(task.sample_shape, seed=7)
    b_row = torch.tensor([[1.0, -1.0, 0.5, 2.0]], dtype=torch.float64)
    residual = lambda x: x.flatten(1) @ b_row.T - 0.4  # noqa: E731
    y = torch.tensor([[[0.7, -0.2]]], dtype=torch.float64)
    a = torch.cat([_matrix(task.operator, task.sample_shape), b_row])
    prior_noise = torch.tensor([0.3, 0.3, 0.25], dtype=torch.float64)
    target = torch.cat([y.flatten(), torch.tensor([0.4], dtype=torch.float64)])
    s0 = prior.cov
    gain = s0 @ a.T @ torch.linalg.inv(a @ s0 @ a.T + torch.diag(prior_noise**2))
    mean, cov = prior.mean + gain @ (target - a @ prior.mean), s0 - gain @ a @ s0
    ens = solve(
        ScorePrior(prior.sde, prior.score), task, y, M, batch_size=M, covariance="exact",
        residual=residual, residual_std=0.25, steps=STEPS,
        generator=torch.Generator().manual_seed(8),
    )  # fmt: skip
    _check_moments(ens[0], mean, cov)


class _ExactConditional(GenerativeModel):
    """A conditional diffusion model whose conditional score is the exact posterior score.

    ``sample(n, cond)`` runs the reverse SDE with the score of N(m(y), S) under the VP SDE,
    reading the observation back from the lifted ``cond``; it stands in for a trained
    conditional diffusion model so the test checks the conditional path, not training.
    """

    def __init__(self, prior: Any, a: Tensor, noise: float, keep: list[int], shape, cond_shape):
        super().__init__(cond_shape=list(cond_shape))
        self.prior, self.a, self.noise, self.shape = prior, a, noise, tuple(shape)
        self.keep = keep  # flat indices of the inferred channels

    @classmethod
    def for_shape(cls, sample_shape, cond_shape=None, **overrides):
        raise NotImplementedError

    def loss(self, x, cond=None):
        raise NotImplementedError

    def sample(self, n: int, cond: Tensor | None = None, **options: Any) -> Tensor:
        y = cond.flatten(1)  # colorization: the lifted cond is the observed channel itself
        s0, a, mu = self.prior.cov, self.a, self.prior.mean
        gain = s0 @ a.T @ torch.linalg.inv(a @ s0 @ a.T + self.noise**2 * torch.eye(a.shape[0]))
        mean = (mu + (y - a @ mu) @ gain.T)[:, self.keep]  # the inferred channels' marginal
        cov = (s0 - gain @ a @ s0)[self.keep][:, self.keep]
        lam, q = torch.linalg.eigh(cov)
        sde = self.prior.sde

        def score(x: Tensor, t: Tensor) -> Tensor:
            alpha, sigma = sde.coefficients(t)
            flat = x.flatten(1) - alpha[:, None] * mean
            var = alpha[:, None] ** 2 * lam.clamp_min(0) + sigma[:, None] ** 2
            return (-((flat @ q) / var) @ q.T).reshape(x.shape)

        x = sde.prior_sample((n, *self.shape), generator=options.get("generator"))
        x = x.to(torch.float64)
        return euler_maruyama(sde, score, x, steps=STEPS, generator=options.get("generator")).x


def test_conditional_sampler_reproduces_the_gaussian_posterior_for_each_observation():
    task = parse_task("colorize:u", ("a", "u"), Grid((2,), bc="dirichlet"), noise_std=0.2)
    prior = _prior(task.sample_shape, seed=11)
    a = _matrix(task.operator, task.sample_shape)
    model = _ExactConditional(prior, a, 0.2, [2, 3], task.target_shape, (1, 2))
    y = torch.tensor([[[0.5, -1.0]], [[-2.0, 0.3]]], dtype=torch.float64)  # two cases
    opts = {"generator": torch.Generator().manual_seed(12)}
    ens = solve(model, task, y, M, batch_size=2 * M, sample_options=opts)
    assert ens.shape == (2, M, 2, 2)
    for b in range(2):
        torch.testing.assert_close(ens[b, :, 0], y[b].expand(M, -1, -1)[:, 0])  # observed a
        mean, cov = _posterior(prior, a, y[b].flatten(), 0.2)
        _check_moments(ens[b, :, 1], mean[2:], cov[2:, 2:])


def test_posterior_score_rejects_bad_options():
    prior = ScorePrior(VPSDE(), lambda x, t: -x)
    with pytest.raises(ValueError, match="dps"):
        posterior_score(prior, lambda x: x, torch.zeros(1, 2), covariance="dps")
    with pytest.raises(ValueError, match="covariance"):
        posterior_score(prior, lambda x: x, torch.zeros(1, 2), covariance="full")


def test_joint_prior_guided_by_an_observation_of_one_of_its_channels():
    # SR of u alone with a joint (a, u) prior: the operator reads u, members carry a and u.
    task = parse_task("sr2:u", ("a", "u"), Grid((2,), bc="dirichlet"), noise_std=0.2)
    prior = _prior((2, 2), seed=13)
    a = _matrix(lambda x: task.operator(x[:, 1:]), (2, 2))  # (1, 4)
    y = torch.tensor([[[0.9]]], dtype=torch.float64)
    mean, cov = _posterior(prior, a, y.flatten(), 0.2)
    ens = solve(
        ScorePrior(prior.sde, prior.score), task, y, M, batch_size=M, covariance="exact",
        prior_fields=("a", "u"), steps=STEPS, generator=torch.Generator().manual_seed(14),
    )  # fmt: skip
    assert ens.shape == (1, M, 2, 2)
    _check_moments(ens[0], mean, cov)
    with pytest.raises(ValueError, match="lack"):
        solve(ScorePrior(prior.sde, prior.score), task, y, 2, prior_fields=("a", "p"))


def test_isotropic_guidance_projects_onto_noise_free_observations_with_a_poor_denoiser():
    # A badly wrong score (off by 0.5·x/σ²-scale terms) still gives finite members whose
    # observed channel reproduces a noise-free observation: the Tweedie shift is a projection.
    task = parse_task("colorize:u", ("a", "u"), Grid((8,), bc="dirichlet"))
    prior = _prior(task.sample_shape, seed=21)

    def poor(x: Tensor, t: Tensor) -> Tensor:
        return prior.score(x, t) + 0.5 * torch.sin(3 * x)

    y = torch.randn(3, 1, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(22))
    ens = solve(ScorePrior(prior.sde, poor), task, y, 16, covariance="isotropic", steps=50,
                sampler="ddpm", generator=torch.Generator().manual_seed(23))  # fmt: skip
    assert torch.isfinite(ens).all()
    misfit = (ens[:, :, 0] - y[:, None, 0]).norm() / y.norm()
    assert misfit < 0.05, misfit


def test_power_iteration_finds_the_largest_eigenvalue_of_each_samples_gram_matrix():
    from physgen.inverse.guided import _top_eigenvalue

    mats = torch.randn(3, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fn = lambda z: torch.einsum("bkd,bd->bk", mats, z) + 0.3  # noqa: E731
    lam = _top_eigenvalue(fn, torch.zeros(3, 7, dtype=torch.float64), iters=60)
    expected = torch.linalg.eigvalsh(mats.transpose(1, 2) @ mats)[:, -1:]
    torch.testing.assert_close(lam, expected, rtol=1e-6, atol=0)


def test_guided_solving_reads_the_written_score_prior_contract() -> None:
    """Guidance takes a :class:`ScoreBasedModel`; a look-alike with ``sde`` and ``score``
    attributes is refused by name, and ``eps`` comes from the contract."""
    from physgen.inverse.solve import as_score_prior
    from physgen.models import ScoreBasedModel, get_model_class
    from physgen.sde import build_sde

    model = get_model_class("diffusion").for_shape((4,))
    assert isinstance(model, ScoreBasedModel) and model.eps > 0
    prior = as_score_prior(model)
    x, t = torch.randn(3, 4), torch.full((3,), 0.5)
    torch.testing.assert_close(prior.score(x, t), model.score(x, t))

    class LookAlike(torch.nn.Module):
        sde, eps = build_sde("vp"), 1e-3

        def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return -x

    with pytest.raises(ValueError, match="ScoreBasedModel"):
        as_score_prior(LookAlike())
