"""nats/dim and bits/dim: change of variables and dequantization offsets against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from physgen.metrics import bits_per_dim, bits_to_nats, nats_per_dim, nats_to_bits


def test_scaled_gaussian_nll_in_data_units() -> None:
    # Data y ~ N(0, σ²) in D dims, modelled exactly after the z-score z = y/σ.
    sigma, d = 3.0, 10
    y = sigma * torch.randn(
        1000, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    log_p_z = torch.distributions.Normal(0.0, 1.0).log_prob(y / sigma).sum(-1)
    exact = -torch.distributions.Normal(0.0, sigma).log_prob(y).sum(-1) / d
    torch.testing.assert_close(nats_per_dim(log_p_z, d, data_scale=1 / sigma), exact)
    # Per-dimension scales enter as Σ log|s_i|.
    scales = torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    log_p_z = torch.distributions.Normal(0.0, 1.0).log_prob(y * scales).sum(-1)
    exact = -torch.distributions.Normal(0.0, 1 / scales).log_prob(y).sum(-1) / d
    torch.testing.assert_close(nats_per_dim(log_p_z, d, data_scale=scales), exact)
    torch.testing.assert_close(bits_per_dim(log_p_z, d, data_scale=scales), exact / math.log(2))


def test_dequantized_uniform_is_eight_bits() -> None:
    # A uniform density on [0, 1)^D for 8-bit data: every level has probability 1/256.
    assert bits_per_dim(torch.zeros(4), 3 * 32 * 32, bins=256).tolist() == pytest.approx([8.0] * 4)


def test_dequantization_bound_is_tight_for_a_histogram_density() -> None:
    # p_z piecewise constant on the K bins of z = (x + u)/K: the bound equals −log P(x) exactly.
    k = 4
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    x = torch.tensor([0, 1, 2, 3, 3])
    log_p_z = (probs[x] * k).log()  # density of z in bin x
    torch.testing.assert_close(nats_per_dim(log_p_z, 1, bins=k), -probs[x].log())


def test_unit_conversions_and_errors() -> None:
    torch.testing.assert_close(
        bits_to_nats(nats_to_bits(torch.tensor([1.5]))), torch.tensor([1.5], dtype=torch.float64)
    )
    assert nats_to_bits(math.log(2)).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="num_dims"):
        nats_per_dim(torch.zeros(1), 0)
    with pytest.raises(ValueError, match="data_scale has 3 entries"):
        nats_per_dim(torch.zeros(1), 2, data_scale=torch.ones(3))
