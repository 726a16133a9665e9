"""A real family of each kind, interrupted after its mid-run checkpoint and resumed, ends
bit-identical to an uninterrupted run: weights, optimizer states, EMA, generator states, the
samples drawn afterwards and every log record.

The families each keep a different piece of state that a resume must carry: a Glow's
data-initialised ActNorm and Adam moments, a conditional diffusion model's random noise
levels and condition dropping, a spectrally normalised GAN's two optimizers (critic steps
``n_critic`` = 2 per generator step) and power-iteration vectors, and an EBM's replay buffer
of persistent Langevin chains. Each run uses float64, a cosine schedule with warm-up, EMA,
gradient clipping and validation; logging every 3 steps against a checkpoint every 4 leaves
a log window open across the checkpoint. The interrupted run stops two steps after its
checkpoint (its later log lines must be dropped), and the resumed run rebuilds the model
from scratch after scrambling every generator, so only the checkpoint can carry the state.

Each family's negative control damages exactly the state it depends on in the checkpoint
(Adam's moments, the torch generator, the critic's optimizer, the replay buffer) and checks
that the resumed run then differs: the comparison can fail.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

import physgen.training.fit  # noqa: F401 - the module, for patching its step function
from physgen.models import GenerativeModel
from physgen.models.diffusion import Diffusion
from physgen.models.ebm import EBM
from physgen.models.flows_glow import Glow
from physgen.models.gan import GAN
from physgen.training import fit, read_checkpoint, save_checkpoint

FIT = sys.modules["physgen.training.fit"]
STEPS, EVERY, STOP_AFTER = 8, 4, 6  # checkpoint at step 4, interrupted during step 7


class _InterruptedError(Exception):
    """Stands for a crash: raised inside training after the mid-run checkpoint."""


@dataclass
class Family:
    """A real model, its data and the checkpoint damage its resume must not survive."""

    build: Callable[[], GenerativeModel]
    data: Callable[[], Any]
    draw: Callable[[GenerativeModel], Tensor]  # samples drawn after training (RNG-dependent)
    damage: Callable[[dict[str, Any]], None]  # a known-wrong resume: alters saved state
    damaged: str  # the checkpoint entry the damage must make differ in the end


def _fresh_optimizer(contents: dict[str, Any], method: str) -> None:
    """Drop one optimizer's moments: it restarts as if newly built."""
    contents["optimizers"][method]["state"] = {}


def _reseed_torch(contents: dict[str, Any]) -> None:
    """Replace the saved torch generator state by another seed's."""
    contents["rng"][0]["torch"] = torch.Generator().manual_seed(12345).get_state()


def _fresh_replay(contents: dict[str, Any]) -> None:
    """Replace the persistent chains by fresh N(0, I) starts."""
    for entry in ("model_state", "ema_state"):
        replay = contents[entry]["replay"]
        contents[entry]["replay"] = torch.randn(
            replay.shape, dtype=replay.dtype, generator=torch.Generator().manual_seed(9)
        )


def _fields() -> Tensor:
    g = torch.Generator().manual_seed(5)
    return 3.0 + 2.0 * torch.randn(40, 1, 4, 4, generator=g, dtype=torch.float64)


def _pairs() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(5)
    cond = torch.randn(40, 1, generator=g, dtype=torch.float64)
    return torch.cat([cond, 0.5 * cond], 1) + 0.3 * torch.randn(40, 2, generator=g), cond


def _vectors() -> Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.randn(40, 2, generator=g, dtype=torch.float64) @ torch.tensor(
        [[1.0, 0.6], [0.0, 0.5]], dtype=torch.float64
    )


