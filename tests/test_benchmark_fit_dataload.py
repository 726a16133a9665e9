"""The data-share arithmetic and the batch timing of ``studies/benchmarks/fit_dataload.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studies" / "benchmarks"))
import fit_dataload


def test_data_share_is_data_over_total_and_refuses_swapped_arguments() -> None:
    assert fit_dataload.data_share(1.5, 10.0) == pytest.approx(0.15, abs=1e-15)
    assert fit_dataload.data_share(0.0, 3.0) == 0.0
    with pytest.raises(ValueError, match="data_seconds <= total_seconds"):
        fit_dataload.data_share(10.0, 1.5)  # swapped: a share above 1 is refused
    with pytest.raises(ValueError, match="total_seconds > 0"):
        fit_dataload.data_share(0.0, 0.0)


def test_timed_stream_adds_only_the_time_inside_next(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 2.0, 5.0, 5.5, 9.0])  # next #1: 0 → 2 s; next #2: 5 → 5.5 s; end: 9
    monkeypatch.setattr(fit_dataload.time, "perf_counter", lambda: next(clock))
    stream = fit_dataload.TimedStream(iter(["a", "b"]))
    assert [next(stream), next(stream)] == ["a", "b"]
    assert stream.seconds == pytest.approx(2.5)  # the 3 s between the calls are step time
    assert stream.batches == 2
    assert stream.first_call == 0.0


def test_a_short_run_on_a_lazy_file_times_every_training_batch(tmp_path: Path) -> None:
    path = fit_dataload.make_large_file(tmp_path / "large.nc", samples=96, fields=2, grid=8)
    stats = fit_dataload.compute_stats(path)
    m = fit_dataload.run(path, steps=3, workers=0, stats=stats)
    assert m["batches"] == 3  # one read per training step, the set-up batch excluded
    assert 0.0 < m["data_s"] < m["total_s"]
