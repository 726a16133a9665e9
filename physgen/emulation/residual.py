"""Residual ("corrective") emulators: a deterministic mean plus a generative model of its error."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from physgen.emulation.emulator import Emulator
from physgen.emulation.pairs import TrajectoryPairs, pack_history
from physgen.models import GenerativeModel, get_model_class
from physgen.training import FitResult, fit

__all__ = ["ResidualModel", "residual_targets", "train_residual_emulator"]


@torch.no_grad()
def _mean_of(mean: Any, cond: Tensor, batch_size: int) -> Tensor:
    """``mean.sample`` of every condition, ``batch_size`` at a time, on ``cond``'s device and
    in its dtype (the conditions go to the device of ``mean``'s weights, if it has any)."""
    first = next(iter(mean.parameters()), None) if isinstance(mean, nn.Module) else None
    device = cond.device if first is None else first.device
    parts = [mean.sample(len(c), c.to(device)).to(cond) for c in cond.split(batch_size)]
    return torch.cat(parts)


def _rms(values: Tensor) -> list[float]:
    """Per-channel root mean square over every other axis (1 for an all-zero channel)."""
    rms = values.transpose(0, 1).flatten(1).double().pow(2).mean(1).sqrt()
    return torch.where(rms > 0, rms, torch.ones_like(rms)).tolist()


def _roll_mean(
    emulator: Emulator, frames: Tensor, params: Tensor | None, batch_size: int
) -> Tensor:
    """One deterministic step of ``emulator`` (physical units) per history, in batches."""
    parts = [
        emulator.step(f, None if params is None else params[i : i + batch_size])
        for i, f in zip(range(0, len(frames), batch_size), frames.split(batch_size), strict=True)
    ]
    return torch.cat(parts)


def residual_targets(
    pairs: TrajectoryPairs,
    mean: Any,
    *,
    condition_on_mean: bool = True,
    rollout_residuals: int = 0,
    batch_size: int = 1024,
) -> tuple[Tensor, Tensor, list[float]]:
    r"""The training data of the residual model: :math:`(r_i / s, c_i')` and the scale s.

    With :math:`x_i` the normalized target of pair ``i`` (:meth:`TrajectoryPairs.get_batch`),
    :math:`c_i` its condition and :math:`\mu(c_i)` = ``mean.sample(·, c_i)``, the residual is
    :math:`r_i = x_i - \mu(c_i)`; s is its per-channel root mean square over the pairs, so
    the residual model learns a field of unit scale. :math:`c_i' = [c_i, \mu(c_i)]` (the mean
    as extra channels) when ``condition_on_mean``, else :math:`c_i`.

    ``rollout_residuals`` = n > 0 conditions on histories from the mean's own rollout
    instead of the true ones (the pushforward trick of Brandstetter, Worrall & Welling 2022,
    "Message passing neural PDE solvers", ICLR, applied to the residual): for pair
    :math:`(s, j)` with :math:`m_j = \min(n, j - k)` available steps, ``mean`` is rolled
    deterministically :math:`m_j` steps from the true frames :math:`u_{j-m_j-k..j-m_j-1}`,
    giving the history :math:`\hat u_{j-k..j-1}` (its last :math:`\min(m_j, k)` frames
    predicted), and

    .. math:: c_i = \mathrm{pack}(\hat u_{j-k..j-1}), \qquad
              r_i = x(u_j; \hat u_{j-1}) - \mu(c_i),

    :math:`x(u_j; \hat u_{j-1})` the normalized target of the true frame given that history
    (the frame, or its increment over :math:`\hat u_{j-1}`). In physical units r is then the
    error of the mean's :math:`(m_j + 1)`-step rollout, the one-step error of a state that
    already carries the rollout's error, which is what a rolled-out ensemble meets; n = 0
    gives the one-step residuals of true histories. An exact solver as ``mean`` has zero
    residuals for every n; a mean with a constant bias b per step accumulates
    :math:`-(m_j + 1) b`.

    Returns:
        ``(r / s, c', s)``, float32 tensors in pair order and s as a list.
    """
    if rollout_residuals < 0:
        raise ValueError(f"rollout_residuals must be >= 0, got {rollout_residuals}")
    if rollout_residuals == 0:
        x, cond = pairs.tensors()
        mu = _mean_of(mean, cond, batch_size)
    else:
        x, cond, mu = _rolled_pairs(pairs, mean, rollout_residuals, batch_size)
    residual = x - mu
    scale = _rms(residual)
    shape = (1, -1) + (1,) * (residual.ndim - 2)
    scaled = residual / torch.tensor(scale, dtype=residual.dtype).reshape(shape)
    cond_r = torch.cat([cond, mu.to(cond)], dim=1) if condition_on_mean else cond
    return scaled.float(), cond_r.float(), scale


@torch.no_grad()
def _rolled_pairs(
    pairs: TrajectoryPairs, mean: Any, steps: int, batch_size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """``(x, c, μ(c))`` of every pair with its history rolled by ``mean`` (float64 x)."""
    settings = pairs.describe()
    emulator = Emulator(mean, settings)
    k = pairs.history
    s, j = pairs.index[:, 0], pairs.index[:, 1]
    m = torch.clamp(j - k, max=steps)  # the steps each pair's history can be rolled
    frames = pairs.trajectories.transpose(1, 2)  # (N, T, C, *grid)
    start = j - m
    past = frames[s[:, None], start[:, None] + torch.arange(-k, 0)]  # (P, k, C, *grid)
    params = None if pairs.params is None else pairs.params[s]
    for step in range(1, steps + 1):
        active = m >= step
        if not bool(active.any()):
            break
        p = None if params is None else params[active]
        new = _roll_mean(emulator, past[active], p, batch_size).to(past)
        past[active] = torch.cat([past[active, 1:], new[:, None]], dim=1)
    cond = pack_history(past, pairs.normalizer, params, pairs.param_normalizer)
    x = emulator.target.from_frame(frames[s, j], past[:, -1])
    mu = _mean_of(mean, cond.to(emulator.dtype), batch_size).to(x)
    return x, cond.to(emulator.dtype), mu


class ResidualModel(nn.Module):
    r"""A residual ("corrective") model of the next frame (CorrDiff, Mardani et al. 2023,
    arXiv:2309.15214):

    .. math:: x = \mu(c) + s \odot r, \qquad r \sim p_\phi(\cdot \mid c, \mu(c)),

    with :math:`\mu` a deterministic model of the normalized target (a trained
    :class:`~physgen.emulation.Regressor`, or an exact solver), :math:`p_\phi` a conditional
    generative model trained on the scaled residuals of :func:`residual_targets` and s their
    per-channel scale. The ensemble mean stays close to :math:`\mu`; the spread is that of
    the residual model. ``sample(n, cond, **options)`` follows the model protocol of
    :class:`~physgen.emulation.Emulator` (``options`` go to the residual model's sampler).

    Args:
        mean: ``sample(n, cond) -> (n, C, *grid)``, the mean prediction.
        residual: ``sample(n, cond', **options) -> (n, C, *grid)``, the residual draws.
        scale: s, one value per channel.
        condition_on_mean: whether the residual model sees :math:`\mu(c)` as extra channels.
    """

    def __init__(
        self, mean: Any, residual: Any, scale: list[float], *, condition_on_mean: bool = True
    ) -> None:
        super().__init__()
        self.mean, self.residual, self.condition_on_mean = mean, residual, condition_on_mean
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float64))

    def sample(self, n: int, cond: Tensor | None = None, **options: Any) -> Tensor:
        if cond is None or len(cond) != n:
            raise ValueError("ResidualModel.sample needs one condition per sample")
        with torch.no_grad():
            mu = self.mean.sample(n, cond).to(cond.dtype)
            cond_r = torch.cat([cond, mu], dim=1) if self.condition_on_mean else cond
            r = self.residual.sample(n, cond_r, **options).to(cond.dtype)
        shape = (1, -1) + (1,) * (r.ndim - 2)
        return mu + self.scale.to(r).reshape(shape) * r


