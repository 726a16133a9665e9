"""Latent traversals: each row moves exactly one latent, and the figure is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from physgen.models.autoencoder import Autoencoder
from physgen.models.vae import VAE
from physgen.plotting import latent_traversal, traversal_fields


def test_traversal_moves_one_latent_per_row() -> None:
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=3, arch="conv", channels=[4], hidden=[16]).eval()
    values = (-1.0, 0.0, 2.0)
    fields = traversal_fields(vae, dims=[0, 2], values=values)
    assert fields.shape == (2, 3, 1, 8, 8)
    for i, d in enumerate((0, 2)):
        for k, v in enumerate(values):
            z = torch.zeros(1, 3)
            z[0, d] = v
            with torch.no_grad():
                expected = vae.decode(z)[0].double().numpy()
            np.testing.assert_allclose(fields[i, k], expected, rtol=1e-6, atol=1e-6)
    # The zero offset is the same base code in every row.
    np.testing.assert_allclose(fields[0, 1], fields[1, 1])
    # Negative control: a latent the decoder ignores gives a constant row; a used one does not.
    ae = Autoencoder((6,), latent_dim=2, hidden=(8,)).eval()
    with torch.no_grad():
        first = next(m for m in ae.decoder.modules() if isinstance(m, torch.nn.Linear))
        first.weight[:, 1] = 0.0
    rows = traversal_fields(ae, values=(-2.0, 2.0))
    np.testing.assert_allclose(rows[1, 0], rows[1, 1])
    assert not np.allclose(rows[0, 0], rows[0, 1])


def test_latent_traversal_figure_and_errors(tmp_path: Path) -> None:
    vae = VAE((2, 8, 8), latent_dim=2, arch="conv", channels=[4], hidden=[16]).eval()
    path = latent_traversal(vae, tmp_path / "t.png", channel=1, labels={0: "length"})
    assert path.stat().st_size > 0
    line = latent_traversal(VAE((1, 12), latent_dim=2, hidden=(8,)), tmp_path / "l.png")
    assert line.stat().st_size > 0
    with pytest.raises(ValueError, match=r"latent dims \[5\] out of range"):
        traversal_fields(vae, dims=[5])
    with pytest.raises(TypeError, match="no latent code"):
        traversal_fields(torch.nn.Linear(2, 2))


def test_traversal_with_one_noise_draw_shows_the_decoder_scale() -> None:
    # decode_draw(z, ε) = m(z) + Cᵀ(s(z) ⊙ ε): with a spectral scale the draw is the mean plus
    # the inverse DCT (scipy's, independently) of the scaled noise; one ε is shared by all.
    from scipy.fft import idct

    torch.manual_seed(0)
    vae = VAE((1, 10), latent_dim=2, hidden=(8,), decoder_scale="spectral").double().eval()
    values = (-2.0, 2.0)
    drawn = traversal_fields(vae, values=values, noise_seed=3)
    mean = traversal_fields(vae, values=values)
    eps = torch.randn((1, 1, 10), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for i in range(2):
        for k, v in enumerate(values):
            z = torch.zeros(1, 2, dtype=torch.float64)
            z[0, i] = v
            with torch.no_grad():
                s = (0.5 * vae._decoder_logvar(z, None)).exp()
            noise = idct((s * eps[0]).numpy(), type=2, norm="ortho", axis=-1)
            np.testing.assert_allclose(drawn[i, k], mean[i, k] + noise, rtol=1e-10, atol=1e-12)
    # control: a latent that moves the scale changes the noise part; a constant scale does not
    assert not np.allclose(drawn[0, 0] - mean[0, 0], drawn[0, 1] - mean[0, 1])
    flat = VAE((1, 10), latent_dim=2, hidden=(8,)).double().eval()
    rows = traversal_fields(flat, values=values, noise_seed=3) - traversal_fields(
        flat, values=values
    )
    np.testing.assert_allclose(rows[0, 0], rows[1, 1], rtol=1e-10, atol=1e-12)
    with pytest.raises(TypeError, match="no decode_draw"):
        traversal_fields(Autoencoder((6,), latent_dim=2, hidden=(8,)), noise_seed=0)
