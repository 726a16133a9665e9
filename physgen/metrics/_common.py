"""Shared helpers of the metrics package: float64 conversion, axis bookkeeping, floor splits."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ArrayLike",
    "FloorComparison",
    "as_float64",
    "compare_to_floor",
    "flatten_samples",
    "reduce_dims",
    "split_halves",
    "with_floor",
]

ArrayLike = Tensor | np.ndarray | Sequence[float] | float


def as_float64(x: ArrayLike, *, name: str = "input") -> Tensor:
    """Return ``x`` as a float64 tensor on its own device (numpy arrays go to the CPU).

    Every metric accumulates in float64: sums of squares over a 64×64 grid and thousands of
    samples lose digits in float32, and closed-form tests need them.
    """
    if isinstance(x, Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: expected a numeric array, got {type(x).__name__}") from err
    if t.is_complex():
        raise ValueError(f"{name}: expected a real array, got dtype {t.dtype}")
    return t.to(torch.float64)


def reduce_dims(x: Tensor, spatial_dims: int | None) -> tuple[int, ...]:
    """The trailing axes a per-sample metric reduces over.

    ``spatial_dims=None`` means "every axis after the leading (sample) axis", so ``(B, *grid)``
    gives one value per sample; an integer ``d`` reduces the last ``d`` axes only, so
    ``(B, C, T, nx)`` with ``d=1`` gives one value per sample, channel and time.
    """
    if spatial_dims is None:
        if x.ndim < 2:
            raise ValueError(
                f"expected an array (batch, *grid) with ≥ 2 dims, got shape {tuple(x.shape)}"
            )
        return tuple(range(1, x.ndim))
    if not 1 <= spatial_dims <= x.ndim:
        raise ValueError(
            f"spatial_dims={spatial_dims} does not fit an array of shape {tuple(x.shape)}"
        )
    return tuple(range(x.ndim - spatial_dims, x.ndim))


def flatten_samples(x: ArrayLike, *, name: str = "samples") -> Tensor:
    """``(N, *event)`` → ``(N, D)`` float64: one row per sample, for set-to-set distances."""
    t = as_float64(x, name=name)
    if t.ndim < 1 or t.shape[0] < 2:
        raise ValueError(
            f"{name}: expected at least 2 samples along axis 0, got shape {tuple(t.shape)}"
        )
    return t.reshape(t.shape[0], -1)  # (N, D)


def split_halves(ref: Tensor, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Two disjoint, equally sized random halves of a reference set (axis 0), fixed by ``seed``."""
    n = ref.shape[0]
    if n < 4:
        raise ValueError(f"need at least 4 reference samples to form a floor, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(ref.device)
    half = n // 2
    return ref[perm[:half]], ref[perm[half : 2 * half]]


def with_floor(
    metric: Callable[..., Any],
    samples: ArrayLike,
    ref: ArrayLike,
    *,
    split_seed: int = 0,
    num_splits: int = 1,
    **kwargs: Any,
) -> dict[str, Any]:
    """Evaluate a two-set metric for the model and for the reference-vs-reference floor.

    The reference set is split into two disjoint random halves A and B of size m = ⌊N_ref/2⌋.
    ``floor = metric(A, B, **kwargs)`` is the value two independent draws of the *true*
    distribution reach at this sample size; ``value = metric(samples[:m], B, **kwargs)`` uses the
    same sizes, so estimators with a finite-sample bias (Fréchet distance, W1, total-std error)
    are compared on equal terms. A model value within the floor is indistinguishable from the
    data at this N.

    One split gives a noisy floor. With ``num_splits`` > 1 the split is redrawn (seeds
    ``split_seed``, ``split_seed + 1``, ...), ``value`` and ``floor`` are the means over splits
    and ``floor_std`` is the floor's standard deviation across splits. Splits of one reference
    set share their samples, so ``floor_std`` is a lower bound on the spread of a fresh
    reference set (heavily so for statistics dominated by a few large-scale modes, such as
    correlations of long-correlated fields); for a significance test use
    :func:`physgen.metrics.mmd_permutation_test`. Extra keyword arguments go to ``metric``.

    Returns:
        ``{"value", "floor", "n": m}``, plus ``"floor_std"`` when ``num_splits`` > 1.
    """
    if num_splits < 1:
        raise ValueError(f"num_splits must be ≥ 1, got {num_splits}")
    s = as_float64(samples, name="samples")
    r = as_float64(ref, name="ref")
    if s.shape[1:] != r.shape[1:]:
        raise ValueError(
            f"samples have shape {tuple(s.shape[1:])} per sample, reference {tuple(r.shape[1:])}"
        )
    values, floors = [], []
    for k in range(num_splits):
        a, b = split_halves(r, seed=split_seed + k)
        m = a.shape[0]
        if s.shape[0] < m:
            raise ValueError(
                f"samples: {s.shape[0]} samples are fewer than half the reference set ({m}); "
                "a fair comparison with the floor needs at least as many"
            )
        values.append(metric(s[:m], b, **kwargs))
        floors.append(metric(a, b, **kwargs))
    if num_splits == 1:
        return {"value": values[0], "floor": floors[0], "n": m}
    floor_t = torch.stack([torch.as_tensor(f, dtype=torch.float64) for f in floors])
    value_t = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in values])
    return {
        "value": value_t.mean(0),
        "floor": floor_t.mean(0),
        "floor_std": floor_t.std(0),
        "n": m,
    }


