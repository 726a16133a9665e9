"""Autoregressive emulators: a conditional model of the next frame, its training and rollouts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from physgen.data import Normalizer
from physgen.emulation.pairs import TrajectoryPairs, pack_history
from physgen.models import GenerativeModel, get_model_class
from physgen.training import FitResult, fit

__all__ = ["Emulator", "SolverModel", "rollout", "train_emulator"]


def _normalizers(settings: dict[str, Any]) -> tuple[Normalizer, Normalizer | None]:
    """The frame and parameter z-scorings stored by :meth:`TrajectoryPairs.describe`."""
    grid_ndim = len(settings["sample_shape"]) - 1
    frames = Normalizer(settings["mean"], settings["scale"], grid_ndim)
    params = None
    if settings.get("param_mean") is not None:
        params = Normalizer(settings["param_mean"], settings["param_scale"], 0)
    return frames, params


class _Target:
    """The map between a model's normalized output and the next frame in physical units:
    the frame itself, or the increment over the newest history frame
    (:class:`TrajectoryPairs` ``target``)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.frames, _ = _normalizers(settings)
        self.increment = None
        if settings.get("target", "frame") == "increment":
            grid_ndim = len(settings["sample_shape"]) - 1
            mean, scale = settings["increment_mean"], settings["increment_scale"]
            self.increment = Normalizer(mean, scale, grid_ndim)

    def to_frame(self, x: Tensor, newest: Tensor) -> Tensor:
        """The next frame (physical) of a normalized model output ``x``."""
        if self.increment is None:
            return self.frames.denormalize(x)
        return newest + self.increment.denormalize(x)

    def from_frame(self, frame: Tensor, newest: Tensor) -> Tensor:
        """The normalized model output whose next frame is ``frame``."""
        if self.increment is None:
            return self.frames.normalize(frame)
        return self.increment.normalize(frame - newest)


class SolverModel(nn.Module):
    """A deterministic "model" of the next frame: the reference solver behind the model protocol.

    ``sample(n, cond)`` de-normalizes the newest frame of each condition (channels
    ``(k−1)·C .. k·C − 1`` of :func:`pack_history`), advances it with ``advance`` (e.g. a
    problem's :meth:`~physgen.problem.TimeDependentProblem.advance`) and returns the result
    as a normalized target (the frame, or its increment over the newest frame). Rolled out,
    it reproduces the reference trajectory: the check that the emulation plumbing (pairs,
    conditioning, normalization, rollout) is exact.
    """

    def __init__(self, advance: Callable[[Tensor], Tensor], settings: dict[str, Any]) -> None:
        super().__init__()
        self.advance = advance
        self.normalizer, _ = _normalizers(settings)
        self.target = _Target(settings)
        self.channels = settings["sample_shape"][0]
        self.history = settings["history"]

    def sample(self, n: int, cond: Tensor | None = None, **options: Any) -> Tensor:
        if cond is None or cond.shape[0] != n:
            raise ValueError("SolverModel.sample needs one condition per sample")
        newest = cond[:, (self.history - 1) * self.channels : self.history * self.channels]
        frame = self.normalizer.denormalize(newest)
        return self.target.from_frame(self.advance(frame), frame)


class Emulator:
    r"""A generative model of the next frame, :math:`u_j \sim p_\theta(\cdot \mid u_{j-k..j-1},
    \mu)`, with the conditioning and normalization its training pairs used.

    Args:
        model: any model with ``sample(n, cond, **options) -> (n, C, *grid)`` trained on
            :class:`TrajectoryPairs` (normalized targets, :func:`pack_history` conditions).
        settings: :meth:`TrajectoryPairs.describe` of the training pairs (stored in the
            checkpoint's metadata under ``"emulation"``).
        options: sampler options passed to every ``model.sample`` call.
    """

    def __init__(
        self, model: Any, settings: dict[str, Any], options: dict[str, Any] | None = None
    ) -> None:
        self.model, self.settings, self.options = model, dict(settings), dict(options or {})
        self.history = int(settings["history"])
        self.normalizer, self.param_normalizer = _normalizers(settings)
        self.target = _Target(settings)
        first = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
        # A parameter-free model (an exact solver) keeps float64, so it stays exact.
        self.dtype = torch.float64 if first is None else first.dtype
        self.device = torch.device("cpu") if first is None else first.device

    def step(self, frames: Tensor, params: Tensor | None = None) -> Tensor:
        """One draw of the next frame ``(B, C, *grid)`` per history ``frames (B, k, C, *grid)``
        (physical units, oldest first)."""
        if frames.shape[1] != self.history or tuple(frames.shape[2:]) != tuple(
            self.settings["sample_shape"]
        ):
            raise ValueError(
                f"frames must be (B, {self.history}, *{tuple(self.settings['sample_shape'])}), "
                f"got {tuple(frames.shape)}"
            )
        cond = pack_history(frames, self.normalizer, params, self.param_normalizer)
        cond = cond.to(self.device, self.dtype)
        with torch.no_grad():
            x = self.model.sample(frames.shape[0], cond, **self.options)
        return self.target.to_frame(x.to(frames.device, frames.dtype), frames[:, -1])


