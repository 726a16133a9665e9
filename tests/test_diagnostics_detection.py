"""AUROC and AUPRC against their definitions, chance levels and the Hanley–McNeil error;
batch means against the normal theory of their AUROC."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from physgen.diagnostics import auprc, auroc, batch_means, hanley_mcneil_se


def _pairwise_auroc(s0: np.ndarray, s1: np.ndarray) -> float:
    """P(s1 > s0) + ½ P(s1 = s0) over all pairs: the definition, by brute force."""
    diff = s1[:, None] - s0[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_auroc_is_one_on_separable_scores_and_zero_reversed() -> None:
    rng = np.random.default_rng(0)
    normal, anomalous = rng.uniform(0, 1, 50), rng.uniform(2, 3, 30)
    assert auroc(normal, anomalous) == (1.0, 0.0)
    assert auroc(anomalous, normal).value == 0.0


def test_auroc_is_chance_on_identical_distributions_within_its_error() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        a = auroc(rng.normal(size=300), rng.normal(size=200))
        assert abs(a.value - 0.5) < 3 * a.se
    # Negative control: a shift of one standard deviation is far outside the error bar.
    a = auroc(rng.normal(size=300), rng.normal(1.0, size=200))
    assert abs(a.value - 0.5) > 3 * a.se


def test_auroc_counts_ties_as_one_half() -> None:
    rng = np.random.default_rng(2)
    s0, s1 = rng.integers(0, 4, 40).astype(float), rng.integers(1, 5, 30).astype(float)
    assert auroc(s0, s1).value == pytest.approx(_pairwise_auroc(s0, s1), abs=1e-12)
    # Negative control: counting ties as wins gives another number on these tied scores.
    wins = float((s1[:, None] >= s0[None, :]).mean())
    assert abs(auroc(s0, s1).value - wins) > 0.05


def test_hanley_mcneil_error_matches_the_spread_over_replicates() -> None:
    # Binormal scores, unit shift (A ≈ 0.76), 40 per class: the SD of A over 400 replicates
    # has a relative standard error 1/√(2·399) ≈ 3.5 %; allow 4 of them (≈ 15 %).
    rng = np.random.default_rng(3)
    runs = [auroc(rng.normal(size=40), rng.normal(1.0, size=40)) for _ in range(400)]
    sd = np.std([r.value for r in runs], ddof=1)
    assert np.mean([r.se for r in runs]) == pytest.approx(sd, rel=0.15)
    # The closed form at A = 0.5 is √((n1 + n0 + 1)/(12 n1 n0)) (the Mann–Whitney null variance).
    assert hanley_mcneil_se(0.5, 40, 30) == pytest.approx(np.sqrt(71 / (12 * 40 * 30)), rel=0.01)


def test_auprc_against_the_definition_and_chance() -> None:
    # Scores 0.9 (anomaly), 0.8 (normal), 0.7 (anomaly), 0.1 (normal): thresholds give
    # (R, P) = (½, 1), (½, ½), (1, ⅔), (1, ½) → AP = ½·1 + ½·⅔ = ⅚.
    assert auprc([0.8, 0.1], [0.9, 0.7]).value == pytest.approx(5 / 6, abs=1e-12)
    # A tie between the two classes enters as one threshold: (R, P) = (1, ½) at once.
    assert auprc([0.5], [0.5]).value == pytest.approx(0.5, abs=1e-12)
    rng = np.random.default_rng(4)
    assert auprc(rng.uniform(0, 1, 50), rng.uniform(2, 3, 20)).value == 1.0
    # Chance level is the anomaly fraction (here ⅓), within the bootstrap error.
    ap = auprc(rng.normal(size=400), rng.normal(size=200))
    assert abs(ap.value - 1 / 3) < 3 * ap.se
    ap = auprc(rng.normal(size=400), rng.normal(1.0, size=200))  # negative control
    assert abs(ap.value - 1 / 3) > 3 * ap.se


def test_detection_input_errors() -> None:
    with pytest.raises(ValueError, match="anomalous: no scores"):
        auroc([1.0], [])
    with pytest.raises(ValueError, match="normal: 1 scores are not finite"):
        auprc([np.nan], [1.0])


def test_batch_means_raise_the_auroc_as_the_normal_theory_says() -> None:
    np.testing.assert_allclose(batch_means([1.0, 3.0, 2.0, 6.0, 9.0], 2), [2.0, 4.0])
    # Unit-variance normal scores shifted by δ: A = Φ(δ/√2) per sample, Φ(δ√M/√2) for
    # means of M (their sd is 1/√M).
    rng = np.random.default_rng(5)
    delta, m = 0.5, 8
    s0, s1 = rng.normal(size=16000), rng.normal(delta, size=16000)
    batched = auroc(batch_means(s0, m), batch_means(s1, m))
    assert abs(batched.value - norm.cdf(delta * np.sqrt(m / 2))) < 3 * batched.se
    single = auroc(s0, s1)  # negative control: no batching, the lower per-sample value
    assert abs(single.value - norm.cdf(delta / np.sqrt(2))) < 3 * single.se
    assert single.value < batched.value - 10 * batched.se
    with pytest.raises(ValueError, match="fewer scores"):
        batch_means([1.0], 2)
    with pytest.raises(ValueError, match="batch_size must be ≥ 1, got 0"):
        batch_means([1.0, 2.0], 0)
