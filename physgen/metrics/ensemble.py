"""Scores of probabilistic predictions: an ensemble of M members against one truth per case."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from physgen.metrics._common import ArrayLike, as_float64

__all__ = [
    "calibrated_coverage",
    "crps_fair",
    "crps_nrg",
    "energy_score",
    "interval_coverage",
    "observation_consistency",
    "rank_histogram",
    "spread_skill_bootstrap",
    "spread_skill_ratio",
]


def _ensemble(members: ArrayLike, obs: ArrayLike, member_dim: int) -> tuple[Tensor, Tensor]:
    """Members moved to axis 0: ``(M, *obs.shape)``; checks shapes and M ≥ 2."""
    x = as_float64(members, name="members")
    y = as_float64(obs, name="obs").to(x.device)
    x = x.movedim(member_dim, 0)
    if x.shape[1:] != y.shape:
        raise ValueError(
            f"members have shape {tuple(x.shape[1:])} per member (member_dim={member_dim}) "
            f"but obs has shape {tuple(y.shape)}"
        )
    if x.shape[0] < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {x.shape[0]}")
    return x, y


def _crps(members: ArrayLike, obs: ArrayLike, member_dim: int, fair: bool) -> Tensor:
    x, y = _ensemble(members, obs, member_dim)
    m = x.shape[0]
    skill = (x - y).abs().mean(0)
    # Σ_{m,m'} |X_m − X_m'| = 2 Σ_i (2i − M − 1) X_(i) with X_(i) sorted: O(M log M), not O(M²).
    weights = 2 * torch.arange(1, m + 1, dtype=torch.float64, device=x.device) - m - 1
    pair_sum = 2 * torch.tensordot(weights, x.sort(0).values, dims=1)
    return skill - pair_sum / (2 * m * (m - 1) if fair else 2 * m * m)


def crps_fair(members: ArrayLike, obs: ArrayLike, *, member_dim: int = 0) -> Tensor:
    """Fair (unbiased) CRPS of an ensemble at every point.

    ``CRPS_fair = (1/M) Σ_m |X_m − y| − 1/(2M(M−1)) Σ_{m,m'} |X_m − X_m'|`` (Ferro 2014,
    QJRMS 10.1002/qj.2270; Zamo & Naveau 2018). Its expectation is the CRPS of the distribution
    the members are drawn from, whatever M — so models with different ensemble sizes compare
    fairly. This is what WeatherBench 2 (``metrics.py::CRPS``) computes, via sorted members.

    Args:
        members: ensemble with the member axis at ``member_dim``.
        obs: truth, the members' shape without the member axis.

    Returns:
        per-point CRPS, shape of ``obs`` (average it for the score).

    Example:
        >>> crps_fair(torch.tensor([[0.0], [2.0]]), torch.tensor([1.0]))
        tensor([0.], dtype=torch.float64)
    """
    return _crps(members, obs, member_dim, fair=True)


def crps_nrg(members: ArrayLike, obs: ArrayLike, *, member_dim: int = 0) -> Tensor:
    """The biased "NRG" CRPS: the CRPS of the empirical M-member distribution, per point.

    ``CRPS_NRG = (1/M) Σ_m |X_m − y| − 1/(2M²) Σ_{m,m'} |X_m − X_m'|``, what properscoring's
    ``crps_ensemble`` and xskillscore return. For members drawn from the true predictive
    distribution its expectation exceeds the true CRPS by ``E|X−X'|/(2M)`` — for N(0,1),
    (1 + 1/M)/√π instead of 1/√π — so it penalises small ensembles; prefer :func:`crps_fair`.
    """
    return _crps(members, obs, member_dim, fair=False)


def spread_skill_ratio(
    members: ArrayLike, obs: ArrayLike, *, member_dim: int = 0, corrected: bool = True
) -> Tensor:
    """Spread–skill ratio √(mean s²) / √(mean (X̄ − y)²), with the finite-ensemble correction.

    s² is the unbiased (ddof=1) member variance and X̄ the ensemble mean at each point; means
    of variances and squared errors are taken before the square roots (WeatherBench 2
    ``compute_spread_skill_ratio``). For a reliable M-member ensemble
    E(X̄ − y)² = (M+1)/M · E s², so ``corrected=True`` multiplies by √((M+1)/M) (Fortin et al.
    2014, J. Hydrometeorol.): 1 = calibrated, < 1 = under-dispersed (over-confident).
    """
    x, y = _ensemble(members, obs, member_dim)
    m = x.shape[0]
    spread = x.var(0, correction=1).mean().sqrt()
    skill = (x.mean(0) - y).square().mean().sqrt()
    ratio = spread / skill
    return ratio * math.sqrt((m + 1) / m) if corrected else ratio


def spread_skill_bootstrap(
    spread: Tensor,
    error: Tensor,
    members: int,
    *,
    n_boot: int,
    level: float,
    seed: int,
) -> tuple[Tensor, Tensor]:
    r"""Percentile bootstrap interval over cases of the pooled, corrected spread–skill ratio.

    ``spread`` and ``error`` are per-case totals, ``(B,)`` or ``(B, T)``: :math:`S_b` the
    member variance (ddof 1) and :math:`E_b` the squared error of the ensemble mean, summed or
    averaged over the case's points. Each of ``n_boot`` resamples draws B cases with
    replacement (counts :math:`w_b`, the same cases in every column) and gives
    :math:`\sqrt{(M+1)/M}\,\sqrt{\sum_b w_b S_b / \sum_b w_b E_b}` (the pooled ratio of
    :func:`spread_skill_ratio`); the bounds are the ``(1 ∓ level)/2`` quantiles of these
    (Efron & Tibshirani 1993, ch. 13). Cases are what is resampled because they are the
    independent units; neighbouring points are not. Returns ``(low, high)``, each of shape
    ``spread.shape[1:]``.
    """
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot} and {level}")
    if members < 2:
        raise ValueError(f"members must have at least 2 members, got {members}")
    if spread.shape != error.shape:
        raise ValueError(f"spread and error differ in shape: {tuple(spread.shape)} and "
                         f"{tuple(error.shape)}")  # fmt: skip
    cases = spread.shape[0]
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(cases, (n_boot, cases), generator=gen)
    counts = (
        torch.zeros(n_boot, cases, dtype=spread.dtype)
        .scatter_add_(1, draws, torch.ones(n_boot, cases, dtype=spread.dtype))
        .to(spread.device)
    )  # (n_boot, B): how often each case is drawn
    flat_s, flat_e = spread.reshape(cases, -1), error.reshape(cases, -1)  # (B, T or 1)
    ratios = ((counts @ flat_s) / (counts @ flat_e)).sqrt() * math.sqrt((members + 1) / members)
    tail = (1 - level) / 2
    q = torch.tensor([tail, 1 - tail], dtype=ratios.dtype, device=ratios.device)
    low, high = torch.quantile(ratios, q, dim=0)  # (T or 1,) each
    return low.reshape(spread.shape[1:]), high.reshape(spread.shape[1:])


def rank_histogram(
    members: ArrayLike, obs: ArrayLike, *, member_dim: int = 0, seed: int = 0
) -> Tensor:
    """Relative frequencies of the rank of the truth among the members (M + 1 bins).

    Rank = #{m : X_m < y}, ties broken uniformly at random (WeatherBench 2 ``RankHistogram``,
    xskillscore ``rank_histogram``). Flat = calibrated, U-shaped = under-dispersed, ∩-shaped =
    over-dispersed, sloped = biased. Neighbouring pixels are correlated, so read only what
    exceeds the noise ≈ √((B−1)/N_eff) relative per bin for N_eff independent cases.
    """
    x, y = _ensemble(members, obs, member_dim)
    m = x.shape[0]
    below = (x < y).sum(0)
    ties = (x == y).sum(0)
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(ties.shape, generator=gen, dtype=torch.float64).to(x.device)
    rank = below + torch.floor(u * (ties + 1)).long()
    counts = torch.bincount(rank.flatten(), minlength=m + 1).to(torch.float64)
    return counts / counts.sum()


def _order_positions(level: float, m: int) -> tuple[int, int]:
    """0-based order statistics bounding the central ``level`` interval of m members, outward."""
    if not 0 < level < 1 or m < 2:
        raise ValueError(f"need 0 < level < 1 and ≥ 2 members, got {level}, {m}")
    lo = math.floor((1 - level) / 2 * (m - 1) + 1e-9)
    hi = math.ceil((1 + level) / 2 * (m - 1) - 1e-9)
    return lo, hi


def calibrated_coverage(level: float, num_members: int) -> float:
    """Expected :func:`interval_coverage` of a calibrated (exchangeable) M-member ensemble.

    The truth's rank among exchangeable members is uniform on M + 1 slots, so it lies between
    the order statistics X_(i) and X_(j) (1-based) with probability (j − i)/(M + 1), whatever
    the distribution. E.g. 0.45 at level 0.5 and 0.82 at level 0.9 for M = 10.
    """
    lo, hi = _order_positions(level, num_members)
    return (hi - lo) / (num_members + 1)


def interval_coverage(
    members: ArrayLike,
    obs: ArrayLike,
    *,
    member_dim: int = 0,
    levels: Sequence[float] = (0.5, 0.9),
) -> dict[float, float]:
    """Fraction of truths inside the central member interval at each level.

    The interval at level c runs between the order statistics at the (1−c)/2 and (1+c)/2
    positions of the M members, rounded outward (no interpolation). Interpolated sample
    quantiles would make the calibrated coverage depend on the distribution; order
    statistics make it exact: a calibrated ensemble covers :func:`calibrated_coverage`, which
    is below c for small M. Compare with that, not with c.
    """
    x, y = _ensemble(members, obs, member_dim)
    ordered = x.sort(0).values
    out: dict[float, float] = {}
    for level in levels:
        lo, hi = _order_positions(level, x.shape[0])
        inside = (y >= ordered[lo]) & (y <= ordered[hi])
        out[float(level)] = float(inside.double().mean())
    return out


def energy_score(
    members: ArrayLike, obs: ArrayLike, *, member_dim: int = 0, fair: bool = True
) -> Tensor:
    """Energy score ES = E‖X − y‖ − ½ E‖X − X'‖ per case (the multivariate CRPS).

    Norms run over every axis after the case axis: members ``(M, B, *event)`` (after moving
    ``member_dim`` to 0) against obs ``(B, *event)`` give ``(B,)`` scores (Gneiting & Raftery,
    JASA 2007). ``fair=True`` averages the member pairs over M(M−1) (unbiased, like
    :func:`crps_fair`); ``fair=False`` over M². Lower is better.
    """
    x, y = _ensemble(members, obs, member_dim)
    if y.ndim < 1:
        raise ValueError("energy_score needs obs of shape (B, *event)")
    m = x.shape[0]
    xf = x.reshape(m, y.shape[0], -1).transpose(0, 1)  # (B, M, D)
    yf = y.reshape(y.shape[0], 1, -1)  # (B, 1, D)
    skill = torch.cdist(xf, yf).mean((1, 2))
    pair = torch.cdist(xf, xf).sum((1, 2))
    return skill - pair / (2 * m * (m - 1) if fair else 2 * m * m)


def observation_consistency(
    members: ArrayLike,
    observation: ArrayLike,
    operator: Callable[[Tensor], Tensor],
    *,
    member_dim: int = 0,
) -> Tensor:
    """Relative data misfit ‖A(X_m) − y_obs‖₂ / ‖y_obs‖₂ of every member and case.

    A posterior sample must reproduce its conditioning up to the observation noise (reference
    note §4.3, item 6): compare the result with σ_noise·√n_obs / ‖y_obs‖. ``operator`` maps a
    batch ``(B, *event)`` to ``(B, *obs)`` (block average, subsampling, channel mask, sensors).

    Args:
        members: ``(M, B, *event)`` after moving ``member_dim`` to 0.
        observation: ``(B, *obs)``.
        operator: the observation operator A, applied to a float64 batch.

    Returns:
        ``(M, B)`` relative misfits.
    """
    x = as_float64(members, name="members").movedim(member_dim, 0)
    y = as_float64(observation, name="observation").to(x.device)
    m, b = x.shape[0], x.shape[1]
    if y.shape[0] != b:
        raise ValueError(f"observation has {y.shape[0]} cases but members have {b}")
    mapped = operator(x.reshape(m * b, *x.shape[2:]))  # (M·B, *obs)
    if tuple(mapped.shape[1:]) != tuple(y.shape[1:]):
        raise ValueError(
            f"operator maps a member to shape {tuple(mapped.shape[1:])}, "
            f"but the observation has {tuple(y.shape[1:])}"
        )
    diff = (mapped.to(torch.float64).reshape(m, b, -1) - y.reshape(1, b, -1)).norm(dim=-1)
    return diff / y.reshape(b, -1).norm(dim=-1)
