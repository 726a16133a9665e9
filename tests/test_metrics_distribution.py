"""Set-to-set metrics: same distribution ≈ floor, shifted distribution ≫ floor, closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from physgen.metrics import (
    energy_distance,
    frechet_distance,
    marginal_w1,
    mean_field_error,
    mmd,
    mmd_permutation_test,
    sliced_wasserstein,
    std_field_error,
    total_std,
    total_std_error,
    with_floor,
)


def smooth_fields(n: int, *, seed: int, points: int = 32, shift: float = 0.0, scale: float = 1.0):
    """Samples of a 1-D Gaussian process with a squared-exponential kernel (ℓ = 0.2 on [0, 1])."""
    x = torch.linspace(0, 1, points, dtype=torch.float64)
    cov = torch.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * 0.2**2))
    evals, evecs = torch.linalg.eigh(cov)
    root = evecs * evals.clamp_min(0).sqrt()
    gen = torch.Generator().manual_seed(seed)
    xi = torch.randn(n, points, generator=gen, dtype=torch.float64)
    return 1.0 + shift + scale * xi @ root.T  # (n, points)


TWO_SET_METRICS = {
    "mmd": mmd,
    "sliced_wasserstein": sliced_wasserstein,
    "marginal_w1": marginal_w1,
    "energy_distance": energy_distance,
    "frechet_distance": frechet_distance,
}


@pytest.mark.parametrize("name", sorted(TWO_SET_METRICS))
def test_same_distribution_within_floor_and_shift_far_above(name: str) -> None:
    metric = TWO_SET_METRICS[name]
    ref = smooth_fields(600, seed=0)
    # The floor's Monte-Carlo spread, from several random splits of the reference.
    floors = torch.tensor(
        [float(with_floor(metric, ref[:300], ref, split_seed=s)["floor"]) for s in range(8)]
    )
    center, spread = floors.mean().item(), floors.std().item()
    same = with_floor(metric, smooth_fields(300, seed=1), ref)
    shifted = with_floor(metric, smooth_fields(300, seed=1, shift=0.5), ref)
    assert same["n"] == 300
    assert float(same["floor"]) == float(shifted["floor"])  # same split, same floor
    assert abs(float(same["value"]) - center) < 4 * spread
    assert float(shifted["value"]) > center + 10 * spread
    assert float(shifted["value"]) > 3 * abs(center)


def test_mmd_permutation_test_agrees() -> None:
    ref = smooth_fields(200, seed=2)
    mmd2_same, p_same = mmd_permutation_test(smooth_fields(200, seed=3), ref, num_permutations=200)
    mmd2_shift, p_shift = mmd_permutation_test(
        smooth_fields(200, seed=3, shift=0.5), ref, num_permutations=200
    )
    assert p_same > 0.05
    assert p_shift == pytest.approx(1 / 201)  # no permutation reaches the observed value
    assert mmd2_shift > 20 * abs(mmd2_same)
    # The permutation statistic at identity equals the plain estimator.
    torch.testing.assert_close(mmd2_same, mmd(smooth_fields(200, seed=3), ref))


def test_mmd_is_the_unbiased_u_statistic() -> None:
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(5, 3, generator=gen, dtype=torch.float64) + 1
    h = torch.tensor([0.7, 2.0], dtype=torch.float64)

    def k(a: torch.Tensor, b: torch.Tensor) -> float:
        d2 = float(((a - b) ** 2).sum())
        return sum(math.exp(-d2 / (2 * float(hh) ** 2)) for hh in h)

    kxx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    kyy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    kxy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert mmd(x, y, bandwidths=h).item() == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-12)


def test_wasserstein_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(400, 1)), rng.gamma(2.0, size=(400, 1))
    expected = scipy.stats.wasserstein_distance(a[:, 0], b[:, 0])
    assert marginal_w1(a, b).item() == pytest.approx(expected, rel=1e-12)
    # Unequal sizes use quantile interpolation: close to the exact value, not identical.
    c = rng.gamma(2.0, size=(300, 1))
    exact = scipy.stats.wasserstein_distance(a[:, 0], c[:, 0])
    assert marginal_w1(a, c).item() == pytest.approx(exact, rel=0.03)
    # Pointwise marginals: the mean over grid points of per-point W1.
    fields_a, fields_b = rng.normal(size=(200, 3)), rng.normal(1.0, 2.0, size=(200, 3))
    per_point = [scipy.stats.wasserstein_distance(fields_a[:, i], fields_b[:, i]) for i in range(3)]
    assert marginal_w1(fields_a, fields_b).item() == pytest.approx(np.mean(per_point), rel=1e-12)
    pooled = scipy.stats.wasserstein_distance(fields_a.ravel(), fields_b.ravel())
    assert marginal_w1(fields_a, fields_b, pooled=True).item() == pytest.approx(pooled, rel=1e-12)


def test_sliced_wasserstein_of_a_translation_is_its_length() -> None:
    # For a pure translation by v, W2 along θ is |θ·v|, so SW₂² = E(θ·v)² = ‖v‖²/D.
    x = smooth_fields(300, seed=6, points=8)
    v = torch.linspace(-1, 1, 8, dtype=torch.float64)
    sw = sliced_wasserstein(x + v, x, num_projections=4000).item()
    assert sw == pytest.approx(v.norm().item() / math.sqrt(8), rel=0.05)


def test_frechet_distance_of_gaussians_closed_form() -> None:
    # FD between N(0, I) and N(m, s²I) in k dims: ‖m‖² + k(1 − s)².
    gen = torch.Generator().manual_seed(7)
    k = 4
    ref = torch.randn(20_000, k, generator=gen, dtype=torch.float64)
    other = 0.5 + 2.0 * torch.randn(20_000, k, generator=gen, dtype=torch.float64)
    fd = frechet_distance(other, ref, num_components=k).item()
    assert fd == pytest.approx(k * 0.25 + k * 1.0, rel=0.03)


def test_mean_and_std_errors_closed_forms() -> None:
    ref = smooth_fields(4000, seed=8)
    # Rescaling the fluctuations by 1.2 is a 20 % std error in both forms.
    wide = 1.0 + 1.2 * (smooth_fields(4000, seed=9) - 1.0)
    assert std_field_error(wide, ref).item() == pytest.approx(0.2, abs=0.03)
    assert total_std_error(wide, ref).item() == pytest.approx(0.2, abs=0.03)
    # A constant offset c gives ‖c‖/‖μ‖ with μ ≡ 1: exactly c in expectation.
    assert mean_field_error(smooth_fields(4000, seed=9, shift=0.3), ref).item() == pytest.approx(
        0.3, abs=0.04
    )
    # total_std is PI-VAE's std_cal: √((1/N) Σ‖x − x̄‖²).
    x = smooth_fields(50, seed=10)
    expected = math.sqrt(sum(float((row - x.mean(0)).norm()) ** 2 for row in x) / 50)
    assert total_std(x).item() == pytest.approx(expected, rel=1e-12)


def test_total_std_error_ignores_shape_but_field_error_does_not() -> None:
    # Std right on average but wrong in shape: larger at one end, smaller at the other.
    ref = smooth_fields(4000, seed=11)
    ramp = torch.linspace(0.6, 1.33, 32, dtype=torch.float64)
    ramp = ramp / ramp.square().mean().sqrt()  # same total variance
    warped = 1.0 + ramp * (smooth_fields(4000, seed=12) - 1.0)
    assert total_std_error(warped, ref).item() < 0.03
    assert std_field_error(warped, ref).item() > 0.15


def test_set_shape_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match="same grid"):
        mmd(torch.zeros(4, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="fewer than half"):
        with_floor(mmd, torch.zeros(3, 2), torch.randn(20, 2))


def test_with_floor_averages_over_splits() -> None:
    ref = smooth_fields(200, seed=13)
    samples = smooth_fields(100, seed=14)
    singles = [with_floor(marginal_w1, samples, ref, split_seed=s) for s in range(4)]
    many = with_floor(marginal_w1, samples, ref, num_splits=4)
    floors = torch.tensor([float(x["floor"]) for x in singles], dtype=torch.float64)
    assert float(many["value"]) == pytest.approx(np.mean([float(x["value"]) for x in singles]))
    assert float(many["floor"]) == pytest.approx(floors.mean().item())
    assert float(many["floor_std"]) == pytest.approx(floors.std().item())
    assert "floor_std" not in singles[0]


def test_pca_gram_branch_matches_svd(monkeypatch: pytest.MonkeyPatch) -> None:
    from physgen.metrics import distribution
    from physgen.metrics.distribution import _pca

    gen = torch.Generator().manual_seed(15)
    wide = torch.randn(20, 50, generator=gen, dtype=torch.float64)  # D > N: Gram matrix
    wide = wide - wide.mean(0)
    basis, s = _pca(wide, 5)
    _, s_ref, vh = torch.linalg.svd(wide, full_matrices=False)
    torch.testing.assert_close(s, s_ref[:5])
    torch.testing.assert_close((basis.T @ vh[:5].T).abs(), torch.eye(5, dtype=torch.float64))
    # Sliced Wasserstein in direction chunks: with a budget of 2^12 direction entries,
    # D = 2^9 gives 8 directions per chunk (as D = 2^21 does with the real budget).
    monkeypatch.setattr(distribution, "_DIRECTION_BUDGET", 2**12)
    x = torch.randn(4, 2**9, generator=gen, dtype=torch.float32)
    assert sliced_wasserstein(x, x, num_projections=400).item() == 0.0
    # Every chunk counts: a translation by the ones vector has SW₂² = E(θ·1)² = 1.
    shifted = sliced_wasserstein(x + 1.0, x, num_projections=400).item()
    assert shifted == pytest.approx(1.0, abs=0.15)


def test_std_field_error_of_processes_with_known_std_curves() -> None:
    r"""Two GPs with std curves σ(x) = 1 + x and σ̂(x) = 1.3 − 0.2x on [0, 1]:
    ‖σ̂ − σ‖₂ / ‖σ‖₂ exactly when each point is whitened, within 4 sampling sds when not.

    The error is relative to the reference (the second argument), so swapping the arguments
    divides by ‖σ̂‖ instead of ‖σ‖ and must change the value. Sampling error of n draws: each
    pointwise std moves by a relative 1/√(2n), so the error moves by at most ‖σ̂‖/(‖σ‖√(2n)).
    """
    x = torch.linspace(0, 1, 32, dtype=torch.float64)
    sigma, sigma_hat = 1 + x, 1.3 - 0.2 * x
    norm = torch.linalg.vector_norm
    exact = float(norm(sigma_hat - sigma) / norm(sigma))
    swapped = float(norm(sigma_hat - sigma) / norm(sigma_hat))

    def whiten(a: torch.Tensor) -> torch.Tensor:  # pointwise sample mean 0, sample std 1
        return (a - a.mean(0)) / a.std(0)

    ref = 2.0 + sigma * whiten(smooth_fields(4000, seed=13))
    gen = -1.0 + sigma_hat * whiten(smooth_fields(4000, seed=14))
    assert std_field_error(gen, ref).item() == pytest.approx(exact, rel=1e-12)
    assert std_field_error(ref, gen).item() == pytest.approx(swapped, rel=1e-12)
    assert abs(exact - swapped) > 0.05  # the reference's norm matters

    n = 8000
    gen_mc = sigma_hat * (smooth_fields(n, seed=15) - 1.0)  # unit pointwise std in law
    tol = 4 * float(norm(sigma_hat) / norm(sigma)) / math.sqrt(2 * n)
    assert abs(std_field_error(gen_mc, ref).item() - exact) < tol
    # Negative control: the scalar total-std error misses a std curve of the right total.
    level = float(norm(sigma) / math.sqrt(len(x)))  # a flat curve with σ's total std
    flat = level * whiten(smooth_fields(4000, seed=16))
    assert total_std_error(flat, ref).item() < 1e-12
    exact_flat = float(norm(level - sigma) / norm(sigma))
    assert std_field_error(flat, ref).item() == pytest.approx(exact_flat, rel=1e-12)
    assert exact_flat > 0.1
