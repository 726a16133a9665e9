"""PDE-residual statistics of generated fields, always beside the ground-truth floor."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from physgen.metrics._common import ArrayLike, as_float64

__all__ = ["HasResidual", "residual_error", "residual_metric", "residual_rms"]


class HasResidual(Protocol):
    """What the residual metric needs of a problem: channel names and a residual map.

    ``relative=True`` also needs ``residual_scale(fields) -> (B,)``, as
    :class:`physgen.problem.Problem` has.
    """

    field_names: Sequence[str]

    def residual(self, fields: Tensor) -> Any: ...


def _pointwise_mean(r: Any, pointwise: Callable[[Tensor], Tensor]) -> Tensor:
    """Per-sample mean of ``pointwise(r)`` over every point of a residual: one tensor
    ``(B, ...)``, or several equations (a mapping or sequence) taken together, in float64."""
    parts = [r] if isinstance(r, Tensor) else list(r.values() if isinstance(r, Mapping) else r)
    if not parts:
        raise ValueError("residual returned no tensors")
    total = sum(pointwise(p.to(torch.float64)).flatten(1).sum(1) for p in parts)
    return total / sum(p[0].numel() for p in parts)


def _rms(r: Any) -> Tensor:
    """Per-sample RMS of a residual: one tensor ``(B, ...)``, or several equations combined."""
    return _pointwise_mean(r, torch.square).sqrt()


def residual_rms(
    problem: HasResidual, fields: ArrayLike, *, relative: bool = False, batch_size: int = 256
) -> Tensor:
    """Per-sample RMS of ``problem.residual`` over the grid, √(mean_i r_i²), in physical units.

    With ``relative=True`` it is divided by the problem's ``residual_scale(fields)`` (a
    physical scale of the equation's terms, e.g. ‖f‖ for Darcy), which makes it dimensionless
    and comparable across problems.

    Args:
        problem: anything with ``residual(fields)`` taking ``(B, C, *grid)`` in the channel order
            of ``problem.field_names`` (the :class:`physgen.problem.Problem` protocol).
        fields: de-normalised fields ``(N, C, [T], *grid)``.
        relative: divide by ``problem.residual_scale`` per sample.
        batch_size: samples per residual call (memory bound).

    Returns:
        ``(N,)`` float64 residual RMS per sample.
    """
    x = as_float64(fields, name="fields")
    if x.ndim < 2 or x.shape[1] != len(problem.field_names):
        raise ValueError(
            f"fields have shape {tuple(x.shape)}; expected (N, {len(problem.field_names)}, *grid) "
            f"with channels {list(problem.field_names)}"
        )
    scale_of = getattr(problem, "residual_scale", None) if relative else None
    if relative and scale_of is None:
        raise ValueError(
            f"relative=True needs problem.residual_scale, which {type(problem).__name__} lacks"
        )
    parts = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            batch = x[i : i + batch_size]
            value = _rms(problem.residual(batch))
            if scale_of is not None:
                value = value / as_float64(scale_of(batch), name="residual_scale").reshape(-1)
            parts.append(value)
    return torch.cat(parts)


def residual_error(problem: HasResidual, fields: ArrayLike, *, batch_size: int = 256) -> Tensor:
    r"""PBFM's residual error RE: the mean over samples of the grid-mean absolute residual,

    .. math:: \mathrm{RE} = \frac1N\sum_{n=1}^N \frac1M\sum_{i=1}^M |r_i(x_n)|,

    in the physical units of ``problem.residual`` (Baldan et al., arXiv:2506.08604, Darcy
    table; there with the operator of Bastek et al.'s code, here with the problem's own
    discrete operator). ``fields`` are de-normalised ``(N, C, *grid)``; returns a float64
    scalar. A set of several equations averages over all of their points together.
    """
    x = as_float64(fields, name="fields")
    total, count = torch.zeros((), dtype=torch.float64), 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            per_sample = _pointwise_mean(problem.residual(x[i : i + batch_size]), torch.abs)
            total = total + per_sample.sum()
            count += per_sample.numel()
    if count == 0:
        raise ValueError("residual_error: no samples")
    return total / count


def residual_metric(
    problem: HasResidual,
    samples: ArrayLike,
    ref: ArrayLike,
    *,
    relative: bool | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Residual statistics of samples relative to the ground-truth residual floor.

    The discrete residual of exact data is not zero — solver tolerance, float32 storage, time
    differences between stored frames — so a model's
    residual means something only beside that floor (Shu et al., arXiv:2211.14680, log
    "residual reference"; Bastek et al., arXiv:2403.14404). Reported: mean, median and 90th
    percentile of the per-sample RMS for samples and reference, and ``ratio`` = mean(samples) /
    mean(reference) — ≈ 1 at the floor, ≫ 1 for physically inconsistent samples.

    ``relative=None`` uses the problem's ``residual_scale`` when it has one (RMS / scale, as
    :meth:`physgen.problem.Problem.relative_residual`), the raw RMS otherwise; the result says
    which in ``"relative"``.
    """
    if relative is None:
        try:
            residual_rms(problem, as_float64(ref)[:1], relative=True)
            relative = True
        except (NotImplementedError, ValueError):
            # No residual_scale (or one that does not apply to these fields): raw RMS.
            relative = False
    rs = residual_rms(problem, samples, relative=relative, batch_size=batch_size)
    rr = residual_rms(problem, ref, relative=relative, batch_size=batch_size)

    def stats(v: Tensor) -> tuple[float, float, float]:
        q = torch.quantile(v, torch.tensor([0.5, 0.9], dtype=torch.float64, device=v.device))
        return float(v.mean()), float(q[0]), float(q[1])

    s_mean, s_med, s_p90 = stats(rs)
    r_mean, r_med, r_p90 = stats(rr)
    return {
        "value": s_mean,
        "floor": r_mean,
        "ratio": s_mean / r_mean if r_mean > 0 else None,
        "relative": relative,
        "median": s_med,
        "p90": s_p90,
        "floor_median": r_med,
        "floor_p90": r_p90,
    }
