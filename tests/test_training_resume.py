"""A run killed with SIGKILL and resumed from its checkpoint ends bit-identical to an unkilled one.

The killed run is a forked child process, so it dies for real (no cleanup, no flushing); the
resumed run continues in the test process. The model's loss draws from torch, NumPy and
Python's generators, and the run uses a cosine schedule with warm-up, EMA, gradient clipping
and periodic validation, so every piece of saved state matters.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
from pathlib import Path

import numpy as np
import torch
from model_registry import register_test_model
from torch import Tensor

from physgen.models import GenerativeModel
from physgen.nn.mlp import MLP
from physgen.training import fit

STEPS, EVERY, KILL_AT = 30, 10, 25


@register_test_model("_resume-denoiser")
class _NoisyDenoiser(GenerativeModel):
    """Denoising loss ||f(x + σ ε) − x||²: σ from NumPy, ε from torch, a mask from ``random``."""

    example_shape = (4,)

    def __init__(self, dim: int = 4) -> None:
        super().__init__(dim=dim)
        self.net = MLP(dim, dim, hidden=(16,), act="tanh")
        self.calls, self.kill_at = 0, 0

    @classmethod
    def for_shape(
        cls, sample_shape: tuple[int, ...], cond_shape: tuple[int, ...] | None = None, **kw: int
    ) -> _NoisyDenoiser:
        return cls(dim=sample_shape[0], **kw)

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if self.training:
            self.calls += 1
            if self.calls == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        sigma = float(np.random.uniform(0.1, 1.0))
        keep = float(random.random() < 0.9)
        noisy = x + sigma * torch.randn_like(x)
        return keep * ((self.net(noisy) - x) ** 2).sum(-1)

    def sample(self, n: int, cond: Tensor | None = None, **options: object) -> Tensor:
        return self.net(torch.randn(n, self.config["dim"]))


def train(directory: Path, kill_at: int, resume: bool) -> dict[str, Tensor]:
    """The run under test; returns the final model and EMA weights."""
    torch.manual_seed(0)
    data = torch.randn(200, 4, generator=torch.Generator().manual_seed(5))
    model = _NoisyDenoiser()
    model.kill_at = kill_at  # the training-loss call that kills the process
    result = fit(
        model,
        data[:160],
        steps=STEPS,
        batch_size=16,
        lr=3e-3,
        schedule="cosine",
        warmup_steps=4,
        ema_decay=0.9,
        grad_clip=0.5,
        valid_data=data[160:],
        valid_every=7,
        checkpoint_dir=directory,
        checkpoint_every=EVERY,
        log_every=1,
        resume=resume,
        seed=11,
        progress=False,
    )
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"ema.{k}": v for k, v in result.ema.state_dict().items()})
    return state


def _killed_run(directory: Path, kill_at: int) -> int:
    """Train in a forked child process that SIGKILLs itself; returns its exit code."""
    child = multiprocessing.get_context("fork").Process(
        target=train, args=(directory,), kwargs={"kill_at": kill_at, "resume": False}
    )
    child.start()
    child.join(timeout=120)
    return child.exitcode


def _log(directory: Path) -> list[dict]:
    records = [json.loads(line) for line in (directory / "log.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("samples_per_s", None)  # wall-clock dependent
    return records


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    reference = train(tmp_path / "reference", kill_at=0, resume=False)

    assert _killed_run(tmp_path / "run", kill_at=KILL_AT) == -signal.SIGKILL
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 20
    assert max(r["step"] for r in _log(tmp_path / "run")) == KILL_AT - 1

    final = train(tmp_path / "run", kill_at=0, resume=True)

    assert final.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(final[key], value), f"{key} differs after resume"
    # The log reads as one run: same losses, learning rates and validation at every step.
    assert _log(tmp_path / "run") == _log(tmp_path / "reference")
