r"""Side-by-side timing of contenders: rounds in balanced order, wall and CPU time, paired ratios.

Every benchmark here runs its contenders (physgen and the peers, or two variants) through
:func:`run_rounds`: in each round every contender makes one timed call, the order changes from
round to round (:func:`round_order`) so that nobody always runs first, and each call is timed
in wall-clock and in process CPU time. A change of machine load then falls on all contenders
of a round alike, and the comparison is paired per round:

.. math:: s_r = \frac{T_r^{\text{peer}}}{T_r^{\text{physgen}}}, \qquad
          \text{speed ratio} = \operatorname{median}_r s_r \;[\min_r s_r, \max_r s_r],

physgen's speed over the peer's (its rate divided by the peer's for equal work; > 1: physgen
is faster). The median of the paired ratios, not the ratio of the medians: the latter mixes
rounds run under different load. With one thread, the CPU-time ratio is the contention-robust
figure; the load average is recorded at the start and the end.

Run every benchmark with ``OMP_WAIT_POLICY=PASSIVE`` and ``--threads 1`` on a shared machine
(OpenMP's default spin-waiting lets a second busy process slow a run by up to 100×).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "THREADS_HELP",
    "Comparison",
    "Spread",
    "Timing",
    "bench_parser",
    "comparison_table",
    "load_average",
    "paired_speed_ratios",
    "round_order",
    "run_rounds",
    "spread",
    "time_call",
    "timing_table",
]

THREADS_HELP = (
    "torch threads (default 1); on a shared machine also set OMP_WAIT_POLICY=PASSIVE in the "
    "environment, or OpenMP's spin-waiting can slow a run by up to 100x under load"
)


def bench_parser(doc: str, *, rounds: int, steps: int | None = None) -> argparse.ArgumentParser:
    """The arguments every benchmark shares: ``--threads`` (default 1), ``--rounds`` and,
    where a timed call repeats a training step, ``--steps`` (training steps per timed call);
    the script adds its own and calls ``torch.set_num_threads(args.threads)``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    parser.add_argument("--rounds", type=int, default=rounds)
    if steps is not None:
        parser.add_argument(
            "--steps", type=int, default=steps, help="training steps per timed call"
        )
    return parser


@dataclass(frozen=True)
class Timing:
    """One timed call: wall-clock and process CPU seconds."""

    wall: float
    cpu: float


@dataclass(frozen=True)
class Spread:
    """Median and range of repeated values."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:.2f}× [{self.low:.2f}–{self.high:.2f}]"


@dataclass(frozen=True)
class Comparison:
    """One table row: ``ours`` against ``theirs``, and what the two have in common."""

    ours: str
    theirs: str
    matched: str


def time_call(fn: Callable[[], object]) -> Timing:
    """Wall-clock (``perf_counter``) and process CPU time (``process_time``) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def round_order(names: Sequence[str], r: int) -> list[str]:
    """The contenders' order in round ``r``: rotated by ⌊r/2⌋, and reversed in odd rounds.

    Rounds 2k and 2k+1 run in mirrored order (A B, B A for two contenders: an ABBA design that
    cancels a linear drift in load), and over 2n rounds each of the n contenders runs first
    equally often.
    """
    n = len(names)
    k = (r // 2) % n if n else 0
    order = list(names[k:]) + list(names[:k])
    return order[::-1] if r % 2 else order


def run_rounds(
    contenders: Mapping[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    before_round: Callable[[int], None] | None = None,
    timer: Callable[[Callable[[], object]], Timing] = time_call,
) -> dict[str, list[Timing]]:
    """Time every contender once per round, in :func:`round_order`, after ``warmup`` untimed
    calls each; ``before_round(r)`` (if given) prepares round ``r``'s shared input.

    Returns the timings per contender, one per round, in round order.
    """
    if rounds < 1:
        raise ValueError(f"run_rounds: rounds must be >= 1, got {rounds}")
    names = list(contenders)
    for name in names:
        for _ in range(warmup):
            contenders[name]()
    times: dict[str, list[Timing]] = {name: [] for name in names}
    for r in range(rounds):
        if before_round is not None:
            before_round(r)
        for name in round_order(names, r):
            times[name].append(timer(contenders[name]))
    return times


def paired_speed_ratios(ours: Sequence[float], theirs: Sequence[float]) -> list[float]:
    """Per round, ``theirs[r] / ours[r]``: our speed over theirs for the same work."""
    if len(ours) != len(theirs) or not ours:
        raise ValueError(
            f"paired_speed_ratios: need equally many rounds (>= 1), got {len(ours)} and "
            f"{len(theirs)}"
        )
    return [b / a for a, b in zip(ours, theirs, strict=True)]


def spread(values: Sequence[float]) -> Spread:
    """Median, minimum and maximum of ``values``."""
    return Spread(statistics.median(values), min(values), max(values))


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages and the CPU count, for the record."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def _seconds(values: Sequence[float]) -> str:
    s = spread(values)
    return f"{s.median:.4g} [{s.low:.4g}–{s.high:.4g}]"


def timing_table(times: Mapping[str, Sequence[Timing]], unit: str = "s per call") -> str:
    """A markdown table of every contender's wall and CPU time, median [min–max]."""
    lines = [
        f"| contender | wall {unit} | CPU {unit} |",
        "|---|---:|---:|",
    ]
    for name, ts in times.items():
        wall, cpu = [t.wall for t in ts], [t.cpu for t in ts]
        lines.append(f"| {name} | {_seconds(wall)} | {_seconds(cpu)} |")
    return "\n".join(lines)


def comparison_table(
    times: Mapping[str, Sequence[Timing]],
    rows: Sequence[Comparison],
    load_start: str,
    load_end: str,
    labels: tuple[str, str] = ("physgen", "peer"),
) -> str:
    """A markdown table: per row, physgen's speed over the peer's, paired per round, in wall
    and CPU time (median [min–max] over rounds; > 1: physgen faster), with the load average.
    ``labels`` names the two sides in the header."""
    a, b = labels
    lines = [
        f"| {a} | {b} | matched | speed {a} / {b}, wall | speed {a} / {b}, CPU |",
        "|---|---|---|---:|---:|",
    ]
    for row in rows:
        ours, theirs = times[row.ours], times[row.theirs]
        wall = paired_speed_ratios([t.wall for t in ours], [t.wall for t in theirs])
        cpu = paired_speed_ratios([t.cpu for t in ours], [t.cpu for t in theirs])
        lines.append(
            f"| {row.ours} | {row.theirs} | {row.matched} | {spread(wall)} | {spread(cpu)} |"
        )
    rounds = len(next(iter(times.values()))) if times else 0
    lines.append("")
    lines.append(f"{rounds} rounds; load average at start {load_start}, at end {load_end}")
    return "\n".join(lines)
