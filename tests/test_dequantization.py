"""Dequantization: the bound is exact where it must be, a bound elsewhere, and it tightens."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from physgen.data.dequantization import (
    UniformDequantization,
    VariationalDequantization,
    dequantized_log_likelihood,
)
from physgen.metrics import bits_per_dim
from physgen.models.flows import MAF

DT = torch.float64
K = 4


def test_uniform_bound_is_exact_for_a_piecewise_constant_density() -> None:
    # p(y) = K^D P(floor(K y)) on [0,1)^2 is constant on every cell, so Jensen is an equality.
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(K, K, generator=g, dtype=DT)
    probs /= probs.sum()

    def log_p(y: Tensor) -> Tensor:
        cell = (K * y).floor().long()
        return torch.log(probs[cell[:, 0], cell[:, 1]]) + 2 * math.log(K)

    x = torch.randint(0, K, (500, 2), generator=g).to(DT)
    bound = dequantized_log_likelihood(log_p, x, UniformDequantization(K))
    exact = torch.log(probs[x[:, 0].long(), x[:, 1].long()])
    torch.testing.assert_close(bound, exact)
    torch.testing.assert_close(bits_per_dim(bound, 2), -exact / (2 * math.log(2)))
    # The same figure through the metrics' own offset for data modelled on [0, 1).
    y, _ = UniformDequantization(K)(x)
    torch.testing.assert_close(bits_per_dim(log_p(y), 2, bins=K), bits_per_dim(bound, 2))


MU, SIGMA = 0.3, 0.15


def _truncnorm_log_p(y: Tensor) -> Tensor:
    """A smooth density on [0, 1): a normal truncated to the unit interval."""
    normal = torch.distributions.Normal(torch.tensor(MU, dtype=DT), torch.tensor(SIGMA, dtype=DT))
    mass = normal.cdf(torch.tensor(1.0, dtype=DT)) - normal.cdf(torch.tensor(0.0, dtype=DT))
    return normal.log_prob(y) - torch.log(mass)


def _exact_log_P(levels: Tensor) -> Tensor:
    normal = torch.distributions.Normal(torch.tensor(MU, dtype=DT), torch.tensor(SIGMA, dtype=DT))
    mass = normal.cdf(torch.tensor(1.0, dtype=DT)) - normal.cdf(torch.tensor(0.0, dtype=DT))
    return torch.log((normal.cdf((levels + 1) / K) - normal.cdf(levels / K)) / mass)


def _uniform_expectation(levels: Tensor) -> Tensor:
    """E_u[log p((x + u)/K)] - log K by midpoint quadrature on 20,000 nodes."""
    u = (torch.arange(20_000, dtype=DT) + 0.5) / 20_000
    return _truncnorm_log_p((levels[:, None] + u) / K).mean(1) - math.log(K)


def test_uniform_bound_matches_quadrature_and_lies_below_log_P() -> None:
    levels = torch.arange(K, dtype=DT)
    x = levels.repeat_interleave(20_000)[:, None]  # (4 * 20000, 1)
    torch.manual_seed(0)
    bound = dequantized_log_likelihood(
        lambda y: _truncnorm_log_p(y[:, 0]), x, UniformDequantization(K)
    ).reshape(K, -1)
    expected = _uniform_expectation(levels)
    se = bound.std(1) / math.sqrt(bound.shape[1])
    assert torch.all((bound.mean(1) - expected).abs() < 4 * se)
    assert torch.all(expected < _exact_log_P(levels))  # Jensen, strict for a non-flat density


def _flow() -> MAF:
    torch.manual_seed(1)
    return MAF(features=1, cond_shape=[1], transforms=2, hidden=[32, 32]).to(DT)


def test_variational_density_is_normalised_and_consistent() -> None:
    flow = _flow()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    deq = VariationalDequantization(flow, K)
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=DT)
    with torch.no_grad():
        y, log_q = deq(x)
        u = y * K - x
        assert torch.all((u > 0) & (u < 1))
        # log q by the change of variables u = sigmoid(v), evaluated independently.
        v = torch.logit(u)
        dist = flow(2 * x / (K - 1) - 1)
        ref = dist.log_prob(v) - (-F.softplus(-v) - F.softplus(v)).sum(-1)
        torch.testing.assert_close(log_q, ref)
        # q(. | x) integrates to one over (0, 1) (midpoint rule on a fine grid).
        grid = (torch.arange(20_000, dtype=DT) + 0.5) / 20_000
        for level in range(K):
            c = torch.full((20_000, 1), 2 * level / (K - 1) - 1, dtype=DT)
            vg = torch.logit(grid)[:, None]
            qg = flow(c).log_prob(vg) - (-F.softplus(-vg) - F.softplus(vg))[:, 0]
            assert abs(qg.exp().mean().item() - 1) < 2e-3


def test_variational_dequantization_tightens_the_bound() -> None:
    flow = _flow()
    deq = VariationalDequantization(flow, K)
    levels = torch.arange(K, dtype=DT)
    x = levels.repeat(64)[:, None]

    def log_p(y: Tensor) -> Tensor:
        return _truncnorm_log_p(y[:, 0])

    opt = torch.optim.Adam(flow.parameters(), lr=5e-3)
    for _ in range(300):
        opt.zero_grad()
        (-dequantized_log_likelihood(log_p, x, deq)).mean().backward()
        opt.step()
    xt = levels.repeat_interleave(4000)[:, None]
    with torch.no_grad():
        bound = dequantized_log_likelihood(log_p, xt, deq).reshape(K, -1)
    se = bound.std(1) / math.sqrt(bound.shape[1])
    gap_variational = _exact_log_P(levels) - bound.mean(1)
    gap_uniform = _exact_log_P(levels) - _uniform_expectation(levels)
    print("gaps uniform", gap_uniform.tolist(), "variational", gap_variational.tolist())
    assert torch.all(gap_variational > -4 * se)  # still a lower bound
    assert gap_variational.sum() < 0.25 * gap_uniform.sum()


def test_bad_data_raise_clear_errors() -> None:
    deq = UniformDequantization(K)
    with pytest.raises(ValueError, match="integer"):
        deq(torch.tensor([[0.5]]))
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        deq(torch.tensor([[4.0]]))
    with pytest.raises(ValueError, match="samples"):
        dequantized_log_likelihood(lambda y: y.sum(-1), torch.zeros(2, 1), deq, samples=0)
