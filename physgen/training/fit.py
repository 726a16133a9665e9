"""``fit``: the one training loop for every family, one or two players, one or many processes."""

from __future__ import annotations

import json
import math
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from physgen.models.base import GenerativeModel, TwoPlayerModel
from physgen.utils import seed_everything

from . import distributed
from .amp import autocast
from .checkpoint import (
    checkpoint_paths,
    get_rng_state,
    model_entries,
    read_checkpoint,
    read_newest_valid,
    save_checkpoint,
    set_rng_state,
)
from .conflict_free import conflict_free_direction
from .data import BatchOrder, DataLike, batches, num_samples, sequential_batches
from .ema import EMA
from .log import MetricsLog

__all__ = ["CHECKPOINT_NAME", "FitResult", "NonFiniteLossError", "fit", "lr_factor"]

CHECKPOINT_NAME = "checkpoint.pt"
SKIP_WINDOW = 100  # steps over which max_skip_fraction is measured
SKIP_ALLOWANCE = 10  # skips always tolerated inside a window, however short the run so far

OptimizerFactory = Callable[[list[nn.Parameter], float], torch.optim.Optimizer]


class NonFiniteLossError(FloatingPointError):
    """A training loss, gradient or weight became NaN or infinite at the step named."""


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained model (the same object that was passed in), in eval mode.
        ema: the exponential-moving-average copy, or ``None`` without ``ema_decay``.
        history: every logged record (training metrics and validation losses).
        step: the number of optimizer steps taken in total (including resumed ones).
        skipped: how many updates were skipped for non-finite losses.
        checkpoint: the last checkpoint written, if any.
    """

    model: GenerativeModel
    ema: GenerativeModel | None
    history: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    skipped: int = 0
    checkpoint: Path | None = None


def lr_factor(name: str, step: int, total: int, warmup: int = 0) -> float:
    r"""Learning-rate multiplier at ``step`` of ``total``: linear warm-up, then ``name``.

    ``constant``: 1; ``cosine``: :math:`\tfrac12(1 + \cos(\pi p))`; ``linear``: :math:`1 - p`,
    with :math:`p` the fraction of post-warm-up steps done (Loshchilov & Hutter, "SGDR",
    2017, arXiv:1608.03983).
    """
    if step < warmup:
        return (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    if name == "constant":
        return 1.0
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    if name == "linear":
        return 1.0 - p
    raise ValueError(f"unknown schedule {name!r}; expected constant, cosine or linear")


def _make_optimizer(
    kind: str | OptimizerFactory,
    params: list[nn.Parameter],
    lr: float,
    betas: tuple[float, float],
    weight_decay: float,
) -> torch.optim.Optimizer:
    if callable(kind):
        return kind(params, lr)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=betas[0], weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {kind!r}; expected adam, adamw, sgd or a callable")


def _trainable(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    return [p for p in params if p.requires_grad]


def _grad_sum(params: list[nn.Parameter]) -> Tensor:
    """Sum of every gradient entry: finite iff all entries are (barring fp32 overflow)."""
    grads = [p.grad.sum() for p in params if p.grad is not None]
    return torch.stack(grads).sum() if grads else torch.zeros(())


def _grad_norm(params: list[nn.Parameter], clip: float | None) -> Tensor:
    """Total gradient 2-norm, clipped to ``clip`` when given (norm reported before clipping)."""
    if clip is not None:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


@dataclass
class _Player:
    """One optimizer, the parameters it updates and the model method giving its loss."""

    method: str
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    base_lr: float


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _resume_source(
    resume: bool | str | Path, checkpoint_dir: Path | None, keep: int
) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to resume from and its contents: an explicit path, or the newest one in
    ``checkpoint_dir`` that verifies (a damaged newest one is skipped with a warning)."""
    if resume is False:
        return None
    if resume is True:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir (or pass the checkpoint path)")
        return read_newest_valid(checkpoint_paths(checkpoint_dir / CHECKPOINT_NAME, keep))
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"resume: no checkpoint file at {path}")
    return path, read_checkpoint(path)


