"""The GPU benchmark's arithmetic: FLOP counts against closed forms, MFU, the peak table, a
CPU smoke run of the whole script, and (marked ``gpu``) a short run on CUDA."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

SCRIPT = Path(__file__).resolve().parents[1] / "studies" / "benchmarks" / "gpu.py"
SMOKE = ["--grids", "8", "--batch", "2", "--steps", "1", "--warmup", "0", "--sample-n", "2",
         "--sample-steps", "2"]  # fmt: skip


def _module():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_linear_flops_are_the_closed_form() -> None:
    """A matmul of (m, k) by (k, n) is m·n·k multiply-adds, 2·m·n·k FLOPs; the backward
    computes the input and the weight gradients, two more matmuls of the same size."""
    bench = _module()
    m, k, n = 3, 5, 7
    layer = nn.Linear(k, n).double()
    x = torch.randn(m, k, dtype=torch.float64, requires_grad=True)
    assert bench.count_flops(lambda: layer(x)) == 2 * m * n * k
    assert bench.count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * m * n * k
    # Control: elementwise work is not model FLOPs, so a counter that saw it would fail here.
    assert bench.count_flops(lambda: torch.tanh(x) * 2) == 0


def test_conv_flops_are_the_closed_form() -> None:
    """A convolution is B·C_out·H_out·W_out output entries of C_in·k_h·k_w multiply-adds."""
    bench = _module()
    b, c_in, c_out, h, w, kh, kw = 2, 3, 4, 9, 8, 3, 2
    conv = nn.Conv2d(c_in, c_out, (kh, kw)).double()
    x = torch.randn(b, c_in, h, w, dtype=torch.float64)
    expected = 2 * b * c_out * (h - kh + 1) * (w - kw + 1) * c_in * kh * kw
    assert bench.count_flops(lambda: conv(x)) == expected
    # Stride 2: ⌊(H − k_h)/2⌋ + 1 by ⌊(W − k_w)/2⌋ + 1 outputs, the same work per output.
    strided = nn.Conv2d(c_in, c_out, (kh, kw), stride=2).double()
    per_output = 2 * b * c_out * c_in * kh * kw
    assert bench.count_flops(lambda: strided(x)) == per_output * ((h - kh) // 2 + 1) * (
        (w - kw) // 2 + 1
    )
    # Control: the stride-1 count is not the strided one's.
    assert bench.count_flops(lambda: strided(x)) != expected


def test_mfu_arithmetic_and_swapped_arguments() -> None:
    bench = _module()
    # 4.945e12 FLOP in 10 ms is 494.5 TFLOP/s: half of a 989 TFLOP/s peak.
    assert bench.mfu(flops=4.945e12, seconds=0.01, peak_tflops=989.0) == pytest.approx(
        0.5, rel=1e-12
    )
    assert bench.mfu(flops=1e12, seconds=1.0, peak_tflops=312.0) == pytest.approx(
        1 / 312, rel=1e-12
    )
    with pytest.raises(TypeError):  # keyword-only: no positional order to get wrong
        bench.mfu(4.945e12, 0.01, 989.0)
    with pytest.raises(ValueError, match="check which argument"):  # FLOPs and peak swapped
        bench.mfu(flops=989.0, seconds=0.01, peak_tflops=4.945e12)
    with pytest.raises(ValueError, match="check which argument"):  # faster than the peak
        bench.mfu(flops=4.945e12, seconds=0.001, peak_tflops=989.0)
    with pytest.raises(ValueError, match="seconds must be positive"):
        bench.mfu(flops=1e12, seconds=0.0, peak_tflops=989.0)


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 SXM5 80GB", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100 80GB PCIe", 312.0),
        ("NVIDIA H100 NVL", None),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_peak_table_by_device_name(name: str, peak: float | None) -> None:
    assert _module().peak_bf16_tflops(name) == peak


def test_cpu_smoke_run_prints_the_table_rows(capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("the smoke test is the CPU path")
    bench = _module()
    threads = torch.get_num_threads()
    try:
        text = bench.main([*SMOKE, "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert capsys.readouterr().out == text
    train = [line for line in text.splitlines() if line.startswith("| 8² | 2 | no |")]
    assert len(train) == 1 and train[0].rstrip().endswith("| — |")  # no MFU on the CPU
    cells = [c.strip() for c in train[0].strip("|").split("|")]
    step_ms, samples_per_s = float(cells[3]), float(cells[4].replace(",", ""))
    assert samples_per_s == pytest.approx(2 / (step_ms / 1e3), rel=0.01)  # batch / step time
    assert float(cells[5]) > 0  # model GFLOP/step were counted
    assert any(line.startswith("| 8² | 2 | 2 |") for line in text.splitlines())  # sampling
    assert "no MFU on the CPU" in text and "DDP scaling skipped" in text


@pytest.mark.slow
def test_ddp_worker_runs_under_torchrun_on_the_cpu(tmp_path: Path) -> None:
    """The DDP rows' worker, two gloo processes: rank 0 reports the world's throughput."""
    out = tmp_path / "ddp.json"
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[2]), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(SCRIPT), "--ddp-worker", str(out), "--ddp-grid", "8",
               "--batch", "2", "--steps", "1", "--warmup", "1"]  # fmt: skip
    subprocess.run(command, env=env, check=True, timeout=600, capture_output=True)
    row = json.loads(out.read_text())
    assert row["gpus"] == 2 and row["samples_per_s"] > 0


@pytest.mark.gpu
def test_gpu_run_reports_mfu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    args = ["--grids", "32", "--batch", "8", "--steps", "3", "--warmup", "2", "--sample-n", "4",
            "--sample-steps", "4", "--compile", "both"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[2])}
    out = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
        check=True, timeout=900,
    ).stdout  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| 32² | 8 |")]
    assert len(rows) == 2 and {r.split("|")[3].strip() for r in rows} == {"yes", "no"}
    known = _module().peak_bf16_tflops(torch.cuda.get_device_name()) is not None
    assert all(r.rstrip().endswith("% |") == known for r in rows)
    assert any(line.startswith("| 32² | 4 | 4 |") for line in out.splitlines())
