"""Shared pieces of the CNF, flow-matching and DDPM benchmarks: data, interleaved timing, load."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from importlib import metadata

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "NFECounter",
    "grf2d",
    "interleaved",
    "machine_load",
    "print_table",
    "two_moons",
    "versions",
]


def two_moons(n: int = 10_000, noise: float = 0.05, seed: int = 0) -> Tensor:
    """The make_moons point cloud (two interleaved half circles) with Gaussian noise,
    standardised per coordinate; float32 ``(n, 2)``."""
    rng = np.random.default_rng(seed)
    n_out = n // 2
    n_in = n - n_out
    a_out, a_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    outer = np.stack([np.cos(a_out), np.sin(a_out)], 1)
    inner = np.stack([1 - np.cos(a_in), 1 - np.sin(a_in) - 0.5], 1)
    x = np.concatenate([outer, inner]) + noise * rng.standard_normal((n, 2))
    x = (x - x.mean(0)) / x.std(0)
    return torch.from_numpy(x.astype(np.float32))


def grf2d(n: int = 2_000, size: int = 32, seed: int = 0) -> Tensor:
    """Periodic isotropic Gaussian random fields with power spectrum ``|k|^-4`` (zero mean
    mode), scaled to unit marginal variance; float32 ``(n, 1, size, size)``."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(size) * size
    kk = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    amplitude = np.where(kk > 0, kk, np.inf) ** -2.0  # sqrt of |k|^-4
    noise = rng.standard_normal((n, size, size))
    fields = np.fft.ifft2(np.fft.fft2(noise) * amplitude).real
    fields /= fields.std()
    return torch.from_numpy(fields[:, None].astype(np.float32))


class NFECounter:
    """Counts calls of a module (the velocity or denoiser network) with a forward hook."""

    def __init__(self, module: nn.Module) -> None:
        self.count = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *args: object) -> None:
        self.count += 1


def interleaved(
    contenders: dict[str, Callable[[], None]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall time of each contender's ``fn()``, ``warmup`` untimed calls then ``repeats``
    rounds in which every contender runs once in turn (so a change in machine load hits all
    of them alike)."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def machine_load() -> str:
    """Load averages and the number of CPUs, for the record (the machine is shared)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def versions(*packages: str) -> str:
    found = []
    for name in ("torch", *packages):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (missing)")
    return ", ".join(found)


def print_table(rows: list[dict[str, object]], columns: list[str]) -> None:
    """A plain-text table of ``rows`` (dicts) with the given column order."""
    cells = [[_fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def median_range(values: list[float]) -> str:
    return f"{statistics.median(values):.4g} [{min(values):.4g}-{max(values):.4g}]"