def fit(
    model: GenerativeModel,
    data: DataLike,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 64,
    optimizer: str | OptimizerFactory = "adam",
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    schedule: Literal["constant", "cosine", "linear"] = "constant",
    warmup_steps: int = 0,
    ema_decay: float | None = None,
    grad_clip: float | None = None,
    amp: bool | None = None,
    device: str | torch.device | None = None,
    valid_data: DataLike | None = None,
    valid_every: int | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 2,
    resume: bool | str | Path = False,
    log_file: str | Path | None = None,
    log_every: int = 10,
    nonfinite: Literal["raise", "skip"] = "raise",
    max_skip_fraction: float = 0.1,
    seed: int = 0,
    n_critic: int | None = None,
    critic_lr: float | None = None,
    num_workers: int = 0,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` by minimizing the batch mean of its per-sample ``loss``.

    One step draws a global batch (a pure function of ``(seed, step)``, so resumed runs see
    the same batches), computes ``model.loss(x, cond).mean()`` under bf16 autocast when
    ``amp``, back-propagates, checks the loss and the gradients are finite, optionally clips,
    and updates the weights (and the EMA copy); a non-finite gradient behind a finite loss is
    caught before its update, so the weights never become NaN. The gradient norm is computed
    on clipping and log steps only (on small models it costs a few percent of a step); other
    steps check the cheaper sum of the gradients. Two-player models (GANs) take
    ``n_critic`` critic steps on ``discriminator_loss`` and then one generator step on
    ``generator_loss``, each player with its own optimizer.

    Under ``torchrun`` the same call trains data-parallel: each of the ``WORLD_SIZE``
    processes takes an equal slice of every global batch, DDP averages the gradients, and
    only rank 0 shows progress and writes logs and checkpoints.

    Args:
        model: any :class:`~physgen.models.GenerativeModel`.
        data: a tensor of samples, an ``(x, cond)`` pair of tensors, or a ``Dataset`` yielding
            tensors or ``(x, cond)`` pairs.
        steps: number of optimizer steps in total (counting resumed ones); or give ``epochs``.
        epochs: number of passes over ``data`` (incomplete last batches dropped).
        batch_size: global batch size (split over processes under DDP).
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"`` or a factory ``(params, lr) -> Optimizer``.
        lr: peak learning rate (generator rate for two-player models).
        betas: Adam betas (SGD momentum is ``betas[0]``).
        weight_decay: L2 (Adam/SGD) or decoupled (AdamW) weight decay.
        schedule: learning-rate decay after warm-up (see :func:`lr_factor`).
        warmup_steps: steps of linear learning-rate warm-up.
        ema_decay: keep an exponential moving average of the weights with this decay.
        grad_clip: clip the global gradient norm to this value.
        amp: bf16 autocast; default on for CUDA, off otherwise.
        device: where to train; default CUDA when available.
        valid_data: held-out data whose mean loss is logged as ``valid_loss``.
        valid_every: validate every this many steps (and at the end).
        checkpoint_dir: where ``checkpoint.pt`` and, by default, ``log.jsonl`` go.
        checkpoint_every: write a checkpoint every this many steps (and always at the end).
        keep_checkpoints: checkpoints kept: ``checkpoint.pt`` and, by default, the one before
            it as ``checkpoint.prev.pt`` (then ``checkpoint.prev2.pt``, ...). Each carries a
            SHA-256 digest of its contents.
        resume: ``True`` continues from ``checkpoint_dir``'s newest checkpoint that verifies
            (a damaged newest one is skipped with a warning) when there is one; a path
            continues from that file.
        log_file: JSON-lines metrics file (default ``checkpoint_dir/log.jsonl``).
        log_every: steps between logged training records.
        nonfinite: on a NaN/inf loss or gradient, ``"raise"`` :class:`NonFiniteLossError`
            naming the step, or ``"skip"`` the update and count it (``skipped`` in the logs).
            A checkpoint of non-finite weights is always refused.
        max_skip_fraction: with ``nonfinite="skip"``, stop with :class:`NonFiniteLossError`
            when more than this fraction of the last ``SKIP_WINDOW`` (100) steps — of the
            steps so far in a shorter run — was skipped, and more than ``SKIP_ALLOWANCE``
            (10) of them; ``1.0`` never stops.
        seed: seeds the batch order and (per rank) the random draws inside the losses.
        n_critic: critic steps per generator step (default ``model.n_critic``).
        critic_lr: critic learning rate (default ``lr``).
        num_workers: ``DataLoader`` workers for datasets not held as tensors.
        progress: show a progress bar (rank 0 only).
        metadata: JSON-able information stored in checkpoints (e.g. field names, units and
            normalization statistics that ``physgen sample`` needs).

    Returns:
        A :class:`FitResult` with the model, its EMA copy and the logged history.

    Example:
        >>> result = fit(model, torch.randn(1024, 2), steps=100, batch_size=128)  # doctest: +SKIP
        >>> result.history[-1]["loss"]  # doctest: +SKIP
    """
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps= and epochs=")
    if nonfinite not in ("raise", "skip"):
        raise ValueError(f"nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
    if not 0.0 <= max_skip_fraction <= 1.0:
        raise ValueError(f"max_skip_fraction must be in [0, 1], got {max_skip_fraction}")
    if log_every < 1:
        raise ValueError(f"log_every must be positive, got {log_every}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be positive (or None for no clipping), got {grad_clip}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if n_critic is not None and n_critic < 1:
        raise ValueError(f"n_critic must be >= 1 (or None for the model's), got {n_critic}")
    if keep_checkpoints < 1:
        raise ValueError(f"keep_checkpoints must be >= 1, got {keep_checkpoints}")
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if log_file is None and checkpoint_dir is not None:
        log_file = checkpoint_dir / "log.jsonl"
    process, device = distributed.setup(_resolve_device(device))
    return _fit(**{k: v for k, v in locals().items() if k != "process"}, process=process)


def _fit(
    *,
    model: GenerativeModel,
    data: DataLike,
    steps: int | None,
    epochs: int | None,
    batch_size: int,
    optimizer: str | OptimizerFactory,
    lr: float,
    betas: tuple[float, float],
    weight_decay: float,
    schedule: str | Callable[[int], float],
    warmup_steps: int,
    ema_decay: float | None,
    grad_clip: float | None,
    amp: bool | None,
    device: torch.device,
    valid_data: DataLike | None,
    valid_every: int | None,
    checkpoint_dir: Path | None,
    checkpoint_every: int | None,
    keep_checkpoints: int,
    resume: bool | str | Path,
    log_file: str | Path | None,
    log_every: int,
    nonfinite: str,
    max_skip_fraction: float,
    seed: int,
    n_critic: int | None,
    critic_lr: float | None,
    num_workers: int,
    progress: bool,
    metadata: dict[str, Any] | None,
    process: distributed.Process,
) -> FitResult:
    if batch_size % process.world_size:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {process.world_size} processes"
        )
    if valid_data is not None:
        num_samples(valid_data, "valid_data")
    try:
        json.dumps(metadata)
    except TypeError as err:
        raise TypeError(f"metadata must be JSON-able (it goes into checkpoints): {err}") from None
    two_player = isinstance(model, TwoPlayerModel)
    n_critic = (n_critic or model.n_critic) if two_player else 1
    amp = device.type == "cuda" if amp is None else amp
    order = BatchOrder(num_samples(data), batch_size, seed)
    total = steps if steps is not None else (epochs * order.per_epoch) // n_critic
    if total < 1:
        raise ValueError(f"nothing to train: {total} steps")
    factor = schedule if callable(schedule) else None
    lr_factor(schedule if factor is None else "constant", 0, total)  # validates the name
    record = {
        "batch_size": batch_size,
        "seed": seed,
        "lr": lr,
        "critic_lr": critic_lr,
        "n_critic": n_critic,
        "schedule": schedule if factor is None else "custom",
        "warmup_steps": warmup_steps,
        "steps": total,
        "ema_decay": ema_decay,
        "grad_clip": grad_clip,
        "amp": amp,
        "world_size": process.world_size,
    }

    model.to(device).train()
    players = _make_players(model, two_player, optimizer, lr, critic_lr, betas, weight_decay)
    resumed = _resume_source(resume, checkpoint_dir, keep_checkpoints)
    source = resumed[0] if resumed is not None else None
    if source is None:
        _initialize(model, data, order, device, amp, seed)
    ema = EMA(model, ema_decay) if ema_decay is not None else None
    objective = distributed.wrap(model, process, device, two_player)
    terms = _loss_terms_of(model, two_player)
    settings = _StepSettings(
        objective if terms is None else terms, amp, device, grad_clip, process, nonfinite
    )

    start, skipped = 0, 0
    window = _Window()
    budget = _SkipBudget(max_skip_fraction)
    if source is not None:
        start = _restore(source, resumed[1], model, ema, players, process, seed)
        # The loop's own counters: the resumed run logs and stops exactly as an unbroken one.
        saved = resumed[1]["fit"]
        skipped = int(saved.get("skipped", 0))
        window.resume(saved.get("log_window", {}))
        budget.resume(saved.get("recent_skips", []))
    else:
        seed_everything(seed + process.rank)
    if start >= total:
        warnings.warn(
            f"the checkpoint is at step {start}, steps={total}: nothing to train", stacklevel=3
        )

    log = MetricsLog(log_file if process.is_main else None, start if source else None)
    bar = tqdm(
        total=total,
        initial=start,
        disable=not (progress and process.is_main),
        unit="step",
        dynamic_ncols=True,
    )
    stream = batches(
        data,
        order,
        start * n_critic,
        total * n_critic,
        device=device,
        rank=process.rank,
        world_size=process.world_size,
        num_workers=num_workers,
    )
    last_checkpoint, last_rate = None, None
    try:
        for step in range(start, total):
            rate = (
                factor(step)
                if factor is not None
                else lr_factor(schedule, step, total, warmup_steps)
            )
            if rate != last_rate:
                last_rate = rate
                _set_rate(players, rate)
            losses, ok = _train_step(
                players,
                stream,
                n_critic,
                settings,
                step,
                want_norm=(step + 1) % log_every == 0 or step + 1 == total,
            )
            skipped += not ok
            budget.add(ok, step)
            if ema is not None and ok:
                ema.update(model)
            done = step + 1
            window.add(losses["generator_loss" if two_player else "loss"][0], ok)
            if done % log_every == 0 or done == total:
                bar.update(done - bar.n)  # once per log record: the bar costs nothing per step
                metrics = {"step": done, **window.flush(batch_size * n_critic)}
                metrics.update(lr=players[-1].base_lr * rate, skipped=skipped)
                metrics.update(_loss_metrics(losses, two_player))
                log.write(metrics)
                bar.set_postfix(
                    loss=f"{metrics['loss']:.4g}", samples_per_s=f"{metrics['samples_per_s']:.0f}"
                )
            paused = time.perf_counter()
            if valid_data is not None and (
                (valid_every and done % valid_every == 0) or done == total
            ):
                log.write(
                    {
                        "step": done,
                        **_validate(model, ema, valid_data, batch_size, device, amp, seed, process),
                    }
                )
            if checkpoint_dir is not None and (
                (checkpoint_every and done % checkpoint_every == 0) or done == total
            ):
                record.update(
                    skipped=skipped, log_window=window.state(), recent_skips=budget.state()
                )
                last_checkpoint = _save(
                    checkpoint_dir / CHECKPOINT_NAME,
                    model,
                    ema,
                    players,
                    done,
                    record,
                    metadata,
                    process,
                    keep_checkpoints,
                )
            window.exclude(time.perf_counter() - paused)
    finally:
        bar.close()
        log.close()
    model.eval()
    return FitResult(
        model,
        ema.module if ema is not None else None,
        log.history,
        max(total, start),
        skipped,
        last_checkpoint,
    )


def _make_players(
    model: GenerativeModel,
    two_player: bool,
    optimizer: str | OptimizerFactory,
    lr: float,
    critic_lr: float | None,
    betas: tuple[float, float],
    weight_decay: float,
) -> list[_Player]:
    """One player per optimizer: the critic, then the generator, or the model's one loss."""
    if two_player:
        roles = [
            (
                "discriminator_loss",
                model.discriminator_parameters(),
                lr if critic_lr is None else critic_lr,
            ),
            ("generator_loss", model.generator_parameters(), lr),
        ]
    else:
        roles = [("loss", model.parameters(), lr)]
    players = []
    for method, params, rate in roles:
        params = _trainable(params)
        if not params:
            raise ValueError(f"{type(model).__name__} has no trainable parameters for {method}")
        opt = _make_optimizer(optimizer, params, rate, betas, weight_decay)
        players.append(_Player(method, params, opt, rate))
    return players


def _set_rate(players: list[_Player], rate: float) -> None:
    """Scale every player's base learning rate by the schedule's factor ``rate``."""
    for player in players:
        for group in player.optimizer.param_groups:
            group["lr"] = player.base_lr * rate


@dataclass(frozen=True)
class _StepSettings:
    """What every optimizer step of a run shares (see :func:`_update`)."""

    objective: Callable[[str, Tensor, Tensor | None], Any]
    amp: bool
    device: torch.device
    grad_clip: float | None
    process: distributed.Process
    nonfinite: str


def _train_step(
    players: list[_Player],
    stream: Iterator[tuple[Tensor, Tensor | None]],
    n_critic: int,
    settings: _StepSettings,
    step: int,
    want_norm: bool,
) -> tuple[dict[str, tuple[float, float | None]], bool]:
    """One training step: ``n_critic`` critic updates then one generator update (two
    players), or one update; returns each method's last (loss, gradient norm) and whether
    every update of the step was finite."""
    losses: dict[str, tuple[float, float | None]] = {}
    ok = True
    for player in players:
        for _ in range(n_critic if player.method == "discriminator_loss" else 1):
            if player.method != "generator_loss":
                x, cond = next(stream)  # the generator reuses the last critic batch
            value, norm = losses[player.method] = _update(
                settings.objective,
                player,
                players,
                x,
                cond,
                amp=settings.amp,
                device=settings.device,
                grad_clip=settings.grad_clip,
                want_norm=want_norm,
                process=settings.process,
                step=step,
                nonfinite=settings.nonfinite,
            )
            # Every critic update counts, not only the last one of the step.
            ok = ok and math.isfinite(value) and (norm is None or math.isfinite(norm))
    return losses, ok


def _loss_metrics(
    losses: dict[str, tuple[float, float | None]], two_player: bool
) -> dict[str, float | None]:
    """The log's per-method losses and gradient norms (the window holds the mean loss)."""
    metrics: dict[str, float | None] = {}
    for method, (value, norm) in losses.items():
        if two_player:
            metrics[method] = value
            metrics[f"grad_norm_{method}"] = norm
        else:
            metrics["grad_norm"] = norm
    return metrics


def _initialize(
    model: GenerativeModel,
    data: DataLike,
    order: BatchOrder,
    device: torch.device,
    amp: bool,
    seed: int,
) -> None:
    """Run the model's data-dependent initialisation on the whole first global batch.

    Every process does it with the same batch and the random draws of rank 0 (on a forked
    generator, so training's stream is untouched): layers initialised from data then match
    across ranks and match a single-process run, whose first step would see this batch.
    """
    x, cond = next(batches(data, order, 0, 1, device=device))
    forked = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked), autocast(device, amp):
        torch.manual_seed(seed)
        model.initialize(x, cond)


class _Window:
    """Running loss mean and throughput between two log records."""

    def __init__(self) -> None:
        self.loss, self.finite, self.steps, self.start = 0.0, 0, 0, time.perf_counter()

    def state(self) -> dict[str, float | int]:
        """The loss sum and count of the window still open (what a checkpoint keeps)."""
        return {"loss": self.loss, "finite": self.finite}

    def resume(self, state: dict[str, float | int]) -> None:
        """Reopen a checkpointed window, so its log record averages the same steps as an
        unbroken run's (the throughput counts only this process's steps)."""
        self.loss, self.finite = float(state.get("loss", 0.0)), int(state.get("finite", 0))

    def add(self, loss: float, ok: bool) -> None:
        self.steps += 1
        if ok:
            self.loss += loss
            self.finite += 1

    def exclude(self, seconds: float) -> None:
        """Leave time spent on validation and checkpoints out of the throughput."""
        self.start += seconds

    def flush(self, samples_per_step: int) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out = {
            "loss": self.loss / self.finite if self.finite else math.nan,
            "samples_per_s": self.steps * samples_per_step / elapsed,
        }
        self.__init__()
        return out


class _SkipBudget:
    """The skipped steps among the last ``SKIP_WINDOW``: too many stop the run."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.recent: deque[bool] = deque(maxlen=SKIP_WINDOW)

    def state(self) -> list[bool]:
        """Which of the recent steps were skipped, oldest first (what a checkpoint keeps)."""
        return list(self.recent)

    def resume(self, state: list[bool]) -> None:
        """Continue from a checkpointed :meth:`state`."""
        self.recent.extend(bool(s) for s in state)

    def add(self, ok: bool, step: int) -> None:
        """Record step ``step``; raise when the skips exceed the fraction and the allowance."""
        self.recent.append(not ok)
        count, window = sum(self.recent), len(self.recent)
        if count > self.fraction * window and count > SKIP_ALLOWANCE:
            raise NonFiniteLossError(
                f"{count} of the last {window} steps (up to step {step}) had a non-finite loss "
                f"or gradient and were skipped, more than max_skip_fraction="
                f"{self.fraction:g} allows: the model is not training. Lower the learning "
                "rate or clip gradients (grad_clip=)"
            )


def _update(
    objective: Callable[[str, Tensor, Tensor | None], Tensor],
    player: _Player,
    players: list[_Player],
    x: Tensor,
    cond: Tensor | None,
    *,
    amp: bool,
    device: torch.device,
    grad_clip: float | None,
    want_norm: bool,
    process: distributed.Process,
    step: int,
    nonfinite: str,
) -> tuple[float, float | None]:
    """One optimizer step of ``player``; returns (loss, gradient norm or ``None``).

    Both are averaged over processes, so all processes agree on updating, skipping or
    raising. The gradient norm is computed when clipping needs it or ``want_norm`` (a log
    step), the gradient sum otherwise; the update is made only when the loss and that
    gradient statistic are finite. A skipped step returns the non-finite statistic.
    """
    for other in players:  # the generator step also leaves gradients on the critic
        other.optimizer.zero_grad(set_to_none=True)
    with autocast(device, amp):
        per_sample = objective(player.method, x, cond)
    if isinstance(per_sample, dict):
        loss = _conflict_free_backward(per_sample, player.params, x.shape[0], process)
    else:
        loss = _batch_mean(per_sample, player.method, x.shape[0])
        loss.backward()
    norm = grad_clip is not None or want_norm
    # The gradient norm, or on other steps the plain sum of every gradient entry: a sum is
    # non-finite exactly when some entry is (NaN and ±inf propagate), costs less than a norm,
    # and rides on the loss's host transfer, so no step adds a synchronization.
    check = _grad_norm(player.params, grad_clip) if norm else _grad_sum(player.params)
    stats = torch.stack([loss.detach(), check.to(loss.device, loss.dtype)])
    if process.world_size > 1:
        stats = distributed.all_sum(stats, process) / process.world_size
    value, checked = stats.tolist()
    finite = math.isfinite(value) and math.isfinite(checked)
    grad = checked if norm or not finite else None
    if finite:
        player.optimizer.step()
        return value, grad
    if nonfinite == "raise":
        what = "loss" if not math.isfinite(value) else "gradient"
        shown = f", gradient norm {checked:.4g}" if norm else ""
        raise NonFiniteLossError(
            f"non-finite {what} of {player.method} ({value:.4g}{shown}) at step {step}; the "
            "weights were not updated. Lower the learning rate, clip gradients (grad_clip=), "
            "or pass nonfinite='skip' to skip such batches"
        )
    return value, grad


def _batch_mean(per_sample: Tensor, method: str, batch: int) -> Tensor:
    """The batch mean of a per-sample loss, in at least fp32 (also under bf16 autocast)."""
    if per_sample.shape != (batch,):
        raise ValueError(
            f"{method} must return one loss per sample, shape ({batch},); "
            f"got {tuple(per_sample.shape)}"
        )
    return per_sample.to(torch.promote_types(per_sample.dtype, torch.float32)).mean()


def _loss_terms_of(
    model: GenerativeModel, two_player: bool
) -> Callable[[str, Tensor, Tensor | None], dict[str, Tensor]] | None:
    """``objective`` returning the model's named loss terms, for a model that asks for their
    gradients to be combined conflict-free (``gradient_combination = "config"``), else None.

    The terms are evaluated on the plain module (not through DDP): their gradients are
    reduced over processes one by one in :func:`_conflict_free_backward`.
    """
    combine = getattr(model, "gradient_combination", "sum")
    if combine == "sum":
        return None
    if combine != "config":
        raise ValueError(
            f"{type(model).__name__}.gradient_combination must be 'sum' or 'config', "
            f"got {combine!r}"
        )
    if two_player or not callable(getattr(model, "loss_terms", None)):
        raise ValueError(
            f"{type(model).__name__}: gradient_combination='config' needs a one-player model "
            "with a loss_terms(x, cond) method"
        )
    return lambda method, x, cond: model.loss_terms(x, cond)


def _conflict_free_backward(
    terms: dict[str, Tensor], params: list[nn.Parameter], batch: int, process: distributed.Process
) -> Tensor:
    """Set ``p.grad`` to the ConFIG combination of the batch-mean gradient of every term.

    Each term's gradient is averaged over processes before the combination, so a DDP run
    combines the same global gradients as a single process would. Returns the summed loss.
    """
    means = [_batch_mean(value, f"loss term {name!r}", batch) for name, value in terms.items()]
    flats = []
    for i, mean in enumerate(means):
        grads = torch.autograd.grad(
            mean, params, retain_graph=i < len(means) - 1, allow_unused=True
        )
        # A parameter that a term does not reach has a zero gradient for that term.
        parts = [
            torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)
        ]
        flat = torch.cat([part.reshape(-1) for part in parts])
        if process.world_size > 1:
            flat = distributed.all_sum(flat, process) / process.world_size
        flats.append(flat)
    combined = conflict_free_direction(flats)
    offset = 0
    for p in params:
        p.grad = combined[offset : offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
    return torch.stack([m.detach() for m in means]).sum()


def _validate(
    model: GenerativeModel,
    ema: EMA | None,
    data: DataLike,
    batch_size: int,
    device: torch.device,
    amp: bool,
    seed: int,
    process: distributed.Process,
) -> dict[str, float]:
    """Mean per-sample loss over ``data`` (and of the EMA copy), with fixed random draws.

    The draws inside the loss (noise levels, latent samples) are seeded by ``seed`` on a forked
    generator, so successive validations are comparable and training's random stream is not
    disturbed.
    """
    out = {}
    nets = {"valid_loss": model, "valid_loss_ema": ema.module if ema is not None else None}
    for key, net in nets.items():
        if net is None:
            continue
        was_training = net.training
        net.eval()
        sums = torch.zeros(2, dtype=torch.float64, device=device)
        forked = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked), torch.no_grad():
            torch.manual_seed(seed)
            for x, cond in sequential_batches(
                data, batch_size, device=device, rank=process.rank, world_size=process.world_size
            ):
                with autocast(device, amp):
                    per_sample = net.loss(x, cond)
                sums[0] += per_sample.double().sum()
                sums[1] += per_sample.numel()
        total, count = distributed.all_sum(sums, process).tolist()
        out[key] = total / count
        net.train(was_training)
    return out


def _save(
    path: Path,
    model: GenerativeModel,
    ema: EMA | None,
    players: list[_Player],
    step: int,
    record: dict[str, Any],
    metadata: dict[str, Any] | None,
    process: distributed.Process,
    keep: int,
) -> Path | None:
    """Write the full training state (rank 0; every rank contributes its RNG state)."""
    bad = [
        k for k, v in model.state_dict().items() if v.is_floating_point() and not v.isfinite().all()
    ]
    if bad:
        raise NonFiniteLossError(
            f"step {step}: refusing to checkpoint non-finite weights {bad[:5]}; an update had a "
            "non-finite gradient with a finite loss. Lower the learning rate or clip gradients"
        )
    rng = distributed.gather(get_rng_state(), process)
    if not process.is_main:
        return None
    return save_checkpoint(
        path,
        {
            **model_entries(model),
            "ema_state": ema.state_dict() if ema is not None else None,
            "optimizers": {p.method: p.optimizer.state_dict() for p in players},
            "step": step,
            "rng": rng,
            "fit": dict(record),
            "metadata": metadata or {},
        },
        keep=keep,
    )


def _restore(
    path: Path,
    contents: dict[str, Any],
    model: GenerativeModel,
    ema: EMA | None,
    players: list[_Player],
    process: distributed.Process,
    seed: int,
) -> int:
    """Load the model, EMA, optimizer and generator states saved by :func:`_save` (read from
    ``path``); returns the step."""
    name = model_entries(model)["model_name"]
    if contents["model_name"] != name or contents["model_config"] != model.config:
        raise ValueError(
            f"{path}: the checkpoint holds model {contents['model_name']!r} with config "
            f"{contents['model_config']}, not this {name!r} with config {model.config}"
        )
    model.load_state_dict(contents["model_state"])
    if ema is not None:
        ema.load_state_dict(contents["ema_state"] or model.state_dict())
    saved = contents["optimizers"]
    if set(saved) != {p.method for p in players}:
        raise ValueError(f"{path}: optimizer states for {sorted(saved)} do not match this model")
    for player in players:
        player.optimizer.load_state_dict(saved[player.method])
    step = int(contents["step"])
    states = contents["rng"]
    if len(states) == process.world_size:
        set_rng_state(states[process.rank])
    else:
        warnings.warn(
            f"{path} was written by {len(states)} processes, this run has "
            f"{process.world_size}: random draws are reseeded, so the run will not match an "
            "uninterrupted one exactly",
            stacklevel=4,
        )
        seed_everything(seed + process.rank + 1_000_003 * step)
    return step
