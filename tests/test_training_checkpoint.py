"""Checkpoint files: plain data only, refused when they carry pickled code, written atomically."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from test_contract import _CondGaussian

from physgen.training import checkpoint as ckpt
from physgen.training import fit, load_checkpoint, read_checkpoint, save_checkpoint
from physgen.training.checkpoint import get_rng_state, model_entries, set_rng_state


class Payload:
    """An arbitrary Python object: unpickling it could run code."""

    def __reduce__(self) -> tuple:
        return (print, ("this ran while loading",))


def test_round_trip_loads_with_weights_only(tmp_path: Path) -> None:
    contents = {"step": 3, "x": torch.arange(4.0), "nested": {"a": [1, 2.5, None, "s"]}}
    path = save_checkpoint(tmp_path / "c.pt", contents)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == ckpt.FORMAT
    loaded = read_checkpoint(path)
    assert loaded["step"] == 3 and loaded["nested"] == {"a": [1, 2.5, None, "s"]}
    assert torch.equal(loaded["x"], contents["x"])


def test_checkpoint_with_a_pickled_object_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "step": 1, "hook": Payload()}, path)
    with pytest.raises(ValueError, match=r"contains code \(GLOBAL (builtins\.)?print\)"):
        read_checkpoint(path)
    with pytest.raises(ValueError, match="refusing"):
        load_checkpoint(path)
    assert "this ran" not in capsys.readouterr().out


class SystemCall:
    """A pickle payload that runs a shell command when unpickled."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_checkpoint_that_would_run_a_command_is_refused_and_names_the_global(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "step": 1, "hook": SystemCall(f"touch {marker}")}, path)
    name = f"{os.system.__module__}.system"  # posix.system on POSIX
    with pytest.raises(ValueError, match=rf"contains code \(GLOBAL {name}\) and was not loaded"):
        read_checkpoint(path)
    assert not marker.exists()
    # Control: the same payload does run when unpickled without weights_only.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_saving_a_non_plain_object_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"checkpoint\['meta'\]\['obj'\] is a Payload"):
        save_checkpoint(tmp_path / "c.pt", {"meta": {"obj": Payload()}})
    assert not list(tmp_path.iterdir())


def test_other_files_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    torch.save({"weights": torch.ones(2)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a physgen-checkpoint/1 file"):
        read_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        read_checkpoint(tmp_path / "missing.pt")


def test_interrupted_write_leaves_previous_checkpoint_loadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path / "c.pt", {"step": 1, "w": torch.ones(1000)})
    real_save = torch.save

    def save_half_then_die(obj: object, file: io.BufferedWriter) -> None:
        buffer = io.BytesIO()
        real_save(obj, buffer)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        file.flush()
        raise KeyboardInterrupt  # the process is interrupted mid-write

    monkeypatch.setattr(ckpt.torch, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(1000)})
    monkeypatch.undo()
    loaded = read_checkpoint(path)
    assert loaded["step"] == 1 and torch.equal(loaded["w"], torch.ones(1000))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


def test_saving_sweeps_temporary_files_a_killed_run_left(tmp_path: Path) -> None:
    left = [tmp_path / ".c.pt.k2j_9x0a.tmp", tmp_path / ".c.prev.pt.abcdefgh.tmp"]
    others = [tmp_path / ".d.pt.abcdefgh.tmp", tmp_path / "c.pt.tmp"]  # not this file's
    for path in left + others:
        path.write_bytes(b"half a checkpoint")
    save_checkpoint(tmp_path / "c.pt", {"step": 1}, keep=2)
    assert not any(path.exists() for path in left) and all(path.exists() for path in others)
    assert read_checkpoint(tmp_path / "c.pt")["step"] == 1


def test_rng_states_round_trip() -> None:
    state = get_rng_state()
    draws = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(draws[0], again[0])
    np.testing.assert_array_equal(draws[1], again[1])
    assert draws[2] == again[2]


def test_load_checkpoint_prefers_ema_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _CondGaussian()
    x, cond = _CondGaussian.example_batch(64, generator=torch.Generator().manual_seed(0))
    result = fit(
        model,
        (x, cond),
        steps=20,
        batch_size=16,
        ema_decay=0.5,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    ema = load_checkpoint(result.checkpoint)
    raw = load_checkpoint(result.checkpoint, use_ema=False)
    for key, value in result.ema.state_dict().items():
        assert torch.equal(ema.state_dict()[key], value)
    for key, value in model.state_dict().items():
        assert torch.equal(raw.state_dict()[key], value)
    assert not torch.equal(ema.log_scale, raw.log_scale)


def test_unregistered_model_needs_its_class(tmp_path: Path) -> None:
    class Local(_CondGaussian):
        pass

    model = Local()
    path = save_checkpoint(tmp_path / "c.pt", model_entries(model))
    with pytest.raises(ValueError, match="pass model_class="):
        load_checkpoint(path)
    assert isinstance(load_checkpoint(path, model_class=Local), Local)
