"""Residual ("corrective") emulators: a deterministic mean plus a generative model of its error."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from physgen.emulation.emulator import Emulator
from physgen.emulation.pairs import TrajectoryPairs
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


def residual_targets(
    pairs: TrajectoryPairs,
    mean: Any,
    *,
    condition_on_mean: bool = True,
    batch_size: int = 1024,
) -> tuple[Tensor, Tensor, list[float]]:
    r"""The training data of the residual model: :math:`(r_i / s, c_i')` and the scale s.

    With :math:`x_i` the normalized target of pair ``i`` (:meth:`TrajectoryPairs.get_batch`),
    :math:`c_i` its condition and :math:`\mu(c_i)` = ``mean.sample(·, c_i)``, the residual is
    :math:`r_i = x_i - \mu(c_i)`; s is its per-channel root mean square over the pairs, so
    the residual model learns a field of unit scale. :math:`c_i' = [c_i, \mu(c_i)]` (the mean
    as extra channels) when ``condition_on_mean``, else :math:`c_i`.

    Returns:
        ``(r / s, c', s)``, float32 tensors in pair order and s as a list.
    """
    x, cond = pairs.tensors()
    mu = _mean_of(mean, cond, batch_size)
    residual = x - mu
    scale = _rms(residual)
    shape = (1, -1) + (1,) * (residual.ndim - 2)
    scaled = residual / torch.tensor(scale, dtype=residual.dtype).reshape(shape)
    cond_r = torch.cat([cond, mu], dim=1) if condition_on_mean else cond
    return scaled.float(), cond_r.float(), scale


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
    model_options: dict[str, Any] | None = None,
    sample_options: dict[str, Any] | None = None,
    **fit_options: Any,
) -> tuple[Emulator, FitResult]:
    """Train a conditional ``family`` on the residuals of ``mean`` (e.g. the model of a
    trained regressor's :class:`Emulator`) and wrap both as one :class:`ResidualModel`
    emulator. ``mean`` stays frozen; the fit's checkpoint holds the residual model, with the
    pairs' settings under ``"emulation"`` and the scale under ``"residual"``.

    Returns:
        The emulator (on the residual model's EMA weights when ``ema_decay`` is given) and
        the residual model's fit result.
    """
    x, cond, scale = residual_targets(pairs, mean, condition_on_mean=condition_on_mean)
    cls = get_model_class(family) if isinstance(family, str) else family
    model = cls.for_shape(tuple(x.shape[1:]), tuple(cond.shape[1:]), **(model_options or {}))
    settings = pairs.describe()
    extra = {"scale": scale, "condition_on_mean": condition_on_mean}
    metadata = {**fit_options.pop("metadata", {}), "emulation": settings, "residual": extra}
    result = fit(model, (x, cond), steps=steps, metadata=metadata, **fit_options)
    trained = result.ema if result.ema is not None else result.model
    corrective = ResidualModel(mean, trained, scale, condition_on_mean=condition_on_mean)
    return Emulator(corrective, settings, sample_options), result
