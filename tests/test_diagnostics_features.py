"""The physics feature distance: zero for identical sets, the closed form for a linear
encoder, at its floor for a fresh draw of the reference law, monotone in a shift."""

from __future__ import annotations

import itertools

import pytest
import torch

from physgen.diagnostics import encoder_features, feature_distance, feature_frechet
from physgen.models.autoencoder import Autoencoder
from physgen.models.vae import VAE


def _fields(n: int, seed: int) -> torch.Tensor:
    """Smooth random 1-channel fields on 8×8: a few random Fourier modes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 1, 8)
    a = torch.randn(n, 3, generator=g, dtype=torch.float64)
    modes = [
        torch.sin((k + 1) * torch.pi * x)[:, None] * torch.cos(k * torch.pi * x) for k in range(3)
    ]
    return (a[:, :, None, None] * torch.stack(modes)).sum(1, keepdim=True)


def test_identical_sets_and_the_linear_closed_form() -> None:
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=4, arch="conv", channels=[4], hidden=[16]).eval()
    x = _fields(200, 1)
    assert float(feature_frechet(encoder_features(vae), x, x)) == pytest.approx(0.0, abs=1e-8)
    # A linear encoder W: shifting every field by δ moves the mean by Wδ and keeps the
    # covariance, so d_F = ‖Wδ‖² exactly.
    w = torch.randn(5, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    linear = lambda f: f.double().flatten(1) @ w.T  # noqa: E731
    delta = 0.1 * torch.randn(
        1, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    exact = float((w @ delta.flatten()).square().sum())
    assert float(feature_frechet(linear, x + delta, x)) == pytest.approx(exact, rel=1e-5)


def test_floor_and_monotone_shift() -> None:
    torch.manual_seed(0)
    ae = Autoencoder((1, 8, 8), latent_dim=6, arch="conv", channels=[4], hidden=[16]).eval()
    features = encoder_features(ae)
    ref, fresh = _fields(400, 4), _fields(200, 5)
    same = feature_distance(features, fresh, ref)
    # A fresh draw of the reference law sits at the floor (within a few floor sds)...
    assert abs(same["value"] - same["floor"]) < 4 * same["floor_std"] + 0.2 * same["floor"]
    # ...and a shifted one does not (negative control); d_F grows with the shift.
    values = [feature_distance(features, fresh + s, ref)["value"] for s in (0.1, 0.2, 0.4, 0.8)]
    assert values[0] > same["value"]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert values[-1] > 10 * same["floor"]
    with pytest.raises(TypeError, match="has no encoder"):
        encoder_features(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
