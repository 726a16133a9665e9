"""Side-by-side harness for the flow workloads W1 and W2: data, timing, machine-load record."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from core_bench import cpu_busy_pct, median_stats, package_version
from harness import THREADS_HELP, Comparison, comparison_table, load_average, run_rounds
from torch import Tensor, nn

__all__ = [
    "Contender",
    "grf1d",
    "maf10",
    "peer_versions",
    "physgen_contender",
    "run_workload",
    "workload_args",
]


def maf10(seed: int = 0, n_train: int = 20_000, n_test: int = 5_000) -> tuple[Tensor, Tensor]:
    """W1 data: A = G/√10, G ~ N(0,1)^{10×10}; z ~ N(0, I); x = tanh(z Aᵀ) + 0.1 z³."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((10, 10)) / math.sqrt(10)
    z = rng.standard_normal((n_train + n_test, 10))
    x = (np.tanh(z @ a.T) + 0.1 * z**3).astype(np.float32)
    return torch.from_numpy(x[:n_train]), torch.from_numpy(x[n_train:])


def grf1d(
    seed: int = 0, n_train: int = 20_000, n_test: int = 5_000
) -> tuple[Tensor, Tensor, float]:
    """W2 data: a 1-D Gaussian random field on 64 points of [0, 1], squared-exponential
    covariance (lengthscale 0.2, unit variance) plus a 1e-3 nugget, sampled by Karhunen-Loève.

    Returns train, test and the exact Gaussian NLL of the test set (the floor), nats/field.
    """
    s = np.linspace(0, 1, 64)
    cov = np.exp(-((s[:, None] - s[None, :]) ** 2) / (2 * 0.2**2)) + 1e-3 * np.eye(64)
    lam, vec = np.linalg.eigh(cov)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_train + n_test, 64)) @ (vec * np.sqrt(lam)).T
    test = x[n_train:]
    maha = np.einsum("ni,ij,nj->n", test, np.linalg.inv(cov), test)
    floor = float(np.mean(0.5 * maha + 0.5 * np.sum(np.log(lam)) + 32 * math.log(2 * math.pi)))
    x = x.astype(np.float32)
    return torch.from_numpy(x[:n_train]), torch.from_numpy(x[n_train:]), floor


@dataclass
class Contender:
    """One implementation of the workload model."""

    name: str
    module: nn.Module
    nll: Callable[[Tensor], Tensor]  # mean negative log-likelihood of a batch
    sample: Callable[[int], Tensor]
    version: str = ""


def physgen_contender(flow: nn.Module) -> Contender:
    """physgen's flow as a contender: NLL through ``flow().log_prob``, draws from ``flow()``."""
    return Contender(
        "physgen", flow, lambda x: -flow().log_prob(x).mean(), lambda n: flow().sample((n,)),
        version="(this tree)",
    )  # fmt: skip


def workload_args(argv: list[str] | None, doc: str, builders: dict) -> argparse.Namespace:
    """The common command line of a workload script (``--threads``, ``--steps``,
    ``--libraries``, ``--out``); sets torch's thread count."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--libraries", nargs="+", default=list(builders), choices=list(builders))
    parser.add_argument("--out", type=Path, default=None, help="write JSON lines here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args


def _trainer(c: Contender, train: Tensor, batch: int, steps: int) -> Callable[[], None]:
    """``steps`` Adam(1e-3) steps of ``c`` per call, on minibatches of a seed-1 stream."""
    opt = torch.optim.Adam(c.module.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)

    def run() -> None:
        for _ in range(steps):
            idx = torch.randint(0, train.shape[0], (batch,), generator=gen)
            loss = c.nll(train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


def _sampler(c: Contender, n: int) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            if not bool(torch.isfinite(c.sample(n)).all()):
                raise RuntimeError(f"{c.name}: non-finite samples")

    return run


def run_workload(
    workload: str,
    contenders: list[Contender],
    train: Tensor,
    test: Tensor,
    batch: int,
    steps: int = 2000,
    chunks: int = 10,
    n_sample: int = 10_000,
    sample_repeats: int = 5,
    extra: dict | None = None,
    out: Path | None = None,
) -> list[dict]:
    """Train every contender with Adam(1e-3) on identical minibatches, chunk by chunk through
    ``harness.run_rounds`` (the first chunk is the warm-up, then one chunk per contender and
    round in balanced order), then time sampling the same way and score the test NLL.

    Rates are medians over rounds, in wall-clock and in process CPU time; the ratios printed
    are physgen's speed over each peer's, paired per round.
    """
    busy = cpu_busy_pct()
    load_start = load_average()
    per_chunk = steps // chunks
    trainers = {c.name: _trainer(c, train, batch, per_chunk) for c in contenders}
    train_times = run_rounds(trainers, rounds=chunks - 1, warmup=1)
    load_mid = load_average()
    samplers = {c.name: _sampler(c, n_sample) for c in contenders}
    sample_times = run_rounds(samplers, rounds=sample_repeats, warmup=1)
    load_end = load_average()
    results = []
    for c in contenders:
        with torch.no_grad():
            test_nll = float(torch.cat([c.nll(t).reshape(1) * len(t) for t in test.split(5000)])
                             .sum() / len(test))  # fmt: skip
        tt, st = train_times[c.name], sample_times[c.name]
        results.append({
            "workload": workload, "library": c.name, "version": c.version,
            "params": sum(p.numel() for p in c.module.parameters()),
            "train_steps_per_s": median_stats([per_chunk / t.wall for t in tt]),
            "train_steps_per_s_cpu": median_stats([per_chunk / t.cpu for t in tt]),
            "test_nll": test_nll,
            "sample_per_s": median_stats([n_sample / t.wall for t in st]),
            "sample_per_s_cpu": median_stats([n_sample / t.cpu for t in st]),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "cpu_busy_before_pct": round(busy, 1), "load_start": load_start,
            "load_end": load_end, **(extra or {}),
        })  # fmt: skip
    for r in results:
        print(json.dumps(r))
    print(table(results))
    rows = [
        Comparison(c.name, p.name, "same model and minibatches")
        for c in contenders
        if c.name.startswith("physgen")
        for p in contenders
        if not p.name.startswith("physgen")
    ]
    print(f"\n### training, {per_chunk} steps per round\n")
    print(comparison_table(train_times, rows, load_start, load_mid))
    print(f"\n### sampling {n_sample:,} at once, one call per round\n")
    print(comparison_table(sample_times, rows, load_mid, load_end))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in results)
        os.replace(tmp, out)
    return results


def table(results: list[dict]) -> str:
    """Markdown table of the rates (wall and CPU time, median [min-max] over rounds)."""
    lines = [
        "| library | params | train steps/s [min-max] | cpu-time steps/s | test NLL | "
        "samples/s [min-max] | cpu-time samples/s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        tr, sa = r["train_steps_per_s"], r["sample_per_s"]
        lines.append(
            f"| {r['library']} {r['version']} | {r['params']:,} | {tr['median']:.1f} "
            f"[{tr['min']:.1f}-{tr['max']:.1f}] | {r['train_steps_per_s_cpu']['median']:.1f} | "
            f"{r['test_nll']:.3f} | {sa['median']:,.0f} [{sa['min']:,.0f}-{sa['max']:,.0f}] | "
            f"{r['sample_per_s_cpu']['median']:,.0f} |"
        )
    return "\n".join(lines)


def peer_versions() -> dict[str, str]:
    """Installed versions of the peer libraries."""
    return {p: package_version(p) for p in ("zuko", "nflows", "normflows")}
