"""Shared pytest fixtures: thread count, seeded generators, devices."""

from __future__ import annotations

import os

import pytest
import torch

# Two cores on CI: one intra-op thread per test process keeps timings sane and avoids
# OpenMP spin-waiting when another process holds a core.
torch.set_num_threads(int(os.environ.get("PHYSGEN_TEST_THREADS", "1")))


def _devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@pytest.fixture(params=_devices())
def device(request: pytest.FixtureRequest) -> torch.device:
    """Every device present (CPU always; CUDA where available)."""
    return torch.device(request.param)


@pytest.fixture
def generator() -> torch.Generator:
    """A seeded CPU generator for reproducible test draws."""
    return torch.Generator().manual_seed(1234)
