"""Residual inpainting: fill + drawn residual on the gap, observations kept, spread inflation."""

from __future__ import annotations

import pytest
import torch

from physgen.inverse import (
    Mask,
    box_mask,
    complete_residual,
    harmonic_fill,
    missing_region_scores,
    spread_inflation,
    spread_skill_interval,
)
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


def test_an_inflation_field_shapes_the_spread_point_by_point_about_the_same_mean():
    op, _, y, fill = _setup()
    residual = torch.randn(3, 5, 1, 8, 8, dtype=torch.float64)
    field = 0.5 + torch.rand(3, 1, 8, 8, dtype=torch.float64)
    plain = complete_residual(op, y, fill, residual)
    shaped = complete_residual(op, y, fill, residual, inflation=field)
    miss = op.missing
    assert torch.allclose(shaped.mean(1), plain.mean(1), rtol=0, atol=1e-13)
    spread = lambda x: x[..., miss].std(1)  # noqa: E731
    assert torch.allclose(spread(shaped), field[..., miss] * spread(plain), rtol=1e-12, atol=0)
    # A constant field is the scalar inflation; negative control: the field transposed differs.
    torch.testing.assert_close(
        complete_residual(op, y, fill, residual, inflation=torch.full_like(fill, 2.5)),
        complete_residual(op, y, fill, residual, inflation=2.5), rtol=0, atol=1e-14,
    )  # fmt: skip
    flipped = complete_residual(op, y, fill, residual, inflation=field.transpose(-1, -2))
    assert not torch.allclose(spread(flipped), spread(shaped))
    for bad in (field[:1], -field, field * float("nan")):
        with pytest.raises(ValueError, match="inflation field"):
            complete_residual(op, y, fill, residual, inflation=bad)


def _calibrated(cases: int, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Truth and 8 members drawn from one Gaussian per case (its scale log-normal across cases,
    so cases differ): a calibrated ensemble, or one whose members are ``spread`` times too
    wide about the same centre."""
    gen = torch.Generator().manual_seed(seed)
    sigma = torch.exp(0.2 * torch.randn(cases, 1, 1, 1, generator=gen, dtype=torch.float64))
    centre = sigma * torch.randn(cases, 1, 4, 4, generator=gen, dtype=torch.float64)
    truth = centre + sigma * torch.randn(cases, 1, 4, 4, generator=gen, dtype=torch.float64)
    noise = torch.randn(cases, 8, 1, 4, 4, generator=gen, dtype=torch.float64)
    return centre[:, None] + spread * sigma[:, None] * noise, truth


def test_spread_skill_interval_covers_a_calibrated_ensemble_at_its_level():
    miss = torch.ones(4, 4, dtype=torch.bool)
    members, truth = _calibrated(30, 1.0, seed=0)
    ratio = missing_region_scores(members, truth, miss)["spread_skill"]
    lo, hi = spread_skill_interval(members, truth, miss, n_boot=500)
    assert lo < ratio < hi
    # One case repeated: every resample is that case, so the interval is the point estimate.
    one = spread_skill_interval(members[:1].repeat(5, 1, 1, 1, 1), truth[:1].repeat(5, 1, 1, 1),
                                miss, n_boot=50)  # fmt: skip
    single = missing_region_scores(members[:1], truth[:1], miss)["spread_skill"]
    assert one == pytest.approx((single, single), rel=1e-12)
    # Coverage of SSR = 1 over 200 independent calibrated sets of 30 cases: 90 % within three
    # binomial standard errors (2.1 %) and the percentile method's O(1/n) shortfall.
    # Negative control: members 1.5 times too wide are (almost) never covered.
    reps = 200
    se = (0.9 * 0.1 / reps) ** 0.5
    for spread, expect in ((1.0, 0.9), (1.5, 0.0)):
        hits = 0
        for seed in range(reps):
            lo, hi = spread_skill_interval(*_calibrated(30, spread, seed + 1), miss, n_boot=300)
            hits += lo <= 1.0 <= hi
        assert abs(hits / reps - expect) < 3 * se + 1 / 30
    with pytest.raises(ValueError, match="2 members"):
        spread_skill_interval(members[:, :1], truth, miss)