FAMILIES = {
    "glow": Family(
        lambda: Glow(shape=[1, 4, 4], levels=2, steps=1, checker_steps=1, hidden=4),
        _fields,
        lambda m: m.sample(3),
        lambda c: _fresh_optimizer(c, "loss"),
        "model_state",
    ),
    "diffusion": Family(
        lambda: Diffusion([2], [1], hidden=[8], freqs=2, p_uncond=0.3),
        _pairs,
        lambda m: m.sample(3, torch.zeros(3, 1, dtype=torch.float64), steps=4),
        _reseed_torch,
        "model_state",
    ),
    "gan": Family(
        lambda: GAN([2], latent_dim=2, hidden=[8], n_critic=2, spectral_norm=True),
        _vectors,
        lambda m: m.sample(3),
        lambda c: _fresh_optimizer(c, "discriminator_loss"),
        "model_state",
    ),
    "ebm": Family(
        lambda: EBM([2], hidden=[8], buffer_size=24, reinit_prob=0.2, langevin_steps=3),
        _vectors,
        lambda m: m.sample(3, n_steps=3),
        _fresh_replay,
        "model_state",
    ),
}


def _scramble_generators() -> None:
    """Put every global generator somewhere else, so a resume that does not restore them shows."""
    torch.manual_seed(987)
    np.random.seed(987)
    random.seed(987)


def _train(family: Family, directory: Path, resume: bool = False) -> Tensor:
    """Build the model from scratch and fit it; returns samples drawn right after training."""
    torch.manual_seed(0)
    model = family.build().double()
    data = family.data()
    train, valid = (
        (tuple(t[:32] for t in data), tuple(t[32:] for t in data))
        if isinstance(data, tuple)
        else (data[:32], data[32:])
    )
    _scramble_generators()
    result = fit(
        model,
        train,
        steps=STEPS,
        batch_size=8,
        lr=3e-3,
        critic_lr=5e-3,
        schedule="cosine",
        warmup_steps=2,
        ema_decay=0.8,
        grad_clip=2.0,
        valid_data=valid,
        valid_every=3,
        log_every=3,
        checkpoint_dir=directory,
        checkpoint_every=EVERY,
        resume=resume,
        seed=7,
        progress=False,
    )
    with torch.no_grad():
        return family.draw(result.model)


def _interrupted(family: Family, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train until step ``STOP_AFTER`` is done, then crash at the next update."""
    update, updates = FIT._update, []

    def counting(*args: Any, **kwargs: Any) -> Any:
        if kwargs["step"] == STOP_AFTER:
            raise _InterruptedError
        updates.append(kwargs["step"])
        return update(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(FIT, "_update", counting)
        with pytest.raises(_InterruptedError):
            _train(family, directory)
    assert read_checkpoint(directory / "checkpoint.pt")["step"] == EVERY
    assert max(r["step"] for r in _log(directory)) == STOP_AFTER  # lines past the checkpoint


def _log(directory: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (directory / "log.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("samples_per_s", None)  # wall-clock dependent
    return records


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two checkpoint entries are not bit-identical (tensors compared exactly)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        same = (
            isinstance(a, Tensor)
            and isinstance(b, Tensor)
            and a.dtype == b.dtype
            and torch.equal(a, b)
        )
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} keys"]
        return [d for k in a for d in _differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where} length"]
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in _differences(x, y, f"{where}/{i}")]
    return [] if a == b and type(a) is type(b) else [where]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_resumed_family_matches_uninterrupted_run(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    family = FAMILIES[name]
    reference = _train(family, tmp_path / "reference")

    _interrupted(family, tmp_path / "run", monkeypatch)
    shutil.copytree(tmp_path / "run", tmp_path / "damaged")
    resumed = _train(family, tmp_path / "run", resume=True)

    expected = read_checkpoint(tmp_path / "reference" / "checkpoint.pt")
    final = read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert final["step"] == STEPS
    # Every entry: weights (with buffers such as the replay buffer and the spectral-norm
    # vectors), EMA, both optimizers' states, every process's generator states, fit record.
    assert _differences(final, expected) == []
    assert torch.equal(resumed, reference)
    assert _log(tmp_path / "run") == _log(tmp_path / "reference")

    # Negative control: resuming from a checkpoint that lost this family's state diverges.
    path = tmp_path / "damaged" / "checkpoint.pt"
    contents = read_checkpoint(path)
    family.damage(contents)
    save_checkpoint(path, contents)
    _train(family, tmp_path / "damaged", resume=True)
    wrong = read_checkpoint(path)
    assert family.damaged in {d.split("/")[1] for d in _differences(wrong, expected)}
