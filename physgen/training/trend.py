r"""Whether a training run ended with its loss still falling steeply.

A run of :math:`T` steps logs records :math:`(s_i, L_i)`, each :math:`L_i` the mean loss of
a logging window (so the records are already smoothed over ``log_every`` steps). Over the
records of the last ``tail`` fraction of the run (:math:`s_i \ge (1 - \text{tail})\,T`, by
default the last 20 %), fit the least-squares line

.. math:: y_i = a + b\,s_i, \qquad
          y_i = \begin{cases} \log L_i & \text{every } L_i > 0 \text{ in the tail,}\\
                              L_i / R & \text{otherwise,} \end{cases}

with :math:`R = \max_i L_i - \min_i L_i` over the whole run. The decrease per tenth of the
run is :math:`d = -b \cdot T/10`: on the log scale the loss falls by the fraction
:math:`1 - e^{-d}` per tenth of the run; otherwise (losses that may be negative, such as a
negative log-likelihood in nats) by :math:`d` of the run's whole range. The run ended
**still falling steeply** when that fraction exceeds ``threshold`` (5 % by default) and the
fall is significant, :math:`b + 2\,\mathrm{SE}(b) < 0`, so that minibatch noise on a plateau
does not count. An exponential decay :math:`L = e^{-k s}` falls by :math:`1 - e^{-kT/10}`
per tenth at every point of the run, so it is flagged whenever :math:`kT/10 > -\log 0.95`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LossTrend", "loss_trend"]


@dataclass(frozen=True)
class LossTrend:
    """The fitted trend of a run's last steps (see the module docstring).

    ``fall`` is the fraction by which the loss falls per tenth of the run (negative when it
    rises), ``relative`` whether it is relative to the loss (log scale) or to the run's
    range of losses, ``records`` the number of records fitted.
    """

    fall: float
    relative: bool
    significant: bool
    records: int
    tail: float
    threshold: float

    @property
    def steep(self) -> bool:
        """The loss was still falling by more than ``threshold`` per tenth of the run."""
        return self.significant and self.fall > self.threshold

    def describe(self) -> str:
        """One line for the end of a run."""
        scale = "of the loss" if self.relative else "of its range over the run"
        return (
            f"the loss was still falling at the end: {100 * self.fall:.0f}% {scale} per "
            f"tenth of the run, fitted over the last {100 * self.tail:.0f}% of steps"
        )


def loss_trend(
    records: Iterable[Mapping[str, Any]],
    *,
    key: str = "loss",
    tail: float = 0.2,
    threshold: float = 0.05,
    min_records: int = 5,
) -> LossTrend | None:
    """Fit the trend of ``key`` against ``step`` over the last ``tail`` of the run.

    ``records`` are training-log records (``{"step": ..., "loss": ...}``); records without a
    finite number under ``key`` are left out. Returns None when fewer than ``min_records``
    records fall in the tail (a run too short to judge) or the losses are all equal.
    """
    if not 0 < tail <= 1:
        raise ValueError(f"tail must be in (0, 1], got {tail}")
    points = [
        (float(r["step"]), float(r[key]))
        for r in records
        if isinstance(r.get(key), (int, float))
        and isinstance(r.get("step"), (int, float))
        and math.isfinite(float(r[key]))
    ]
    if not points:
        return None
    total = max(s for s, _ in points)
    window = [(s, v) for s, v in points if s >= (1 - tail) * total]
    if len(window) < min_records:
        return None
    losses = [v for _, v in points]
    relative = all(v > 0 for _, v in window)
    spread = max(losses) - min(losses)
    if not relative and spread == 0:
        return None
    ys = [math.log(v) if relative else v / spread for _, v in window]
    xs = [s for s, _ in window]
    n = len(xs)
    x_mean, y_mean = sum(xs) / n, sum(ys) / n
    sxx = sum((x - x_mean) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True)) / sxx
    residual = sum((y - y_mean - slope * (x - x_mean)) ** 2 for x, y in zip(xs, ys, strict=True))
    se = math.sqrt(residual / (n - 2) / sxx) if n > 2 else math.inf
    d = -slope * total / 10  # decrease per tenth of the run
    fall = -math.expm1(-d) if relative else d
    return LossTrend(
        fall=fall,
        relative=relative,
        significant=slope + 2 * se < 0,
        records=n,
        tail=tail,
        threshold=threshold,
    )