def rollout(
    emulator: Emulator,
    init: Tensor,
    steps: int,
    members: int = 1,
    *,
    params: Tensor | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    noise_refresh: int = 1,
    inflation: float = 1.0,
) -> Tensor:
    r"""Autoregressive ensembles: ``(B, M, steps, C, *grid)`` from histories ``init``.

    Each of the ``members`` copies of ``init (B, k, C, *grid)`` (physical units) is advanced
    by :math:`u_{j} \sim p_\theta(\cdot \mid u_{j-k..j-1})`, feeding its own draws back as
    history, so members diverge only through the model's randomness (the initial state is
    shared). Draws come from torch's generator seeded with ``seed`` (restored afterwards);
    ``batch_size`` bounds the histories sent to the model at once.

    Noise refreshes: step j (0-based) draws fresh random numbers when j is a multiple of
    n = ``noise_refresh`` (a *refresh*); any other step replays the random numbers of the
    last refresh, i.e. :math:`u_j = G_\theta(\xi_{r(j)}; u_{j-k..j-1})` with the sampler's
    noise :math:`\xi` (the latent z, the initial noise of an ODE sampler, every draw of an SDE
    sampler) renewed only at steps :math:`r(j) = n \lfloor j/n \rfloor`. ``n = 1`` (the
    default) refreshes at every step; ``n = 0`` never after the first, so each member keeps
    one noise realization for the whole rollout and is a deterministic map of its history.
    The replay is exact for any sampler whose draws do not depend on the condition's values
    (the same shapes in the same order).

    Inflation: every step's draws of a case's M members are moved about their mean,
    :math:`u^m_j \leftarrow \bar u_j + \lambda (u^m_j - \bar u_j)`, λ = ``inflation``,
    before they enter the histories: the multiplicative covariance inflation of ensemble
    data assimilation (Anderson & Anderson 1999), here a deflation for λ < 1 that corrects an
    over-dispersed model's spread. The mean is unchanged and the spread of each step's draws
    is scaled by λ; λ = 1 (the default) is the plain rollout.
    """
    if steps < 1 or members < 1:
        raise ValueError(f"steps and members must be >= 1, got {steps} and {members}")
    if not inflation > 0:
        raise ValueError(f"inflation must be > 0, got {inflation}")
    if noise_refresh < 0:
        raise ValueError(f"noise_refresh must be >= 0 (0: never refresh), got {noise_refresh}")
    b = init.shape[0]
    history = init.repeat_interleave(members, dim=0)  # (B·M, k, C, *grid), case-major
    reps = None if params is None else params.repeat_interleave(members, dim=0)
    size = batch_size or len(history)
    frames = []
    cuda = emulator.device.type == "cuda"
    devices = [emulator.device] if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        saved: tuple[Tensor, Tensor | None] | None = None
        for j in range(steps):
            if saved is None or (noise_refresh and j % noise_refresh == 0):
                state = torch.cuda.get_rng_state(emulator.device) if cuda else None
                saved = (torch.get_rng_state(), state)
            else:  # replay the last refresh's draws
                torch.set_rng_state(saved[0])
                if saved[1] is not None:
                    torch.cuda.set_rng_state(saved[1], emulator.device)
            parts = [
                emulator.step(h, None if reps is None else reps[i : i + size])
                for i, h in zip(range(0, len(history), size), history.split(size), strict=True)
            ]
            new = torch.cat(parts)
            if inflation != 1.0:
                draws = new.reshape(b, members, *new.shape[1:])
                mean = draws.mean(1, keepdim=True)
                new = (mean + inflation * (draws - mean)).reshape(new.shape)
            frames.append(new)
            history = torch.cat([history[:, 1:], new[:, None]], dim=1)
    out = torch.stack(frames, dim=1)  # (B·M, steps, C, *grid)
    return out.reshape(b, members, *out.shape[1:])


def train_emulator(
    pairs: TrajectoryPairs,
    family: str | type[GenerativeModel] = "diffusion",
    *,
    steps: int,
    model_options: dict[str, Any] | None = None,
    sample_options: dict[str, Any] | None = None,
    valid: TrajectoryPairs | None = None,
    **fit_options: Any,
) -> tuple[Emulator, FitResult]:
    """Train a conditional ``family`` on ``pairs`` with :func:`physgen.training.fit`.

    ``family`` is a registry name (``"diffusion"``, ``"flow-matching"``, ...) or a model
    class such as :class:`~physgen.emulation.baselines.Regressor`. The checkpoint's metadata
    carries the pairs' settings under ``"emulation"`` (what ``physgen rollout`` reads).

    Returns:
        The emulator (on the EMA weights when ``ema_decay`` is given) and the fit result.
    """
    cls = get_model_class(family) if isinstance(family, str) else family
    model = cls.for_shape(pairs.sample_shape, pairs.cond_shape, **(model_options or {}))
    settings = pairs.describe()
    metadata = {**fit_options.pop("metadata", {}), "emulation": settings}
    result = fit(
        model,
        pairs.tensors(),
        steps=steps,
        valid_data=None if valid is None else valid.tensors(),
        metadata=metadata,
        **fit_options,
    )
    trained = result.ema if result.ema is not None else result.model
    return Emulator(trained, settings, sample_options), result
