"""``loss_trend``: a run still falling steeply is flagged; a plateau, noisy or not, is not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physgen.training.trend import loss_trend

T = 1000  # steps of the synthetic runs, logged every 10
STEPS = np.arange(10, T + 1, 10, dtype=np.float64)


def _records(losses: np.ndarray) -> list[dict[str, float]]:
    return [{"step": float(s), "loss": float(v)} for s, v in zip(STEPS, losses, strict=True)]


@pytest.mark.parametrize("k_T", [1.0, 5.0, 20.0])
def test_exponential_decay_falls_by_its_rate_everywhere(k_T: float) -> None:
    """L = exp(-k s): log L is a line, so the fit is exact: 1 - exp(-kT/10) per tenth."""
    trend = loss_trend(_records(np.exp(-k_T * STEPS / T)))
    assert trend is not None and trend.relative
    assert trend.fall == pytest.approx(-math.expm1(-k_T / 10), rel=1e-9)
    assert trend.steep  # 1 - exp(-0.1) = 9.5% > 5%
    assert "still falling" in trend.describe()


def test_slow_exponential_decay_is_below_the_threshold() -> None:
    # kT = 0.3: 3% per tenth of the run, below the 5% threshold though significant.
    trend = loss_trend(_records(np.exp(-0.3 * STEPS / T)))
    assert trend is not None and trend.significant and not trend.steep
    assert trend.fall == pytest.approx(-math.expm1(-0.03), rel=1e-9)


def test_plateau_does_not_warn_noisy_or_not() -> None:
    assert not loss_trend(_records(np.full(STEPS.size, 0.7))).steep
    for seed in range(20):  # 10% multiplicative minibatch noise around a plateau
        rng = np.random.default_rng(seed)
        noisy = 0.7 * np.exp(0.1 * rng.standard_normal(STEPS.size))
        assert not loss_trend(_records(noisy)).steep, seed


def test_decay_that_has_flattened_does_not_warn() -> None:
    # Fast early decay onto a floor: by the last 20% the curve is flat to 1e-7.
    trend = loss_trend(_records(1.0 + np.exp(-20 * STEPS / T)))
    assert trend is not None and not trend.steep and trend.fall < 1e-6


def test_signed_losses_use_the_runs_range() -> None:
    # A negative log-likelihood falling linearly, -10 s/T: 1 per tenth of the run, over a
    # range of 10 (T - 10)/T = 9.9 (the first record is at s = 10).
    trend = loss_trend(_records(-10.0 * STEPS / T))
    assert trend is not None and not trend.relative
    assert trend.fall == pytest.approx(1 / 9.9, rel=1e-9) and trend.steep
    plateau = loss_trend(_records(np.where(STEPS < 500, -10.0 * STEPS / 500, -10.0)))
    assert plateau is not None and not plateau.steep and plateau.fall == pytest.approx(0.0)


def test_rising_loss_is_not_falling() -> None:
    trend = loss_trend(_records(np.exp(3 * STEPS / T)))
    assert trend is not None and trend.fall < 0 and not trend.steep


def test_short_or_empty_runs_are_not_judged() -> None:
    assert loss_trend([]) is None
    assert loss_trend(_records(np.exp(-STEPS / T))[-3:]) is None  # 1 record in the tail
    records = _records(np.exp(-5 * STEPS / T))
    for r in records[-5:]:
        r["loss"] = None  # skipped windows are logged as null
    trend = loss_trend(records)  # judged on the 95 finite records: steps 760..950
    assert trend is not None and trend.records == 20 and trend.steep
    with pytest.raises(ValueError, match="tail"):
        loss_trend(records, tail=0.0)


def test_train_command_notes_a_run_still_falling(capsys: pytest.CaptureFixture[str]) -> None:
    from physgen.cli.train import _warn_if_still_falling
    from physgen.models import get_model_class

    falling = [*_records(np.exp(-5 * STEPS / T)), {"step": float(T), "valid_loss": 9.0}]
    for name in ("vae", "gan"):
        cls = get_model_class(name)
        model = cls.for_shape(cls.example_shape)
        _warn_if_still_falling(model, falling, T)
        err = capsys.readouterr().err
        # A GAN's generator loss is no measure of progress: only the VAE is judged.
        assert ("still falling at the end: 39% of the loss" in err) == (name == "vae"), name
        _warn_if_still_falling(model, _records(np.full(STEPS.size, 0.7)), T)
        assert capsys.readouterr().err == ""
