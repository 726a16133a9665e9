r"""Lead-time-dependent spread calibration of rolled-out ensembles, fit on validation cases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from physgen.metrics._common import ArrayLike, as_float64
from physgen.metrics.ensemble import spread_skill_ratio

__all__ = ["SpreadCalibration", "fit_spread_calibration", "scale_spread"]


def scale_spread(members: ArrayLike, factors: ArrayLike) -> Tensor:
    r"""Members moved about their mean by one factor per lead time.

    .. math:: X^m_\tau \leftarrow \bar X_\tau + s_\tau (X^m_\tau - \bar X_\tau)

    for ``members`` ``(B, M, T, ...)`` (mean over the M members of each case) and ``factors``
    ``(T,)``, all positive: the multiplicative inflation of ensemble data assimilation
    (Anderson & Anderson 1999, Mon. Wea. Rev. 127, 2741) applied after the rollout, one
    factor per lead time. The ensemble mean is unchanged and every member deviation, hence
    the spread, is scaled by :math:`s_\tau`. Returns float64.
    """
    x = as_float64(members, name="members")
    s = as_float64(factors, name="factors").to(x.device)
    if x.ndim < 3 or s.shape != (x.shape[2],):
        raise ValueError(
            f"factors must be (T,) for members (B, M, T, ...); got {tuple(s.shape)} and "
            f"{tuple(x.shape)}"
        )
    if not bool((s > 0).all()):
        raise ValueError(f"factors must be > 0, got {s.tolist()}")
    mean = x.mean(1, keepdim=True)
    return mean + s.reshape(1, 1, -1, *(1,) * (x.ndim - 3)) * (x - mean)


@dataclass(frozen=True)
class SpreadCalibration:
    r"""A spread factor per lead time, :math:`\log s(t) = \sum_{i=0}^{p} a_i (t / t_{max})^i`.

    ``coefficients`` are :math:`a_0 \ldots a_p`; ``t_max`` is the last lead time of the
    fit (it keeps the powers of order one). :meth:`apply` is :func:`scale_spread` with
    :math:`s(t)` at the given lead times.
    """

    coefficients: tuple[float, ...]
    t_max: float

    def factors(self, times: ArrayLike) -> Tensor:
        """s(t) at each of ``times``, float64."""
        t = as_float64(times, name="times") / self.t_max
        powers = torch.stack([t**i for i in range(len(self.coefficients))], dim=-1)
        return (powers @ torch.tensor(self.coefficients, dtype=torch.float64)).exp()

    def apply(self, members: ArrayLike, times: ArrayLike) -> Tensor:
        """``members`` ``(B, M, T, ...)`` with the spread at lead time ``times[τ]`` scaled by
        s(``times[τ]``) about the ensemble mean."""
        return scale_spread(members, self.factors(times))

    def to_dict(self) -> dict[str, Any]:
        return {"coefficients": list(self.coefficients), "t_max": self.t_max}


def fit_spread_calibration(
    members: ArrayLike, truth: ArrayLike, times: ArrayLike, degree: int = 2
) -> SpreadCalibration:
    r"""The spread factor per lead time that brings the spread–skill ratio of ``members``
    ``(B, M, T, ...)`` against ``truth`` ``(B, T, ...)`` (validation cases) closest to 1.

    Scaling the deviations by :math:`s_\tau` about the mean leaves the ensemble-mean error
    unchanged and multiplies the spread, hence the corrected spread–skill ratio
    :math:`R_\tau` (:func:`physgen.metrics.spread_skill_ratio`), by :math:`s_\tau`. The
    coefficients of :class:`SpreadCalibration` minimize

    .. math:: \sum_\tau \big(\log s(t_\tau) + \log R_\tau\big)^2 = \sum_\tau (\log R'_\tau)^2,

    R' the ratios after calibration: a linear least-squares fit of :math:`-\log R_\tau` by a
    polynomial of ``degree`` p in :math:`t / t_{max}`. With p ≥ T − 1 it interpolates (a
    Vandermonde solve, for few lead times): :math:`s_\tau = 1/R_\tau` and every calibrated
    ratio is exactly 1 on the fitted cases; a low p smooths a noisy ratio over the lead
    times (p = 0: one constant factor). The lead-time-specific spread correction is the
    ensemble analogue of the spread term of EMOS (Gneiting, Raftery, Westveld & Goldman
    2005, Mon. Wea. Rev. 133, 1098), fit here by the ratio rather than the CRPS.

    Raises:
        ValueError: fewer than 2 members, mismatched shapes, or a ratio that is zero or not
            finite (an ensemble without spread or a perfect mean cannot be rescaled to 1).
    """
    x = as_float64(members, name="members")
    y = as_float64(truth, name="truth").to(x.device)
    t = as_float64(times, name="times").cpu()
    if x.ndim < 3 or x.shape[1] < 2 or x.shape[:1] + x.shape[2:] != y.shape:
        raise ValueError(
            f"members must be (B, M ≥ 2, T, ...) and truth (B, T, ...); got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    if t.shape != (x.shape[2],) or not bool((t > 0).all()):
        raise ValueError(f"times must be {x.shape[2]} positive lead times, got {t.tolist()}")
    ratios = torch.stack(
        [spread_skill_ratio(x[:, :, i], y[:, i], member_dim=1) for i in range(x.shape[2])]
    ).cpu()
    if not bool(torch.isfinite(ratios.log()).all()):
        raise ValueError(f"spread–skill ratios must be finite and > 0, got {ratios.tolist()}")
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    p = min(int(degree), len(t) - 1)
    t_max = float(t.max())
    design = torch.stack([(t / t_max) ** i for i in range(p + 1)], dim=-1)
    coefficients = torch.linalg.lstsq(design, -ratios.log()[:, None]).solution[:, 0]
    return SpreadCalibration(tuple(coefficients.tolist()), t_max)