class FloorComparison(NamedTuple):
    """A metric value read against its floor (see ``compare_to_floor``)."""

    within: bool | None  # |value − floor| ≤ k·floor_std; None without a floor spread
    ratio: float | None  # value / floor, only for a floor distinguishable from 0
    z: float | None  # (value − floor) / floor_std; None without a (positive) floor spread

    def text(self) -> str:
        """``"within floor"``, the ratio, or ``"n/a"`` with the distance in floor sds."""
        if self.within:
            return "within floor"
        if self.ratio is not None:
            return f"{self.ratio:.2f}"
        return "n/a" if self.z is None else f"n/a ({self.z:+.1f} sd)"


def compare_to_floor(
    value: float, floor: float, floor_std: float | None, *, k: float = 2.0
) -> FloorComparison:
    r"""Read ``value`` against the reference-vs-reference ``floor`` ± ``floor_std``.

    * within: :math:`|v - f| \le k\,s_f`. The floor is what a perfect model scores at this
      sample size, so the distance from the floor — not :math:`|v|` — is the one to test:
      biased estimators (Fréchet distance, W1, mean error) have floors well above 0, and for
      unbiased ones (MMD², energy distance) the floor is ≈ 0 and both readings agree.
    * ratio :math:`v / f` only where the floor is distinguishable from zero,
      :math:`f \ge k\,s_f` and :math:`f > 0`. An unbiased estimator's floor scatters around 0
      (e.g. MMD² = 3.9e-5 ± 0.011); dividing by it gives arbitrarily large, meaningless ratios.
      There ``z = (v − f)/s_f`` says how far out the value is instead.
    * without ``floor_std`` (one split) the floor's own noise is unknown: no verdict, no ratio.

    ``k = 2`` flags about 5 % of perfect models as outside for a Gaussian spread; ``floor_std``
    from overlapping splits is a lower bound on the spread (see ``with_floor``), so the test
    errs towards "outside".
    """
    v, f = float(value), float(floor)
    if floor_std is None or not math.isfinite(float(floor_std)):
        return FloorComparison(None, None, None)
    s = float(floor_std)
    within = abs(v - f) <= k * s
    ratio = v / f if f > 0 and f >= k * s else None
    z = (v - f) / s if s > 0 else None
    return FloorComparison(within, ratio, z)
