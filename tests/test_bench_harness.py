"""The benchmark harness: round order, paired per-round speed ratios, on synthetic timings."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

import pytest

from physgen.paths import load_module_from_path

_PATH = Path(__file__).parents[1] / "studies" / "benchmarks" / "harness.py"
harness = load_module_from_path(_PATH, "physgen_bench_harness")
Timing = harness.Timing

# Per-round times of two contenders (seconds): the machine load changes from round to round.
OURS = [1.0, 2.0, 4.0, 1.5, 3.0]
THEIRS = [2.0, 3.0, 4.0, 3.0, 9.0]  # speed ratios theirs/ours: 2, 1.5, 1, 2, 3


class _FakeClock:
    """A timer that records the call order and returns preset per-round times."""

    def __init__(self, seconds: dict[str, list[float]]) -> None:
        self.seconds = seconds
        self.calls: list[str] = []

    def __call__(self, fn) -> object:
        name = fn()
        r = sum(1 for c in self.calls if c == name)
        self.calls.append(name)
        wall = self.seconds[name][r]
        return Timing(wall, wall / 2)  # CPU time: half the wall time (another process ran)


def _run(seconds: dict[str, list[float]], rounds: int):
    clock = _FakeClock(seconds)
    contenders = {name: (lambda n=name: n) for name in seconds}
    times = harness.run_rounds(contenders, rounds, warmup=0, timer=clock)
    return times, clock


def test_paired_ratios_median_and_range_from_known_times() -> None:
    times, _ = _run({"ours": OURS, "theirs": THEIRS}, rounds=5)
    assert [t.wall for t in times["ours"]] == OURS  # every round's time kept, in round order
    wall = harness.paired_speed_ratios([t.wall for t in times["ours"]],
                                       [t.wall for t in times["theirs"]])  # fmt: skip
    assert wall == pytest.approx([2.0, 1.5, 1.0, 2.0, 3.0], rel=1e-15)
    s = harness.spread(wall)
    assert (s.median, s.low, s.high) == (2.0, 1.0, 3.0)
    assert str(s) == "2.00× [1.00–3.00]"
    cpu = harness.paired_speed_ratios([t.cpu for t in times["ours"]],
                                      [t.cpu for t in times["theirs"]])  # fmt: skip
    assert cpu == pytest.approx(wall, rel=1e-15)  # a common factor cancels within a round


def test_median_of_paired_ratios_differs_from_ratio_of_medians() -> None:
    # The load changes between rounds: pairing within a round cancels it, medians do not.
    ours, theirs = [1.0, 2.0, 3.0], [2.0, 1.0, 6.0]  # paired ratios 2, 0.5, 2
    paired = harness.spread(harness.paired_speed_ratios(ours, theirs)).median
    wrong = statistics.median(theirs) / statistics.median(ours)
    assert paired == 2.0
    assert wrong == 1.0  # the estimator the harness must not use gives a different answer
    assert paired != pytest.approx(wrong)


def test_swapping_contenders_inverts_the_ratios() -> None:
    forward = harness.paired_speed_ratios(OURS, THEIRS)
    backward = harness.paired_speed_ratios(THEIRS, OURS)
    assert backward == pytest.approx([1 / r for r in forward], rel=1e-15)
    s, t = harness.spread(forward), harness.spread(backward)
    assert t.median == pytest.approx(1 / s.median, rel=1e-15)  # odd count: the middle round
    assert (t.low, t.high) == pytest.approx((1 / s.high, 1 / s.low), rel=1e-15)


def test_order_alternates_and_nobody_is_always_first() -> None:
    _, clock = _run({"ours": OURS, "theirs": THEIRS}, rounds=4)
    rounds = [clock.calls[2 * r : 2 * r + 2] for r in range(4)]
    assert rounds == [["ours", "theirs"], ["theirs", "ours"], ["theirs", "ours"],
                      ["ours", "theirs"]]  # fmt: skip
    names = ["a", "b", "c"]
    orders = [harness.round_order(names, r) for r in range(6)]
    for r in range(0, 6, 2):
        assert orders[r + 1] == orders[r][::-1]  # each pair of rounds mirrored
    for position in range(3):  # over 2n rounds every contender takes every place twice
        assert Counter(o[position] for o in orders) == {"a": 2, "b": 2, "c": 2}
    assert sorted(map(tuple, orders)) == sorted(  # here: all six permutations
        [(a, b, c) for a in names for b in names for c in names if len({a, b, c}) == 3]
    )


def test_before_round_runs_before_every_round_and_warmup_is_untimed() -> None:
    seen: list[int] = []
    calls: list[str] = []
    contenders = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = harness.run_rounds(contenders, 3, warmup=2, before_round=seen.append)
    assert seen == [0, 1, 2]
    assert calls.count("a") == calls.count("b") == 2 + 3
    assert all(len(ts) == 3 and all(t.wall >= 0 and t.cpu >= 0 for t in ts)
               for ts in times.values())  # fmt: skip


def test_comparison_table_reports_the_paired_ratios_and_the_load() -> None:
    times, _ = _run({"ours": OURS, "theirs": THEIRS}, rounds=5)
    rows = [harness.Comparison("ours", "theirs", "same model")]
    text = harness.comparison_table(times, rows, "0.50 0.40 0.30 on 2 CPUs", "1.00 ...")
    assert "| ours | theirs | same model | 2.00× [1.00–3.00] | 2.00× [1.00–3.00] |" in text
    assert "5 rounds; load average at start 0.50 0.40 0.30 on 2 CPUs, at end 1.00 ..." in text
    # Negative control for the columns: "theirs" spends all its wall time on the CPU, "ours"
    # half, so the CPU ratios are twice the wall ones and the two columns tell apart.
    times["theirs"] = [Timing(t.wall, t.wall) for t in times["theirs"]]
    text = harness.comparison_table(times, rows, "0", "0")
    assert "| ours | theirs | same model | 2.00× [1.00–3.00] | 4.00× [2.00–6.00] |" in text


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="equally many rounds"):
        harness.paired_speed_ratios([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        harness.run_rounds({"a": lambda: None}, 0)
