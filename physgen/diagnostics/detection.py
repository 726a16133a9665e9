"""How well a per-sample score separates two sets: AUROC and AUPRC with their standard errors."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.stats import rankdata

from physgen.metrics._common import ArrayLike, as_float64

__all__ = ["DetectionScore", "auprc", "auroc", "batch_means", "hanley_mcneil_se"]


class DetectionScore(NamedTuple):
    """A detection metric and its standard error."""

    value: float
    se: float


def _scores(x: ArrayLike, name: str) -> np.ndarray:
    s = as_float64(x, name=name).reshape(-1).cpu().numpy()
    if s.size == 0:
        raise ValueError(f"{name}: no scores")
    if not np.isfinite(s).all():
        raise ValueError(f"{name}: {int((~np.isfinite(s)).sum())} scores are not finite")
    return s


def hanley_mcneil_se(area: float, n_pos: int, n_neg: int) -> float:
    r"""Standard error of an empirical AUROC (Hanley & McNeil 1982, Radiology 143, eq. 1):

    .. math:: \mathrm{SE}^2 = \frac{A(1-A) + (n_1-1)(Q_1-A^2) + (n_0-1)(Q_2-A^2)}{n_1 n_0},
              \quad Q_1 = \frac{A}{2-A},\ Q_2 = \frac{2A^2}{1+A},

    with :math:`n_1` positives (anomalies) and :math:`n_0` negatives. The :math:`Q` terms
    assume exponential score distributions; the formula is the usual approximation elsewhere.
    """
    if n_pos < 1 or n_neg < 1:
        raise ValueError(f"need at least one sample per class, got {n_pos} and {n_neg}")
    q1, q2 = area / (2 - area), 2 * area**2 / (1 + area)
    var = (area * (1 - area) + (n_pos - 1) * (q1 - area**2) + (n_neg - 1) * (q2 - area**2)) / (
        n_pos * n_neg
    )
    return math.sqrt(max(var, 0.0))


def auroc(normal: ArrayLike, anomalous: ArrayLike) -> DetectionScore:
    r"""Area under the ROC curve of a score that should be higher for ``anomalous`` samples.

    The Mann–Whitney form :math:`A = P(s_1 > s_0) + \tfrac12 P(s_1 = s_0)` over all pairs of an
    anomalous score :math:`s_1` and a normal one :math:`s_0`, from the mid-ranks of the pooled
    scores: :math:`A = (R_1 - n_1(n_1+1)/2)/(n_1 n_0)` with :math:`R_1` the rank sum of the
    anomalies. 1 separates perfectly, 0.5 is chance. The standard error is Hanley–McNeil's
    (:func:`hanley_mcneil_se`).
    """
    s0, s1 = _scores(normal, "normal"), _scores(anomalous, "anomalous")
    ranks = rankdata(np.concatenate([s1, s0]))  # mid-ranks: ties count one half
    n1, n0 = s1.size, s0.size
    area = float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    return DetectionScore(area, hanley_mcneil_se(area, n1, n0))


def _average_precision(s0: np.ndarray, s1: np.ndarray) -> float:
    scores = np.concatenate([s1, s0])
    labels = np.concatenate([np.ones(s1.size), np.zeros(s0.size)])
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    # One operating point per distinct threshold: tied scores enter together.
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), scores.size - 1]
    tp = np.cumsum(labels)[last]
    precision = tp / (last + 1)
    recall = tp / s1.size
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def auprc(
    normal: ArrayLike, anomalous: ArrayLike, *, n_bootstrap: int = 200, seed: int = 0
) -> DetectionScore:
    r"""Area under the precision–recall curve, as average precision, anomalies as positives:

    .. math:: \mathrm{AP} = \sum_k (R_k - R_{k-1})\,P_k

    over the distinct score thresholds :math:`t_k` in decreasing order, with precision
    :math:`P_k` and recall :math:`R_k` of the rule "score ≥ :math:`t_k`" (tied scores enter
    together). Chance level is the anomaly fraction :math:`n_1/(n_1+n_0)`, not 0.5. The
    standard error is a stratified bootstrap (``n_bootstrap`` resamples of each class, seeded
    by ``seed``; 0 resamples gives ``nan``): no closed form like Hanley–McNeil's exists.
    """
    s0, s1 = _scores(normal, "normal"), _scores(anomalous, "anomalous")
    value = _average_precision(s0, s1)
    if n_bootstrap < 1:
        return DetectionScore(value, math.nan)
    rng = np.random.default_rng(seed)
    draws = [
        _average_precision(rng.choice(s0, s0.size), rng.choice(s1, s1.size))
        for _ in range(n_bootstrap)
    ]
    return DetectionScore(value, float(np.std(draws, ddof=1)) if n_bootstrap > 1 else math.nan)


def batch_means(scores: ArrayLike, batch_size: int) -> np.ndarray:
    r"""Per-batch scores: the mean of each consecutive group of ``batch_size`` per-sample scores
    (a remainder is dropped), :math:`\bar s_j = \frac1M\sum_{m=1}^M s_{(j-1)M+m}`.

    Detecting a *batch* of M fields drawn together — the setting of Nalisnick et al. (2019)'s
    typicality test — is easier than one field: for scores of per-sample AUROC A the spread
    of a batch mean shrinks as :math:`1/\sqrt M` while the shift of the mean stays, so the
    batch AUROC rises towards 1. Its AUROC is over ⌊N/M⌋ batches per class, with that error.
    """
    s = _scores(scores, "scores")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    m = (s.size // batch_size) * batch_size
    if m == 0:
        raise ValueError(f"fewer scores ({s.size}) than one batch of {batch_size}")
    return s[:m].reshape(-1, batch_size).mean(1)
