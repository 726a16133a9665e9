"""Checkpoint digests: damage is refused, resume falls back to the last intact checkpoint."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from test_training_fit import _Exploding, _fresh_state, _linear_gaussian_data
from torch import Tensor

from physgen.training import fit, read_checkpoint, save_checkpoint
from physgen.training.checkpoint import (
    FORMAT,
    CheckpointIntegrityError,
    checkpoint_paths,
    read_newest_valid,
)


def _flip(path: Path, tensor: Tensor, count: int = 64) -> None:
    """Invert ``count`` bytes of ``tensor``'s data where it is stored in the file at ``path``."""
    raw = bytearray(path.read_bytes())
    data = tensor.contiguous().view(torch.uint8).numpy().tobytes()
    start = raw.find(data)
    assert start >= 0 and len(data) >= count, "the tensor's bytes are not in the file"
    for i in range(start + (len(data) - count) // 2, start + (len(data) + count) // 2):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_flipped_bytes_in_the_payload_are_refused(tmp_path: Path) -> None:
    weights = torch.linspace(-1.0, 1.0, 4096)
    path = save_checkpoint(tmp_path / "c.pt", {"step": 7, "w": weights})
    assert torch.equal(read_checkpoint(path)["w"], weights)  # control: the intact file loads
    _flip(path, weights)
    damaged = torch.load(path, weights_only=True)["w"]
    assert not torch.equal(damaged, weights)  # torch itself reads the damage without a word
    with pytest.raises(CheckpointIntegrityError, match=r"c\.pt: damaged checkpoint, not loaded"):
        read_checkpoint(path)


def test_the_digest_covers_plain_entries_too(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", {"step": 7, "fit": {"lr": 1e-3, "tags": ["a"]}})
    raw = torch.load(path, weights_only=True)
    raw["fit"]["lr"] = 1e-2  # the digest entry is kept: it no longer matches
    torch.save(raw, path)
    with pytest.raises(CheckpointIntegrityError, match="SHA-256"):
        read_checkpoint(path)


def test_a_checkpoint_without_a_digest_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"format": FORMAT, "step": 3, "w": torch.ones(4)}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        contents = read_checkpoint(path)
    assert contents["step"] == 3 and torch.equal(contents["w"], torch.ones(4))


def test_previous_checkpoints_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    for step in range(1, 5):
        save_checkpoint(path, {"step": step}, keep=3)
    kept = checkpoint_paths(path, 3)
    assert [p.name for p in kept] == ["c.pt", "c.prev.pt", "c.prev2.pt"]
    assert [read_checkpoint(p)["step"] for p in kept] == [4, 3, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
    save_checkpoint(path, {"step": 5})  # keep=1: only the file itself is replaced
    assert [read_checkpoint(p)["step"] for p in kept] == [5, 3, 2]


def _train(folder: Path, steps: int, resume: bool = False) -> _Exploding:
    x, cond = _linear_gaussian_data(64)
    model = _Exploding()
    model.load_state_dict(_fresh_state())
    fit(
        model,
        (x, cond),
        steps=steps,
        batch_size=16,
        checkpoint_dir=folder,
        checkpoint_every=2,
        resume=resume,
        progress=False,
    )
    return model


def test_resume_falls_back_to_the_previous_checkpoint_and_continues(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train(run, 6)
    newest, previous = checkpoint_paths(run / "checkpoint.pt", 2)
    assert read_checkpoint(newest)["step"] == 6 and read_checkpoint(previous)["step"] == 4
    with warnings.catch_warnings():  # control: an intact newest checkpoint is used silently
        warnings.simplefilter("error")
        assert read_newest_valid([newest, previous])[0] == newest
    _flip(newest, torch.load(newest, weights_only=True)["rng"][0]["torch"])
    with pytest.warns(UserWarning, match=r"checkpoint\.prev\.pt \(step 4\)") as caught:
        resumed = _train(run, 8, resume=True)
    assert "checkpoint.pt: damaged checkpoint" in str(caught[0].message)
    assert read_checkpoint(newest)["step"] == 8 and read_checkpoint(previous)["step"] == 6
    uninterrupted = _train(tmp_path / "reference", 8)
    for a, b in zip(resumed.parameters(), uninterrupted.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_refuses_when_no_checkpoint_verifies(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train(run, 4)
    for path in checkpoint_paths(run / "checkpoint.pt", 2):
        _flip(path, torch.load(path, weights_only=True)["rng"][0]["torch"])
    with pytest.raises(ValueError, match=r"no checkpoint verifies: .*checkpoint\.pt.*prev\.pt"):
        _train(run, 6, resume=True)
