"""The memory benchmark's gauge: ``VmHWM`` after a reset sees an allocation of known size."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "studies" / "benchmarks" / "memory.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_memory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_gauge_sees_a_known_allocation() -> None:
    bench = _module()
    if not bench._reset_peak():
        pytest.skip("this kernel does not let the process reset its peak")
    size = 64 * 2**20
    before = bench._status_kib("VmRSS")
    block = np.ones(size, dtype=np.uint8)  # touched: resident
    del block
    peak = bench._status_kib("VmHWM")
    assert peak - before >= 0.95 * size / 1024  # KiB
    bench._reset_peak()  # control: after a reset the freed block no longer counts
    assert bench._status_kib("VmHWM") - before < 0.5 * size / 1024
