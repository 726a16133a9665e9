"""One call for every way to solve an inverse task: ``solve(model, task, y, n_samples)``.

* A **conditional model** (CVAE, conditional flow, conditional diffusion / flow matching —
  any :class:`~physgen.models.base.GenerativeModel` built with a ``cond_shape``) was trained
  on pairs ``(target, lift(y))`` from :class:`~physgen.inverse.pairs.PairedDataset`; its
  ``sample(n, cond)`` draws the members.
* An **unconditional diffusion prior** (a :class:`~physgen.inverse.guided.ScorePrior`, or a
  model exposing ``sde`` and ``score(x, t)``) is steered at sampling time by the observation
  and optionally a PDE residual (:func:`~physgen.inverse.guided.posterior_score`).

Both return the same ensemble layout, ``(B, M, len(task.fields), *grid)``: colorization
members carry the observed channels beside the inferred ones, so residuals and spectra of the
members are computed on complete fields.

Example:
    >>> ens = solve(cvae, task, y, 16, sample_options={"mean": False})  # doctest: +SKIP
    >>> ens.shape  # (B, 16, C, H, W)  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from physgen.inverse.guided import Covariance, ScorePrior, posterior_score
from physgen.inverse.task import Task
from physgen.models.base import GenerativeModel, ScoreBasedModel
from physgen.samplers import get_sampler

__all__ = ["as_score_prior", "is_conditional", "solve"]


def is_conditional(model: Any) -> bool:
    """True for a model built with a conditioning shape (``config["cond_shape"]``)."""
    if isinstance(model, ScorePrior):
        return False
    config = getattr(model, "config", {}) or {}
    return config.get("cond_shape") is not None


def as_score_prior(model: Any) -> ScorePrior:
    """The prior of an unconditional score-based model: its ``sde`` and ``score(x, t)``."""
    if isinstance(model, ScorePrior):
        return model
    if not isinstance(model, ScoreBasedModel):
        raise ValueError(
            f"{type(model).__name__} is neither conditional (no cond_shape) nor a score-based "
            "prior (physgen.models.ScoreBasedModel: an sde and score(x, t)); guided sampling "
            "needs a score-based prior"
        )
    return ScorePrior(model.sde, lambda x, t: model.score(x, t))


def _repeat(t: Tensor, m: int) -> Tensor:
    """``(B, ...)`` → ``(B·M, ...)``, each case repeated ``m`` times consecutively."""
    return t.repeat_interleave(m, dim=0)


def solve(
    model: GenerativeModel | ScorePrior,
    task: Task,
    y: Tensor,
    n_samples: int,
    *,
    batch_size: int = 256,
    sample_options: Mapping[str, Any] | None = None,
    sampler: str = "euler-maruyama",
    steps: int = 500,
    eps: float | None = None,
    prior_fields: Sequence[str] | None = None,
    covariance: Covariance = "isotropic",
    scale: float = 1.0,
    residual: Callable[[Tensor], Tensor] | None = None,
    residual_std: float = 1.0,
    residual_until: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Tensor:
    """Draw ``n_samples`` posterior members for each of the ``B`` observations in ``y``.

    Args:
        model: a conditional model, or an unconditional score-based prior.
        task: the inverse task (operator, fields, targets, grid).
        y: observations ``(B, *obs)`` in the units the model works in (normalized data).
        n_samples: ensemble size M.
        batch_size: members drawn per model call (memory bound).
        sample_options: keyword arguments of a conditional model's ``sample``.
        sampler: guided sampling: a :mod:`physgen.samplers` name.
        steps, eps: guided sampling: reverse-time grid (``eps`` defaults to the model's
            ``eps`` attribute, else 1e-3).
        prior_fields: guided sampling: the prior's channel names when it models more fields
            than the task observes (e.g. a joint (a, u) prior for super-resolution of u); the
            operator then reads the task's channels, and members carry all prior channels.
        covariance, scale, residual, residual_std, residual_until: guided sampling, see
            :func:`~physgen.inverse.guided.posterior_score`.
        generator: guided sampling: noise generator.
        progress: show a bar on stderr, one step per batch of observations.

    Returns:
        The ensemble ``(B, M, len(task.fields), *grid)`` (``len(prior_fields)`` channels when
        given).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be ≥ 1, got {n_samples}")
    expected = task.operator.observed_shape(task.sample_shape)
    if tuple(y.shape[1:]) != expected:
        raise ValueError(
            f"task {task.name!r}: observations must have shape (B, {', '.join(map(str, expected))})"
            f", got {tuple(y.shape)}"
        )
    if eps is None:
        eps = model.eps if isinstance(model, ScoreBasedModel) else 1e-3
    cases = max(1, batch_size // n_samples)
    parts = []
    starts = range(0, y.shape[0], cases)
    for i in tqdm(starts, desc="infer", unit="batch", file=sys.stderr, disable=not progress):
        yb = y[i : i + cases]
        if is_conditional(model):
            members = _conditional(model, task, yb, n_samples, dict(sample_options or {}))
        else:
            members = _guided(
                as_score_prior(model), task, yb, n_samples, sampler=sampler, steps=steps,
                eps=eps,
                prior_fields=prior_fields, covariance=covariance, scale=scale, residual=residual,
                residual_std=residual_std, residual_until=residual_until, generator=generator,
            )  # fmt: skip
        parts.append(members)
    return torch.cat(parts)


def _conditional(
    model: GenerativeModel, task: Task, y: Tensor, m: int, options: dict[str, Any]
) -> Tensor:
    cond = _repeat(task.condition(y), m)  # (B·M, C_lift, *grid)
    with torch.no_grad():
        out = model.sample(cond.shape[0], cond.to(model.device), **options)
    if tuple(out.shape[1:]) != task.target_shape:
        raise ValueError(
            f"the model samples shape {tuple(out.shape[1:])}, but task {task.name!r} infers "
            f"{task.target_shape} (channels {list(task.targets)})"
        )
    members = out.reshape(y.shape[0], m, *task.target_shape)  # (B, M, C_t, *grid)
    return task.assemble(y.to(members), members)


def _guided(prior: ScorePrior, task: Task, y: Tensor, m: int, **kw: Any) -> Tensor:
    op, channels = task.operator, kw["prior_fields"]
    observe: Callable[[Tensor], Tensor] = op
    shape = (y.shape[0] * m, *task.sample_shape)
    if channels is not None:
        missing = [f for f in task.fields if f not in channels]
        if missing:
            raise ValueError(f"prior_fields {list(channels)} lack the task's fields {missing}")
        index = [list(channels).index(f) for f in task.fields]
        observe = lambda x: op(x[:, index])  # noqa: E731
        shape = (y.shape[0] * m, len(channels), *task.grid_shape)
    score = posterior_score(
        prior, observe, _repeat(y, m), noise_std=op.noise_std, covariance=kw["covariance"],
        gram=op.gram, scale=kw["scale"], residual=kw["residual"],
        residual_std=kw["residual_std"], residual_until=kw["residual_until"],
    )  # fmt: skip
    x = prior.sde.prior_sample(shape, generator=kw["generator"], device=y.device, dtype=y.dtype)
    run = get_sampler(kw["sampler"])
    out = run(prior.sde, score, x, steps=kw["steps"], eps=kw["eps"], generator=kw["generator"])
    return out.x.reshape(y.shape[0], m, *shape[1:])  # (B, M, C, *grid)
