"""Rank correlation and the pooled field-metric score, on inputs with known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from physgen.diagnostics.ranking import consensus_score, rank_correlation


def _by_hand(x: list[float], y: list[float]) -> tuple[float, float]:
    """Spearman 1 − 6Σd²/(n(n²−1)) and Kendall (C − D)/(n(n−1)/2), no ties."""
    n = len(x)
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    rho = 1 - 6 * float(((rx - ry) ** 2).sum()) / (n * (n * n - 1))
    signs = [
        np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i, j in itertools.combinations(range(n), 2)
    ]
    return rho, float(sum(signs)) / math.comb(n, 2)


def test_known_orders() -> None:
    same = rank_correlation([1, 2, 3, 4, 5], [10, 20, 25, 100, 1000])  # monotone, not linear
    assert same.spearman == pytest.approx(1.0) and same.kendall == pytest.approx(1.0)
    reverse = rank_correlation([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
    assert reverse.spearman == pytest.approx(-1.0) and reverse.kendall == pytest.approx(-1.0)
    # One adjacent swap among 4: ρ = 1 − 6·2/60 = 0.8, τ = (5 − 1)/6 = 2/3.
    swap = rank_correlation([1, 2, 3, 4], [1, 3, 2, 4])
    assert swap.spearman == pytest.approx(0.8, abs=1e-12)
    assert swap.kendall == pytest.approx(2 / 3, abs=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.normal(size=9).tolist(), rng.normal(size=9).tolist()
        got = rank_correlation(x, y)
        rho, tau = _by_hand(x, y)
        assert got.spearman == pytest.approx(rho, abs=1e-12)
        assert got.kendall == pytest.approx(tau, abs=1e-12)
    with pytest.raises(ValueError, match="≥ 3 models"):
        rank_correlation([1, 2], [2, 1])
    with pytest.raises(ValueError, match="equal length"):
        rank_correlation([1, 2, 3], [1, 2])


def test_consensus_weighs_every_metric_the_same() -> None:
    floors = {"w1": 0.1, "mmd": 0.0, "flat": 1.0}
    values = {
        "good": {"w1": 0.1, "mmd": 0.0, "flat": 1.0},
        "mid": {"w1": 0.6, "mmd": 0.001, "flat": 1.0},
        "bad": {"w1": 1.1, "mmd": 0.002, "flat": 1.0},
    }
    # w1 excess 0, 0.5, 1 of 1; mmd 0, 0.5, 1 of 1 (its tiny units do not matter); "flat"
    # departs for no model and is left out.
    score = consensus_score(values, floors)
    assert score == pytest.approx({"good": 0.0, "mid": 0.5, "bad": 1.0})
    # Negative control: w1 ranks mid < bad, mmd the reverse; with equal weights they tie
    # (raw units would let w1, 500× larger, decide alone).
    values["mid"]["mmd"] = 0.002
    values["bad"]["mmd"] = 0.001
    score = consensus_score(values, floors)
    assert score["mid"] == pytest.approx(0.75) and score["bad"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="nothing to rank"):
        consensus_score({"a": {"flat": 1.0}, "b": {"flat": 1.0}}, {"flat": 1.0})
    with pytest.raises(KeyError, match="lack"):
        consensus_score({"a": {}}, {"w1": 0.0})


def test_ties_take_mean_ranks_and_kendalls_tau_b() -> None:
    # x = (1, 1, 2, 3), y = (1, 2, 2, 3): of the n0 = 6 pairs, 4 concordant, 0 discordant,
    # one tied in x only, one in y only: τ_b = 4 / √((6 − 1)(6 − 1)) = 0.8 (τ_a = 4/6 would
    # ignore the ties). Mean ranks (1.5, 1.5, 3, 4) and (1, 2.5, 2.5, 4), deviations from 2.5
    # (−1, −1, ½, 3/2) and (−3/2, 0, 0, 3/2): ρ = 3.75 / √(4.5 · 4.5) = 5/6 (ties broken by
    # position would rank both 1, 2, 3, 4: ρ = 1).
    got = rank_correlation([1.0, 1.0, 2.0, 3.0], [1.0, 2.0, 2.0, 3.0])
    assert got.kendall == pytest.approx(0.8, abs=1e-12)
    assert got.spearman == pytest.approx(5 / 6, abs=1e-12)
    # Negative controls: the estimators that ignore the ties give other values.
    assert abs(got.kendall - 2 / 3) > 0.1 and abs(got.spearman - 1.0) > 0.1
