r"""Do two metrics rank a set of models the same way? Spearman's ρ and Kendall's τ.

Spearman's :math:`\rho` is Pearson's correlation of the ranks; without ties
:math:`\rho = 1 - 6\sum_i d_i^2 / (n(n^2-1))` with :math:`d_i` the rank differences
(Spearman 1904). Kendall's :math:`\tau_b = (C - D)/\sqrt{(n_0 - n_1)(n_0 - n_2)}` over the
:math:`n_0 = n(n-1)/2` pairs, :math:`C` concordant, :math:`D` discordant, :math:`n_1, n_2`
the pairs tied in either ranking (Kendall 1945); without ties :math:`\tau = (C - D)/n_0`.

The field metrics of a model are pooled into one score by :func:`consensus_score`: each
metric's excess over its floor, divided by the largest excess any model shows on that
metric, averaged over the metrics, so every metric weighs the same whatever its units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["RankCorrelation", "consensus_score", "rank_correlation"]


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's ρ and Kendall's τ_b of two score lists, with their two-sided p-values."""

    spearman: float
    spearman_p: float
    kendall: float
    kendall_p: float
    n: int


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> RankCorrelation:
    """Rank agreement of two scores of the same ``n`` ≥ 3 models (ties get mean ranks)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got {a.shape} and {b.shape}")
    if len(a) < 3:
        raise ValueError(f"a rank correlation needs ≥ 3 models, got {len(a)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("x and y must be finite")
    rho, rho_p = stats.spearmanr(a, b)
    tau, tau_p = stats.kendalltau(a, b)  # τ_b
    return RankCorrelation(float(rho), float(rho_p), float(tau), float(tau_p), len(a))


def consensus_score(
    values: Mapping[str, Mapping[str, float]], floors: Mapping[str, float]
) -> dict[str, float]:
    r"""One score per model from several metrics (higher = farther from the data).

    ``values[model][metric]`` and ``floors[metric]``:
    :math:`s_m = \frac{1}{|M|}\sum_{k\in M} (v_{mk} - f_k) / \max_{m'} |v_{m'k} - f_k|`.
    A metric on which no model departs from its floor carries no ranking and is left out.
    """
    metrics = list(floors)
    models = list(values)
    missing = [(m, k) for m in models for k in metrics if k not in values[m]]
    if missing:
        raise KeyError(f"values lack (model, metric) pairs {missing[:5]}")
    excess = np.array([[values[m][k] - floors[k] for k in metrics] for m in models])
    scale = np.abs(excess).max(axis=0)
    used = scale > 0
    if not used.any():
        raise ValueError("no metric departs from its floor for any model: nothing to rank")
    score = (excess[:, used] / scale[used]).mean(axis=1)
    return dict(zip(models, score.tolist(), strict=True))
