"""Autoencoders: codec shapes on odd grids, denoising and sparsity terms, learning a subspace."""

from __future__ import annotations

import pytest
import torch

from physgen.models.autoencoder import Autoencoder, sparsity_kl
from physgen.nn.conv import ConvDecoder, ConvEncoder


@pytest.mark.parametrize("shape", [(1, 17), (3, 32), (2, 13, 10), (1, 5, 6, 7)])
def test_conv_codec_round_trips_any_grid_size(shape: tuple[int, ...]) -> None:
    enc = ConvEncoder(shape, 6, channels=(4, 8))
    dec = ConvDecoder(6, shape, channels=(8, 4))
    x = torch.randn(2, *shape)
    assert enc(x).shape == (2, 6)
    assert dec(enc(x)).shape == x.shape


def test_mean_pooled_encoder_ignores_where_a_feature_sits() -> None:
    # Convolutions are equivariant to shifts by the total stride (2 levels: 4 nodes) and the
    # grid mean is invariant to them, so a bump moved by 4 nodes, far from both ends, gives the
    # same code to rounding; the flattened encoder (the control) sees the move.
    torch.manual_seed(0)
    x = torch.zeros(1, 2, 64, dtype=torch.float64)
    x[0, :, 20:27] = torch.randn(2, 7, dtype=torch.float64)
    moved = torch.roll(x, 16, dims=-1)
    pooled = ConvEncoder((2, 64), 5, channels=(4, 8), pool="mean").double()
    flat = ConvEncoder((2, 64), 5, channels=(4, 8)).double()
    torch.testing.assert_close(pooled(moved), pooled(x), rtol=0, atol=1e-13)
    moments = ConvEncoder((2, 64), 5, channels=(4, 8), pool="moments").double()
    torch.testing.assert_close(moments(moved), moments(x), rtol=0, atol=1e-13)
    assert (flat(moved) - flat(x)).abs().max() > 1e-3
    # the pooled code is a linear map of the grid-averaged features, whatever the grid size
    longer = torch.cat([x, torch.zeros(1, 2, 64, dtype=torch.float64)], -1)
    assert pooled(longer).shape == (1, 5)
    with pytest.raises(ValueError, match="pool must be"):
        ConvEncoder((1, 8), 3, pool="max")


def test_denoising_corruption_only_in_training() -> None:
    torch.manual_seed(0)
    n = 20_000
    for noise in ("gaussian", "dropout"):
        ae = Autoencoder((8,), latent_dim=2, hidden=(8,), noise=noise, noise_level=0.3)
        x = torch.ones(n, 8)
        ae.train()
        corrupted = ae.corrupt(x)
        if noise == "gaussian":  # x + 0.3 ε: the std of the noise within 4 standard errors
            std = (corrupted - x).std()
            assert abs(std - 0.3) < 4 * 0.3 / (2 * 8 * n) ** 0.5
        else:  # masking noise: each entry zeroed with probability 0.3, the rest untouched
            assert set(corrupted.unique().tolist()) == {0.0, 1.0}
            dropped = (corrupted == 0).double().mean()
            assert abs(dropped - 0.3) < 4 * (0.3 * 0.7 / (8 * n)) ** 0.5
        x = torch.ones(4, 8)
        ae.eval()
        assert torch.equal(ae.corrupt(x), x)
        # Evaluation loss is deterministic: no corruption, target is the clean input.
        assert torch.equal(ae.loss(x), ae.loss(x))


def test_sparsity_kl_is_zero_exactly_at_the_target_rate() -> None:
    codes = torch.full((10, 3), 0.05)
    assert sparsity_kl(codes, 0.05).item() == pytest.approx(0.0, abs=1e-7)
    assert sparsity_kl(torch.full((10, 3), 0.3), 0.05) > 0.1


def test_l1_sparsity_adds_the_code_norm() -> None:
    torch.manual_seed(0)
    ae = Autoencoder((6,), latent_dim=3, hidden=(8,), sparsity="l1", sparsity_weight=0.1).eval()
    x = torch.randn(5, 6)
    z = ae.encode(x)
    plain = (ae.decode(z) - x).pow(2).mean(1)
    torch.testing.assert_close(ae.loss(x), plain + 0.1 * z.abs().sum(1))


def test_kl_sparse_codes_are_rates() -> None:
    ae = Autoencoder((6,), latent_dim=3, hidden=(8,), sparsity="kl")
    z = ae.encode(torch.randn(5, 6) * 10)
    assert torch.all((z > 0) & (z < 1))


def test_linear_autoencoder_recovers_a_rank_two_subspace() -> None:
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(6, 2))[0]
    data = torch.randn(512, 2) @ basis.T
    ae = Autoencoder((6,), latent_dim=2, hidden=(), act="tanh")
    opt = torch.optim.Adam(ae.parameters(), lr=2e-2)
    for _ in range(400):
        opt.zero_grad()
        ae.loss(data).mean().backward()
        opt.step()
    rel = ae.loss(data).mean() / data.pow(2).mean()
    assert rel < 1e-3
    # Codes are tracked during training, so samples lie in the learned subspace.
    samples = ae.sample(64)
    off_plane = samples - samples @ basis @ basis.T
    assert off_plane.pow(2).mean() < 1e-3 * samples.pow(2).mean()


def test_bad_options_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="noise"):
        Autoencoder((4,), noise="salt")
    with pytest.raises(ValueError, match="arch"):
        Autoencoder((4,), arch="transformer")
    with pytest.raises(ValueError, match="conv"):
        Autoencoder((4,), arch="conv")


def test_a_float64_model_samples_in_float64() -> None:
    ae = Autoencoder((6,), latent_dim=2, hidden=(8,)).double()
    ae.loss(torch.randn(16, 6, dtype=torch.float64))  # tracks the codes in float64
    assert ae.sample(4).dtype == torch.float64
