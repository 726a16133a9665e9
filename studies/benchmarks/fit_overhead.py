"""Overhead of ``physgen.training.fit`` over a bare hand-written loop (small MLP, batch 256).

Both loops train the same model on the same data with Adam, drawing shuffled batches from an
in-memory tensor. The bare loop does only ``zero_grad / loss / backward / step``; ``fit`` adds
the per-step finiteness check of loss and gradient norm, the schedule, the JSON-lines log and
the progress bar. Runs alternate and the medians are compared. Besides wall-clock time the
script measures the process's CPU time, which on a shared, oversubscribed machine is the
trustworthy measure of the work each loop does (waiting for a core is not counted).

Usage: ``python studies/benchmarks/fit_overhead.py [--width 256] [--steps 600] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor

from physgen.models.base import GenerativeModel
from physgen.nn.mlp import MLP
from physgen.training import fit

DIM, N, BATCH = 64, 16_384, 256


class MLPAutoencoder(GenerativeModel):
    """Reconstruction loss ``||f(x) - x||²`` of an MLP: the small model being timed."""

    example_shape = (DIM,)

    def __init__(self, dim: int = DIM, width: int = 256) -> None:
        super().__init__(dim=dim, width=width)
        self.net = MLP(dim, dim, hidden=(width, width), act="silu")

    @classmethod
    def for_shape(
        cls, sample_shape: tuple[int, ...], cond_shape: tuple[int, ...] | None = None, **kw: int
    ) -> MLPAutoencoder:
        return cls(dim=sample_shape[0], **kw)

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return ((self.net(x) - x) ** 2).sum(-1)

    def sample(self, n: int, cond: Tensor | None = None, **options: object) -> Tensor:
        return self.net(torch.randn(n, DIM, device=self.device))


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def bare_loop(model: MLPAutoencoder, data: Tensor, steps: int) -> tuple[float, float]:
    """The hand-written baseline; returns (wall, CPU) seconds."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    per_epoch = len(data) // BATCH
    start = _clock()
    for step in range(steps):
        if step % per_epoch == 0:
            perm = torch.randperm(len(data))
        idx = perm[(step % per_epoch) * BATCH : (step % per_epoch + 1) * BATCH]
        opt.zero_grad(set_to_none=True)
        model.loss(data[idx]).mean().backward()
        opt.step()
    return _since(start)


def fit_loop(
    model: MLPAutoencoder, data: Tensor, steps: int, progress: bool
) -> tuple[float, float]:
    """``fit`` with its defaults plus a log file; returns (wall, CPU) seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        start = _clock()
        fit(
            model,
            data,
            steps=steps,
            batch_size=BATCH,
            lr=1e-3,
            device="cpu",
            log_file=Path(tmp) / "log.jsonl",
            progress=progress,
        )
        return _since(start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=256, help="hidden-layer width")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = torch.randn(N, DIM, generator=torch.Generator().manual_seed(0))
    # Warm-up: first calls pay one-time lazy imports and allocator growth.
    bare_loop(MLPAutoencoder(width=args.width), data, 20)
    fit_loop(MLPAutoencoder(width=args.width), data, 20, progress=False)
    times: dict[str, list[tuple[float, float]]] = {"bare": [], "fit": [], "fit+bar": []}
    for _ in range(args.repeats):
        times["bare"].append(bare_loop(MLPAutoencoder(width=args.width), data, args.steps))
        times["fit"].append(
            fit_loop(MLPAutoencoder(width=args.width), data, args.steps, progress=False)
        )
        times["fit+bar"].append(
            fit_loop(MLPAutoencoder(width=args.width), data, args.steps, progress=True)
        )
    print(
        f"MLP {DIM}-{args.width}-{args.width}-{DIM}, batch {BATCH}, {args.steps} steps, "
        f"{args.threads} thread(s), median of {args.repeats}"
    )
    base = [statistics.median(t[k] for t in times["bare"]) for k in (0, 1)]
    for name, values in times.items():
        wall, cpu = (statistics.median(t[k] for t in values) for k in (0, 1))
        best = min(t[1] for t in values) / min(t[1] for t in times["bare"])
        print(
            f"  {name:<8} wall {1e3 * wall / args.steps:7.3f} ms/step (ratio {wall / base[0]:5.3f})"
            f"   CPU {1e3 * cpu / args.steps:7.3f} ms/step (ratio {cpu / base[1]:5.3f}, "
            f"of minima {best:5.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
