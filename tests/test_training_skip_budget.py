"""``nonfinite="skip"`` stops a run that skips too many steps instead of training on nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_training_cli import _train_argv, dataset  # noqa: F401 - the fixture is used
from test_training_fit import _Exploding, _fresh_state, _linear_gaussian_data

import physgen.training
from physgen.cli import main
from physgen.training import FitResult, NonFiniteLossError, fit, read_checkpoint, save_checkpoint


def _run(bad: set[int], steps: int, tmp_path: Path, calls: int = 0, **options: object) -> FitResult:
    """Train a model whose loss is NaN on the training calls (one per step) in ``bad``,
    ``calls`` of them made before (by the run a resumed one continues)."""
    x, cond = _linear_gaussian_data(64)
    model = _Exploding()
    model.load_state_dict(_fresh_state())
    model.bad, model.calls = bad, calls
    return fit(
        model,
        (x, cond),
        steps=steps,
        batch_size=16,
        nonfinite="skip",
        checkpoint_dir=tmp_path,
        progress=False,
        **options,
    )


def test_mostly_nonfinite_run_stops_with_the_count_and_window(tmp_path: Path) -> None:
    bad = {i for i in range(300) if i % 10}  # 90 % of the steps
    with pytest.raises(NonFiniteLossError, match=r"11 of the last 13 steps \(up to step 12\)"):
        _run(bad, 300, tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()  # nothing trained, nothing written


def test_the_fraction_is_measured_over_the_last_hundred_steps(tmp_path: Path) -> None:
    bad = set(range(100, 300, 5))  # 20 % after 100 clean steps: 20 skips in 100 steps by 200
    with pytest.raises(NonFiniteLossError, match=r"of the last 100 steps"):
        _run(bad, 300, tmp_path)


def test_rare_nonfinite_batches_are_skipped_and_the_run_completes(tmp_path: Path) -> None:
    bad = set(range(3, 300, 20))  # 5 % of the steps
    result = _run(bad, 300, tmp_path)
    assert result.skipped == 15 and result.step == 300
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert (tmp_path / "checkpoint.pt").is_file()


def test_a_resumed_run_remembers_the_skips_before_its_checkpoint(tmp_path: Path) -> None:
    """Ten skips before the step-12 checkpoint and one after: 11 of 15 steps stop the run,
    resumed or not. A resume that forgot the earlier skips would train to the end."""
    bad = set(range(2, 12)) | {14}
    stop = r"11 of the last 15 steps \(up to step 14\)"
    with pytest.raises(NonFiniteLossError, match=stop):
        _run(bad, 30, tmp_path, checkpoint_every=12)
    with pytest.raises(NonFiniteLossError, match=stop):
        _run(bad, 30, tmp_path, calls=12, checkpoint_every=12, resume=True)
    # Negative control: a checkpoint without the record of recent skips trains to the end.
    contents = read_checkpoint(tmp_path / "checkpoint.pt")
    assert contents["step"] == 12 and contents["fit"]["recent_skips"].count(True) == 10
    del contents["fit"]["recent_skips"]
    save_checkpoint(tmp_path / "checkpoint.pt", contents)
    result = _run(bad, 30, tmp_path, calls=12, checkpoint_every=12, resume=True)
    assert (result.step, result.skipped) == (30, 11)


def test_the_budget_is_configurable(tmp_path: Path) -> None:
    bad = {i for i in range(40) if i % 10}
    assert _run(bad, 40, tmp_path, max_skip_fraction=1.0).skipped == 36  # never stops
    with pytest.raises(ValueError, match=r"max_skip_fraction must be in \[0, 1\], got 1.5"):
        _run(bad, 40, tmp_path, max_skip_fraction=1.5)


def test_train_summary_survives_a_last_loss_that_was_not_finite(
    dataset: Path,  # noqa: F811 - the fixture
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The log writes NaN as null: the summary prints n/a instead of failing to format it."""
    real_fit = physgen.training.fit

    def fit_whose_last_window_was_skipped(model, data, **kwargs) -> FitResult:
        result = real_fit(model, data, **kwargs)
        result.history[-1]["loss"] = None
        result.skipped = 7
        return result

    monkeypatch.setattr(physgen.training, "fit", fit_whose_last_window_was_skipped)
    argv = _train_argv(dataset, tmp_path / "run", "vae", "--steps", "2", "--flatten")
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "for 2 steps" in out and "loss n/a" in out and "7 steps skipped" in out
