"""Spread calibration per lead time: the mean is kept, the fitted factors bring SSR to 1."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from physgen.emulation import (
    fit_spread_calibration,
    lead_time_scores,
    lead_time_ssr_interval,
    scale_spread,
)


def _ensemble(seed: int = 0, b: int = 6, m: int = 5, t: int = 4) -> tuple[Tensor, Tensor]:
    """Members ``(b, m, t, 1, 16)`` and truth ``(b, t, 1, 16)``, with a spread that is wrong
    by a different factor at each lead time."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(b, t, 1, 16, generator=g, dtype=torch.float64)
    wrong = torch.linspace(0.3, 3.0, t, dtype=torch.float64).reshape(1, 1, t, 1, 1)
    error = torch.randn(b, 1, t, 1, 16, generator=g, dtype=torch.float64)  # of the mean
    noise = torch.randn(b, m, t, 1, 16, generator=g, dtype=torch.float64)
    members = truth[:, None] + error + wrong * noise
    return members, truth


def _ratios(members: Tensor, truth: Tensor) -> Tensor:
    return torch.tensor(lead_time_scores(members, truth)["spread_skill"], dtype=torch.float64)


def test_scaling_keeps_the_ensemble_mean_and_scales_each_leads_spread() -> None:
    members, truth = _ensemble()
    factors = torch.tensor([0.5, 1.0, 2.0, 3.5], dtype=torch.float64)
    scaled = scale_spread(members, factors)
    eps = torch.finfo(torch.float64).eps
    # The mean of m terms moves by rounding only: a few ulps of the largest member value.
    assert (scaled.mean(1) - members.mean(1)).abs().max() < 16 * eps * members.abs().max()
    before, after = lead_time_scores(members, truth), lead_time_scores(scaled, truth)
    assert after["rmse"] == pytest.approx(before["rmse"], rel=1e-12)
    assert torch.tensor(after["spread"]) / torch.tensor(before["spread"]) == pytest.approx(
        factors, rel=1e-12
    )
    assert _ratios(scaled, truth) / _ratios(members, truth) == pytest.approx(factors, rel=1e-12)
    # Control: scaling about zero instead of the member mean moves the mean.
    about_zero = members * factors.reshape(1, 1, -1, 1, 1)
    assert (about_zero.mean(1) - members.mean(1)).abs().max() > 0.1


def test_interpolating_factors_make_every_validation_ssr_exactly_one() -> None:
    members, truth = _ensemble()
    times = torch.tensor([0.05, 0.1, 0.15, 0.2], dtype=torch.float64)
    assert (_ratios(members, truth) - 1).abs().max() > 0.5  # miscalibrated to begin with
    calibration = fit_spread_calibration(members, truth, times, degree=3)
    # A 4 × 4 Vandermonde solve (condition ~1e3) in float64: exact to ~1e-12.
    assert _ratios(calibration.apply(members, times), truth) == pytest.approx(
        torch.ones(4, dtype=torch.float64), abs=1e-10
    )
    factors = calibration.factors(times)
    # Negative controls: the factors of another lead time (reversed) or inverted miss by far.
    assert (_ratios(scale_spread(members, factors.flip(0)), truth) - 1).abs().max() > 0.5
    assert (_ratios(scale_spread(members, 1 / factors), truth) - 1).abs().max() > 0.5


def test_a_smooth_ssr_profile_is_recovered_by_the_matching_degree() -> None:
    """Ratios set exactly to exp(0.4 − 1.5 t' + 0.9 t'²), t' = t / t_max: degree 2 fits
    log s = −(that) and calibrates every lead; degree 1 cannot (the control)."""
    members, truth = _ensemble(seed=1, t=6)
    times = torch.linspace(0.1, 0.6, 6, dtype=torch.float64)
    u = times / times.max()
    target = (0.4 - 1.5 * u + 0.9 * u**2).exp()
    members = scale_spread(members, target / _ratios(members, truth))
    assert _ratios(members, truth) == pytest.approx(target, rel=1e-12)
    calibration = fit_spread_calibration(members, truth, times, degree=2)
    assert calibration.coefficients == pytest.approx((-0.4, 1.5, -0.9), abs=1e-10)
    calibrated = _ratios(calibration.apply(members, times), truth)
    assert calibrated == pytest.approx(torch.ones(6, dtype=torch.float64), abs=1e-10)
    linear = fit_spread_calibration(members, truth, times, degree=1)
    assert (_ratios(linear.apply(members, times), truth) - 1).abs().max() > 0.02


def test_calibration_rejects_an_ensemble_without_spread_and_bad_factors() -> None:
    members, truth = _ensemble()
    times = [0.1, 0.2, 0.3, 0.4]
    flat = members.mean(1, keepdim=True).expand_as(members)
    with pytest.raises(ValueError, match="spread–skill ratios must be finite and > 0"):
        fit_spread_calibration(flat, truth, times)
    with pytest.raises(ValueError, match="factors must be > 0"):
        scale_spread(members, [1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"factors must be \(T,\)"):
        scale_spread(members, [1.0, 1.0])
    with pytest.raises(ValueError, match="times must be 4 positive lead times"):
        fit_spread_calibration(members, truth, [0.1, 0.2])


def test_ssr_interval_of_identical_cases_is_the_pooled_ratio() -> None:
    # Every resample of B copies of one case is that case: a zero-width interval at the
    # ratio of lead_time_scores; distinct cases give a positive width.
    members, truth = _ensemble(b=1)
    copies = members.expand(8, -1, -1, -1, -1), truth.expand(8, -1, -1, -1)
    ci = lead_time_ssr_interval(*copies, n_boot=50)
    expected = lead_time_scores(*copies)["spread_skill"]
    assert ci["low"] == pytest.approx(expected, rel=1e-12)
    assert ci["high"] == pytest.approx(expected, rel=1e-12)
    members, truth = _ensemble(b=8)
    ci = lead_time_ssr_interval(members, truth, n_boot=200)
    pooled = lead_time_scores(members, truth)["spread_skill"]
    for lo, hi, r in zip(ci["low"], ci["high"], pooled, strict=True):
        assert lo < r < hi


def test_ssr_interval_covers_one_for_a_calibrated_ensemble_only() -> None:
    # Truth and members i.i.d. N(0, 1) per point: a reliable ensemble, ratio ≈ 1 with a
    # sampling error of a few % for 40 cases of 16 points; the 90 % interval holds 1. The
    # same ensemble with half the spread (ratio ≈ 0.5) is excluded at every lead time.
    g = torch.Generator().manual_seed(3)
    truth = torch.randn(40, 3, 1, 16, generator=g, dtype=torch.float64)
    members = torch.randn(40, 5, 3, 1, 16, generator=g, dtype=torch.float64)
    ci = lead_time_ssr_interval(members, truth, n_boot=500)
    assert all(lo < 1 < hi for lo, hi in zip(ci["low"], ci["high"], strict=True))
    narrow = scale_spread(members, torch.full((3,), 0.5, dtype=torch.float64))
    ci = lead_time_ssr_interval(narrow, truth, n_boot=500)
    assert all(hi < 0.8 for hi in ci["high"])
    with pytest.raises(ValueError, match="at least 2 members"):
        lead_time_ssr_interval(members[:, :1], truth)
    with pytest.raises(ValueError, match="0 < level < 1"):
        lead_time_ssr_interval(members, truth, level=1.5)
