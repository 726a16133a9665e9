"""Ensemble scores against closed forms: fair CRPS, spread–skill, rank histograms, coverage."""

from __future__ import annotations

import math

import pytest
import torch

from physgen.metrics import (
    calibrated_coverage,
    crps_fair,
    crps_nrg,
    energy_score,
    interval_coverage,
    observation_consistency,
    rank_histogram,
    spread_skill_bootstrap,
    spread_skill_ratio,
)

INV_SQRT_PI = 1 / math.sqrt(math.pi)


def _gaussian_ensemble(m: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    members = torch.randn(m, n, generator=gen, dtype=torch.float64)
    truth = torch.randn(n, generator=gen, dtype=torch.float64)
    return members, truth


@pytest.mark.parametrize("m", [2, 5, 10, 50])
def test_fair_crps_of_standard_normal_is_one_over_sqrt_pi(m: int) -> None:
    # CRPS(N(0,1), y) averaged over y ~ N(0,1) is E|X−Y| − ½E|X−X'| = 2/√π − 1/√π = 1/√π.
    members, truth = _gaussian_ensemble(m, 2_000_000 // m, seed=m)
    fair = crps_fair(members, truth)
    se = fair.std() / math.sqrt(fair.numel())
    assert abs(fair.mean().item() - INV_SQRT_PI) < 4 * se.item()
    # The NRG form is biased by E|X−X'|/(2M) = 1/(M√π): (1 + 1/M)/√π, e.g. 0.846 at M = 2.
    nrg = crps_nrg(members, truth)
    se = nrg.std() / math.sqrt(nrg.numel())
    assert abs(nrg.mean().item() - (1 + 1 / m) * INV_SQRT_PI) < 4 * se.item()


def test_crps_sorted_formula_matches_pairwise_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    members = torch.randn(3, 7, 4, generator=gen, dtype=torch.float64)  # member axis 1
    truth = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    x = members.movedim(1, 0)
    skill = (x - truth).abs().mean(0)
    pairs = (x[:, None] - x[None, :]).abs().sum((0, 1))
    torch.testing.assert_close(crps_fair(members, truth, member_dim=1), skill - pairs / (2 * 7 * 6))
    torch.testing.assert_close(crps_nrg(members, truth, member_dim=1), skill - pairs / (2 * 49))


def _cases(m: int, spread: float, n: int = 40_000, seed: int = 0):
    """Truth and members drawn around a random case mean; spread 1 = exchangeable."""
    gen = torch.Generator().manual_seed(seed)
    center = 3 * torch.randn(n, generator=gen, dtype=torch.float64)
    truth = center + torch.randn(n, generator=gen, dtype=torch.float64)
    members = center + spread * torch.randn(m, n, generator=gen, dtype=torch.float64)
    return members, truth


@pytest.mark.parametrize("m", [2, 5, 10])
def test_spread_skill_corrected_is_one_for_exchangeable_ensembles(m: int) -> None:
    members, truth = _cases(m, spread=1.0, seed=m)
    assert spread_skill_ratio(members, truth).item() == pytest.approx(1.0, abs=0.03)
    raw = spread_skill_ratio(members, truth, corrected=False).item()
    assert raw == pytest.approx(math.sqrt(m / (m + 1)), abs=0.03)


@pytest.mark.parametrize("m", [5, 10])
def test_spread_skill_below_one_for_underdispersed(m: int) -> None:
    members, truth = _cases(m, spread=0.5, seed=m)
    expected = 0.5 * math.sqrt((m + 1) / m) / math.sqrt(1 + 0.25 / m)
    ssr = spread_skill_ratio(members, truth).item()
    assert ssr == pytest.approx(expected, abs=0.03)
    assert ssr < 0.7


def test_rank_histogram_flat_for_exchangeable_and_u_shaped_when_underdispersed() -> None:
    m, n = 9, 40_000
    members, truth = _cases(m, spread=1.0, seed=1)
    freq = rank_histogram(members, truth)
    assert freq.shape == (m + 1,)
    assert freq.sum().item() == pytest.approx(1.0)
    chi2 = (n * (freq - 1 / (m + 1)).square() / (1 / (m + 1))).sum().item()
    assert chi2 < 30.0  # χ²(9 dof): P(χ² > 30) ≈ 4e-4

    members, truth = _cases(m, spread=0.5, seed=2)
    freq = rank_histogram(members, truth)
    assert freq[0] > 2.5 * freq[m // 2] and freq[-1] > 2.5 * freq[m // 2]


def test_rank_histogram_breaks_ties_at_random() -> None:
    # Truth equal to every member: each rank 0..M is equally likely.
    members = torch.zeros(4, 50_000)
    freq = rank_histogram(members, torch.zeros(50_000))
    torch.testing.assert_close(freq, torch.full((5,), 0.2, dtype=torch.float64), atol=0.01, rtol=0)


def test_interval_coverage_calibrated_vs_underdispersed() -> None:
    members, truth = _cases(50, spread=1.0, seed=3)
    cov = interval_coverage(members, truth, levels=(0.5, 0.9))
    # Order statistics 2..47 of 50 members (0-based) hold the truth with probability 45/51.
    assert calibrated_coverage(0.9, 50) == pytest.approx(45 / 51)
    assert cov[0.5] == pytest.approx(calibrated_coverage(0.5, 50), abs=0.01)
    assert cov[0.9] == pytest.approx(calibrated_coverage(0.9, 50), abs=0.01)
    for m in (3, 10):
        small = interval_coverage(*_cases(m, spread=1.0, seed=m), levels=(0.5, 0.9))
        for level in (0.5, 0.9):
            assert small[level] == pytest.approx(calibrated_coverage(level, m), abs=0.01)
    narrow = interval_coverage(*_cases(50, spread=0.5, seed=4), levels=(0.9,))
    assert narrow[0.9] < 0.65


def test_energy_score_reduces_to_crps_in_one_dimension() -> None:
    gen = torch.Generator().manual_seed(5)
    members = torch.randn(6, 10, 1, generator=gen, dtype=torch.float64)
    truth = torch.randn(10, 1, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(energy_score(members, truth), crps_fair(members, truth)[:, 0])
    torch.testing.assert_close(
        energy_score(members, truth, fair=False), crps_nrg(members, truth)[:, 0]
    )


def test_observation_consistency_of_block_averaged_members() -> None:
    gen = torch.Generator().manual_seed(6)

    def block_average(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 4)

    truth = torch.randn(3, 1, 16, 16, generator=gen, dtype=torch.float64)
    obs = block_average(truth)
    # Members that add block-mean-free detail reproduce the observation exactly.
    detail = torch.randn(5, 3, 1, 16, 16, generator=gen, dtype=torch.float64)
    detail = detail - torch.repeat_interleave(
        torch.repeat_interleave(block_average(detail.flatten(0, 1)), 4, -1), 4, -2
    ).reshape_as(detail)
    consistent = observation_consistency(truth + detail, obs, block_average)
    assert consistent.shape == (5, 3)
    assert consistent.max().item() < 1e-12
    inconsistent = observation_consistency(truth + 0.1 + detail, obs, block_average)
    assert inconsistent.min().item() > 1e-2


def test_ensemble_shape_errors_name_the_arguments() -> None:
    with pytest.raises(ValueError, match="obs has shape"):
        crps_fair(torch.zeros(4, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="at least 2 members"):
        spread_skill_ratio(torch.zeros(1, 3), torch.zeros(3))


def test_observation_consistency_with_the_inverse_layout_and_noise() -> None:
    from physgen.inverse.operators import BlockAverage

    gen = torch.Generator().manual_seed(7)
    op = BlockAverage(4, 2, noise_std=0.05)
    truth = torch.randn(3, 1, 16, 16, generator=gen, dtype=torch.float64)
    y = op.observe(truth, generator=gen)
    # Ensembles from physgen.inverse.solve are (B, M, C, *grid): member_dim = 1.
    detail = torch.randn(3, 4, 1, 16, 16, generator=gen, dtype=torch.float64)
    coarse = op(detail.flatten(0, 1)).reshape(3, 4, 1, 4, 4)
    detail = detail - coarse.repeat_interleave(4, -1).repeat_interleave(4, -2)
    misfit = observation_consistency(truth[:, None] + detail, y, op, member_dim=1)
    assert misfit.shape == (4, 3)
    # Each member reproduces A(truth), so the misfit is exactly the noise relative to y.
    noise = (y - op(truth)).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)
    torch.testing.assert_close(misfit, noise.expand(4, 3))


def test_ensemble_spectrum_of_non_periodic_fields_is_windowed() -> None:
    from physgen.metrics.report import ensemble_report

    # Non-periodic truths: a ramp (an edge jump when wrapped) plus small-scale noise.
    g = torch.Generator().manual_seed(0)
    b, m, n = 24, 4, 64
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    phase = torch.rand(b, 1, generator=g, dtype=torch.float64)
    smooth = (1 + torch.rand(b, 1, generator=g, dtype=torch.float64)) * x + 0.3 * torch.sin(
        3 * x + phase
    )
    truth = smooth + 0.02 * torch.randn(b, n, generator=g, dtype=torch.float64)
    right = smooth[:, None] + 0.02 * torch.randn(b, m, n, generator=g, dtype=torch.float64)
    too_smooth = smooth[:, None].expand(b, m, n)  # members that lost the small scales

    def lsd(members: torch.Tensor, periodic: bool) -> float:
        return ensemble_report(members, truth, spatial_dims=1, periodic=periodic)["spectrum_lsd"]

    # Unwindowed, the edge jump's k⁻² leakage hides the missing small scales ...
    assert lsd(too_smooth, periodic=True) < 2 * lsd(right, periodic=True)
    # ... the Hann window (non-periodic fields) exposes them.
    assert lsd(too_smooth, periodic=False) > 10 * lsd(right, periodic=False)


def test_spread_skill_bootstrap_resamples_whole_cases() -> None:
    """Known per-case totals: equal cases give a zero-width interval at the pooled ratio;
    cases of different ratios give bounds inside [min, max] of the single-case ratios, and a
    resample is the pooled ratio of a multiset of cases (columns share the draw)."""
    m = 4
    corr = math.sqrt((m + 1) / m)
    spread = torch.full((6,), 2.0, dtype=torch.float64)
    error = torch.full((6,), 8.0, dtype=torch.float64)
    low, high = spread_skill_bootstrap(spread, error, m, n_boot=200, level=0.9, seed=0)
    assert float(low) == pytest.approx(0.5 * corr, rel=1e-12)
    assert float(high) == pytest.approx(0.5 * corr, rel=1e-12)
    # Two kinds of case, ratio 1 and ratio 1/3 (S/E = 1 and 1/9): every resample lies between.
    spread = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    error = torch.tensor([1.0, 9.0, 1.0, 9.0], dtype=torch.float64)
    low, high = spread_skill_bootstrap(spread, error, m, n_boot=500, level=0.9, seed=1)
    assert corr / 3 <= float(low) < float(high) <= corr
    pooled = corr * math.sqrt(4 / 20)
    assert float(low) < pooled < float(high)
    # Two columns that are the same cases scaled: the same draws give proportional bounds.
    both_s = torch.stack([spread, 4 * spread], dim=1)  # (B, 2)
    both_e = torch.stack([error, error], dim=1)
    low2, high2 = spread_skill_bootstrap(both_s, both_e, m, n_boot=500, level=0.9, seed=1)
    torch.testing.assert_close(low2, torch.stack([low, 2 * low]), rtol=1e-12, atol=0)
    torch.testing.assert_close(high2, torch.stack([high, 2 * high]), rtol=1e-12, atol=0)
    # Negative control: spread and error swapped give ratios in [corr, 3 corr], above these.
    _, high_sw = spread_skill_bootstrap(error, spread, m, n_boot=500, level=0.9, seed=1)
    assert float(high_sw) > 1.5 * corr >= 1.5 * float(high)
    with pytest.raises(ValueError, match="at least 2 members"):
        spread_skill_bootstrap(spread, error, 1, n_boot=10, level=0.9, seed=0)
    with pytest.raises(ValueError, match="differ in shape"):
        spread_skill_bootstrap(spread, error[:3], m, n_boot=10, level=0.9, seed=0)
