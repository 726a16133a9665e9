"""Shared pieces of the benchmarks here: data, NFE counting, machine busy share, versions."""

from __future__ import annotations

import statistics
import time
from importlib import metadata

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "NFECounter",
    "cpu_busy_pct",
    "grf2d",
    "median_stats",
    "package_version",
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


def package_version(name: str) -> str:
    """The installed version of ``name``, or ``(missing)``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "(missing)"


def versions(*packages: str) -> str:
    """``torch X, pkg Y, ...`` for the record."""
    return ", ".join(f"{name} {package_version(name)}" for name in ("torch", *packages))


def median_stats(values: list[float]) -> dict[str, float | int]:
    """Median, min, max and count of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}  # fmt: skip
