"""Side-by-side harness for the flow workloads W1 and W2: data, timing, machine-load record."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["Contender", "cpu_busy_pct", "grf1d", "maf10", "run_workload"]


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


def cpu_busy_pct(interval: float = 2.0) -> float:
    """Share of all CPUs busy (user+system+...; not idle/iowait) over ``interval`` seconds."""

    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values), idle

    total0, idle0 = read()
    time.sleep(interval)
    total1, idle1 = read()
    return 100.0 * (1 - (idle1 - idle0) / max(total1 - total0, 1))


@dataclass
class Contender:
    """One implementation of the workload model."""

    name: str
    module: nn.Module
    nll: Callable[[Tensor], Tensor]  # mean negative log-likelihood of a batch
    sample: Callable[[int], Tensor]
    version: str = ""
    chunk_rates: list[float] = field(default_factory=list)
    chunk_cpu_rates: list[float] = field(default_factory=list)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _median_range(values: list[float]) -> dict[str, float | int]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}  # fmt: skip


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
    """Train every contender with Adam(1e-3) on identical minibatches, interleaved chunk by
    chunk (so machine load hits every library alike), then time sampling and score test NLL.

    steps/s is the median over chunks 2..``chunks`` (chunk 1 is warm-up); samples/s is the
    median of ``sample_repeats`` timed calls after one warm-up; a ``_cpu`` twin of each rate
    uses process CPU time (contention-robust with one thread).
    """
    busy = cpu_busy_pct()
    load_start = os.getloadavg()
    per_chunk = steps // chunks
    state = {}
    for c in contenders:
        opt = torch.optim.Adam(c.module.parameters(), lr=1e-3)
        state[c.name] = (opt, torch.Generator().manual_seed(1))
    for _ in range(chunks):
        for c in contenders:
            opt, gen = state[c.name]
            t0, p0 = time.perf_counter(), time.process_time()
            for _ in range(per_chunk):
                idx = torch.randint(0, train.shape[0], (batch,), generator=gen)
                loss = c.nll(train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            c.chunk_rates.append(per_chunk / (time.perf_counter() - t0))
            c.chunk_cpu_rates.append(per_chunk / (time.process_time() - p0))
    results = []
    for c in contenders:
        with torch.no_grad():
            test_nll = float(torch.cat([c.nll(t).reshape(1) * len(t) for t in test.split(5000)])
                             .sum() / len(test))  # fmt: skip
            c.sample(n_sample)
            rates, cpu_rates = [], []
            for _ in range(sample_repeats):
                t0, p0 = time.perf_counter(), time.process_time()
                s = c.sample(n_sample)
                rates.append(n_sample / (time.perf_counter() - t0))
                cpu_rates.append(n_sample / (time.process_time() - p0))
            finite = bool(torch.isfinite(s).all())
        results.append({
            "workload": workload, "library": c.name, "version": c.version,
            "params": sum(p.numel() for p in c.module.parameters()),
            "train_steps_per_s": _median_range(c.chunk_rates[1:]),
            "train_steps_per_s_cpu": _median_range(c.chunk_cpu_rates[1:]),
            "test_nll": test_nll,
            "sample_per_s": _median_range(rates),
            "sample_per_s_cpu": _median_range(cpu_rates),
            "samples_finite": finite,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "cpu_busy_before_pct": round(busy, 1), "load_start": load_start,
            "load_end": os.getloadavg(), **(extra or {}),
        })  # fmt: skip
    for r in results:
        print(json.dumps(r))
    print(table(results))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in results)
        os.replace(tmp, out)
    return results


def table(results: list[dict]) -> str:
    """Markdown table with physgen's ratios against the fastest peer."""
    peers = [r for r in results if not r["library"].startswith("physgen")]
    best_train = max(r["train_steps_per_s"]["median"] for r in peers)
    best_sample = max(r["sample_per_s"]["median"] for r in peers)
    lines = [
        "| library | params | train steps/s [min-max] | cpu-time steps/s | test NLL | "
        "samples/s [min-max] |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        tr, sa = r["train_steps_per_s"], r["sample_per_s"]
        lines.append(
            f"| {r['library']} {r['version']} | {r['params']:,} | {tr['median']:.1f} "
            f"[{tr['min']:.1f}-{tr['max']:.1f}] | {r['train_steps_per_s_cpu']['median']:.1f} | "
            f"{r['test_nll']:.3f} | {sa['median']:,.0f} [{sa['min']:,.0f}-{sa['max']:,.0f}] |"
        )
    ours = next((r for r in results if r["library"] == "physgen"), None)
    if ours is not None:
        train_ratio = ours["train_steps_per_s"]["median"] / best_train
        sample_ratio = ours["sample_per_s"]["median"] / best_sample
        lines.append(
            f"physgen / fastest peer: training {train_ratio:.2f}x, sampling {sample_ratio:.2f}x"
        )
    return "\n".join(lines)


def peer_versions() -> dict[str, str]:
    """Installed versions of the peer libraries."""
    return {p: _version(p) for p in ("zuko", "nflows", "normflows")}
