"""Per-sample errors: definitions, reference equivalences and Plancherel for the spectral bins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from physgen.metrics import binned_spectral_error, relative_l2, rmse, vrmse


def test_relative_l2_equals_pdebench_nrmse_and_numpy() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(5, 2, 16, 16)).astype(np.float32)
    yhat = y + 0.1 * rng.normal(size=y.shape).astype(np.float32)
    ours = relative_l2(yhat, y, spatial_dims=2)  # per sample and channel
    assert ours.shape == (5, 2) and ours.dtype == torch.float64
    # PDEBench nRMSE: √mean(ŷ−y)² / √mean y² per sample/channel.
    y64, yhat64 = y.astype(np.float64), yhat.astype(np.float64)
    nrmse = np.sqrt(((yhat64 - y64) ** 2).mean((2, 3))) / np.sqrt((y64**2).mean((2, 3)))
    np.testing.assert_allclose(ours.numpy(), nrmse, rtol=1e-12)
    whole = relative_l2(torch.from_numpy(yhat), torch.from_numpy(y))  # all but axis 0
    diff = (yhat64 - y64).reshape(5, -1)
    expected = np.linalg.norm(diff, axis=1) / np.linalg.norm(y64.reshape(5, -1), axis=1)
    np.testing.assert_allclose(whole.numpy(), expected, rtol=1e-12)


def test_rmse_and_vrmse_reference_values() -> None:
    y = torch.randn(4, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert rmse(y + 0.5, y).tolist() == pytest.approx([0.5] * 4)
    # Predicting the spatial mean: VRMSE = √((n−1)/n) with The Well's Bessel-corrected variance.
    mean_pred = y.mean(1, keepdim=True).expand_as(y)
    assert vrmse(mean_pred, y).tolist() == pytest.approx([math.sqrt(63 / 64)] * 4, rel=1e-6)
    assert vrmse(y, y).tolist() == [0.0] * 4


def test_binned_spectral_error_sums_to_mse_and_localises_scales() -> None:
    gen = torch.Generator().manual_seed(2)
    y = torch.randn(3, 32, 32, generator=gen, dtype=torch.float64)
    err = torch.randn(3, 32, 32, generator=gen, dtype=torch.float64)
    bins = binned_spectral_error(y + err, y, spatial_dims=2, normalized=False)
    assert bins.shape == (3, 3)
    torch.testing.assert_close(bins.sum(-1), err.square().mean((1, 2)))  # Plancherel
    # A checkerboard error (|k| = π√2) lives only in the high band; a constant only in the low.
    x = torch.arange(32)
    checker = ((-1.0) ** (x[:, None] + x[None, :])).double()
    high = binned_spectral_error(y + checker, y, spatial_dims=2, normalized=False)
    torch.testing.assert_close(high[:, :2], torch.zeros(3, 2, dtype=torch.float64))
    low = binned_spectral_error(y + 1.0, y, spatial_dims=2, normalized=False)
    torch.testing.assert_close(low[:, 1:], torch.zeros(3, 2, dtype=torch.float64))
    torch.testing.assert_close(low[:, 0], torch.ones(3, dtype=torch.float64))
    # Normalised per band by the target's energy: a 10 % rescale is 1 % in every band.
    nmse = binned_spectral_error(1.1 * y, y, spatial_dims=2)
    torch.testing.assert_close(nmse, torch.full((3, 3), 0.01, dtype=torch.float64))


def test_paired_errors_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="pred has shape"):
        relative_l2(torch.zeros(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="spatial_dims"):
        rmse(torch.zeros(2, 3), torch.ones(2, 3), spatial_dims=3)
    with pytest.raises(ValueError, match="increasing"):
        binned_spectral_error(torch.zeros(2, 8), torch.ones(2, 8), spatial_dims=1, edges=[1, 0])