def train_residual_emulator(
    pairs: TrajectoryPairs,
    mean: Any,
    family: str | type[GenerativeModel] = "flow-matching",
    *,
    steps: int,
    condition_on_mean: bool = True,
    rollout_residuals: int = 0,
    model_options: dict[str, Any] | None = None,
    sample_options: dict[str, Any] | None = None,
    **fit_options: Any,
) -> tuple[Emulator, FitResult]:
    """Train a conditional ``family`` on the residuals of ``mean`` (e.g. the model of a
    trained regressor's :class:`Emulator`) and wrap both as one :class:`ResidualModel`
    emulator. ``mean`` stays frozen; the fit's checkpoint holds the residual model, with the
    pairs' settings under ``"emulation"`` and the scale under ``"residual"``.
    ``rollout_residuals`` = n trains on the residuals of histories rolled n steps by
    ``mean`` (:func:`residual_targets`), so the residual's scale is that of a rollout's error.

    Returns:
        The emulator (on the residual model's EMA weights when ``ema_decay`` is given) and
        the residual model's fit result.
    """
    x, cond, scale = residual_targets(
        pairs, mean, condition_on_mean=condition_on_mean, rollout_residuals=rollout_residuals
    )
    cls = get_model_class(family) if isinstance(family, str) else family
    model = cls.for_shape(tuple(x.shape[1:]), tuple(cond.shape[1:]), **(model_options or {}))
    settings = pairs.describe()
    extra = {
        "scale": scale,
        "condition_on_mean": condition_on_mean,
        "rollout_residuals": rollout_residuals,
    }
    metadata = {**fit_options.pop("metadata", {}), "emulation": settings, "residual": extra}
    result = fit(model, (x, cond), steps=steps, metadata=metadata, **fit_options)
    trained = result.ema if result.ema is not None else result.model
    corrective = ResidualModel(mean, trained, scale, condition_on_mean=condition_on_mean)
    return Emulator(corrective, settings, sample_options), result
