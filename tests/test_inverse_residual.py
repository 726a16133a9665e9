"""Residual inpainting: fill + drawn residual on the gap, observations kept, spread inflation."""

from __future__ import annotations

import pytest
import torch

from physgen.inverse import Mask, box_mask, complete_residual, harmonic_fill, spread_inflation
from physgen.metrics.ensemble import spread_skill_ratio


def _setup() -> tuple[Mask, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    op = Mask(box_mask((8, 8), 0.25))
    truth = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    y = op(truth)
    fill = torch.as_tensor(harmonic_fill(truth.numpy(), op.missing.numpy()))
    return op, truth, y, fill


def test_a_zero_residual_reproduces_the_fill_on_the_gap_and_the_observations_elsewhere():
    op, truth, y, fill = _setup()
    members = complete_residual(op, y, fill, torch.zeros(3, 4, 1, 8, 8, dtype=torch.float64))
    miss, obs = op.missing, op.observed
    assert torch.equal(members[..., miss], fill[:, None][..., miss].expand(-1, 4, -1, -1))
    assert torch.equal(members[..., obs], truth[:, None][..., obs].expand(-1, 4, -1, -1))
    # Negative control: a residual that is nonzero only where observed changes nothing, one
    # that is nonzero on the gap moves exactly the gap by that amount.
    outside = complete_residual(op, y, fill, 7.0 * obs.double().expand(3, 4, 1, 8, 8))
    assert torch.equal(outside, members)
    inside = complete_residual(op, y, fill, 2.0 * miss.double().expand(3, 4, 1, 8, 8))
    assert torch.allclose(inside - members, 2.0 * miss.double(), rtol=0, atol=1e-15)


def test_inflation_scales_the_spread_about_an_unchanged_ensemble_mean():
    op, _, y, fill = _setup()
    residual = torch.randn(3, 5, 1, 8, 8, dtype=torch.float64)
    plain = complete_residual(op, y, fill, residual)
    wide = complete_residual(op, y, fill, residual, inflation=2.5)
    assert torch.allclose(wide.mean(1), plain.mean(1), rtol=0, atol=1e-13)
    spread = lambda x: x[..., op.missing].std(1)  # noqa: E731
    assert torch.allclose(spread(wide), 2.5 * spread(plain), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="inflation"):
        complete_residual(op, y, fill, residual, inflation=0.0)
    with pytest.raises(ValueError, match="member axis"):
        complete_residual(op, y, fill, residual[:, 0])


def test_spread_inflation_calibrates_the_spread_skill_ratio_on_the_cases_it_sees():
    op, truth, y, fill = _setup()
    residual = 0.2 * torch.randn(3, 6, 1, 8, 8, dtype=torch.float64)  # far too narrow
    plain = complete_residual(op, y, fill, residual)
    miss = op.missing
    s = spread_inflation(plain, truth, miss)
    ratio = lambda x: float(spread_skill_ratio(x[..., miss], truth[..., miss], member_dim=1))  # noqa: E731
    assert ratio(plain) < 0.9  # negative control: uncalibrated before
    assert ratio(complete_residual(op, y, fill, residual, inflation=s)) == pytest.approx(
        1.0, abs=1e-12
    )
    with pytest.raises(ValueError, match="no spread"):
        spread_inflation(fill[:, None].expand(-1, 2, -1, -1, -1), truth, miss)
