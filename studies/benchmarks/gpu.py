"""U-Net training throughput and MFU, sampling throughput and DDP scaling on the device present.

Three measurements of the default diffusion model on fields ``(C, G, G)``
(``Diffusion.for_shape``, its U-Net), with bf16 autocast and ``channels_last``:

* training: samples/s of the full step (loss, backward, Adam), eager and under
  ``torch.compile``; the model FLOPs of one step are counted on a real forward and backward
  with ``torch.utils.flop_counter.FlopCounterMode`` (shape-based formulas, so the count is
  that of the computation, whatever kernels run it), and the model FLOPs utilization is

  .. math:: \\mathrm{MFU} = \\frac{F_\\text{step} / t_\\text{step}}{P_\\text{bf16}},

  with :math:`P_\\text{bf16}` the device's dense bf16 peak (``PEAK_BF16_TFLOPS``; a device
  not in the table gets no MFU, nor does the CPU);
* sampling: fields/s of DDIM with a fixed number of steps;
* DDP: the training step on 1, 2, 4, ... local GPUs, this script relaunched under
  ``torchrun`` with a fixed per-GPU batch (weak scaling); skipped with fewer than 2 GPUs.

Usage (GPU): ``python studies/benchmarks/gpu.py [--grids 64 128] [--batch 128]``.
CPU smoke test (seconds): ``python studies/benchmarks/gpu.py --grids 8 --batch 2 --steps 1
--warmup 0 --sample-n 2 --sample-steps 2 --compile off``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from physgen.data.atomic import atomic_output, write_json_atomic
from physgen.models.diffusion import Diffusion

__all__ = [
    "MAX_PEAK_TFLOPS",
    "PEAK_BF16_TFLOPS",
    "count_flops",
    "ddp_rows",
    "main",
    "mfu",
    "peak_bf16_tflops",
    "sampling_rows",
    "training_rows",
]

#: Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendor's data sheets.
PEAK_BF16_TFLOPS: dict[str, float] = {
    "H100 SXM": 989.0,
    "H100 PCIe": 756.0,
    "H200": 989.0,
    "A100": 312.0,
}

#: Above this a "peak in TFLOP/s" is surely something else (a FLOP count): 10 PFLOP/s.
MAX_PEAK_TFLOPS = 1e4


def peak_bf16_tflops(device_name: str) -> float | None:
    """The table's peak for a ``torch.cuda.get_device_name()``, or ``None`` when the device
    is not in the table (NVL parts and other variants run at other clocks: no guess)."""
    name = device_name.upper()
    if "NVL" in name:
        key = None
    elif "H100" in name:
        # The SXM part reports its memory ("H100 80GB HBM3"), the PCIe part its bus.
        key = (
            "H100 PCIe"
            if "PCIE" in name
            else "H100 SXM"
            if "SXM" in name or "HBM3" in name
            else None
        )
    elif "H200" in name:
        key = "H200"
    elif "A100" in name:
        key = "A100"
    else:
        key = None
    return None if key is None else PEAK_BF16_TFLOPS[key]


def mfu(*, flops: float, seconds: float, peak_tflops: float) -> float:
    r"""Model FLOPs utilization :math:`(F / t) / P`: ``flops`` of one step, its wall time
    ``seconds`` and the device's peak in TFLOP/s. Keyword-only; a peak above
    ``MAX_PEAK_TFLOPS`` or a result above 1 is impossible and means the arguments are out of
    place (e.g. the FLOP count given as the peak)."""
    for name, value in (("flops", flops), ("seconds", seconds), ("peak_tflops", peak_tflops)):
        if not value > 0:
            raise ValueError(f"mfu: {name} must be positive, got {value}")
    if peak_tflops > MAX_PEAK_TFLOPS:
        raise ValueError(
            f"mfu: peak_tflops={peak_tflops:.3g} is no single device's TFLOP/s (the table's "
            f"largest is {max(PEAK_BF16_TFLOPS.values()):g}): check which argument is which"
        )
    ratio = flops / seconds / (peak_tflops * 1e12)
    if ratio > 1:
        raise ValueError(
            f"mfu: {flops:.3g} FLOP in {seconds:.3g} s exceeds the peak {peak_tflops:.3g} "
            f"TFLOP/s ({ratio:.3g}×): check which argument is which"
        )
    return ratio


def count_flops(fn: Callable[[], Any]) -> int:
    """The FLOPs of everything ``fn`` runs (forward and any backward it calls), by
    ``FlopCounterMode``'s per-operator formulas (matmul and convolution: 2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step: Callable[[], Any], steps: int, device: torch.device) -> float:
    """Seconds per call of ``step``, averaged over ``steps`` calls, device work included."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def _model(channels: int, grid: int, device: torch.device) -> Diffusion:
    model = Diffusion.for_shape((channels, grid, grid)).to(device)
    return model.to(memory_format=torch.channels_last)


def _batch(channels: int, grid: int, batch: int, device: torch.device) -> torch.Tensor:
    x = torch.randn(batch, channels, grid, grid, device=device)
    return x.contiguous(memory_format=torch.channels_last)


def _train_step(
    model: Diffusion, x: torch.Tensor, compiled: bool
) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(step, forward_backward)``: the full training step, and its loss and backward alone
    (what the FLOPs are counted on; eager, since the count is the same computation)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    device_type = x.device.type

    def loss_of(batch: torch.Tensor) -> torch.Tensor:
        return model.loss(batch).mean()

    loss_fn = torch.compile(loss_of) if compiled else loss_of

    def forward_backward(fn: Callable[[torch.Tensor], torch.Tensor] = loss_of) -> None:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            loss = fn(x)
        loss.backward()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward_backward(loss_fn)
        optimizer.step()

    return step, forward_backward


def training_rows(
    grids: Sequence[int],
    batch: int,
    steps: int,
    warmup: int,
    compile_modes: Sequence[bool],
    device: torch.device,
    channels: int = 1,
) -> list[dict[str, Any]]:
    """One row per grid and compile mode: step time, samples/s, model FLOPs per step, MFU."""
    peak = peak_bf16_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    rows = []
    for grid in grids:
        for compiled in compile_modes:
            torch.manual_seed(0)
            model = _model(channels, grid, device)
            x = _batch(channels, grid, batch, device)
            step, forward_backward = _train_step(model, x, compiled)
            flops = count_flops(forward_backward)
            for _ in range(warmup):
                step()
            seconds = _timed(step, steps, device)
            util = None if peak is None else mfu(flops=flops, seconds=seconds, peak_tflops=peak)
            rows.append({
                "grid": grid, "batch": batch, "compile": compiled, "step_s": seconds,
                "samples_per_s": batch / seconds, "flops": flops, "mfu": util,
            })  # fmt: skip
    return rows


def sampling_rows(
    grids: Sequence[int], n: int, sampler_steps: int, device: torch.device, channels: int = 1
) -> list[dict[str, Any]]:
    """One row per grid: fields/s of ``sample(n, sampler="ddim", steps=sampler_steps)``."""
    rows = []
    for grid in grids:
        torch.manual_seed(0)
        model = _model(channels, grid, device).eval()

        def draw(model: Diffusion = model) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                model.sample(n, sampler="ddim", steps=sampler_steps)

        draw()  # warm-up
        seconds = _timed(draw, 1, device)
        rows.append({"grid": grid, "n": n, "steps": sampler_steps, "fields_per_s": n / seconds})
    return rows


def _ddp_worker(args: argparse.Namespace) -> None:
    """One process of a ``torchrun`` launch: the training step through physgen's DDP path
    (NCCL on CUDA; gloo on the CPU, where it only checks the path)."""
    from physgen.training.distributed import setup, wrap

    process, device = setup(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(process.rank)
    model = _model(args.channels, args.grid, device)
    x = _batch(args.channels, args.grid, args.batch, device)
    objective = wrap(model, process, device, two_player=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = objective("loss", x, None).mean()
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if process.world_size > 1:
        torch.distributed.barrier()
    seconds = _timed(step, args.steps, device)
    if process.is_main:
        samples = process.world_size * args.batch
        write_json_atomic(
            {"gpus": process.world_size, "samples_per_s": samples / seconds}, args.ddp_worker
        )


def ddp_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str | None]:
    """Rows for 1, 2, 4, ... and all local GPUs, or no rows and the reason."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus < 2:
        return [], f"DDP scaling skipped: {gpus} CUDA device(s), it needs at least 2"
    counts = sorted({*(2**k for k in range(gpus.bit_length()) if 2**k <= gpus), gpus})
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for k in counts:
            out = Path(folder) / f"ddp{k}.json"
            command = [
                sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={k}", __file__, "--ddp-worker", str(out),
                "--ddp-grid", str(args.ddp_grid), "--batch", str(args.batch),
                "--steps", str(args.steps), "--warmup", str(args.warmup),
                "--channels", str(args.channels),
            ]  # fmt: skip
            subprocess.run(command, check=True)
            rows.append(json.loads(out.read_text()))
    base = rows[0]["samples_per_s"]
    for row in rows:
        row["speedup"] = row["samples_per_s"] / base
        row["efficiency"] = row["speedup"] / row["gpus"]
    return rows, None


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def format_tables(
    device_line: str,
    train: list[dict[str, Any]],
    sample: list[dict[str, Any]],
    ddp: list[dict[str, Any]],
    notes: list[str],
    ddp_grid: int,
) -> str:
    """The results as markdown: a device line, three tables and the notes."""
    lines = [device_line, "", "### U-Net training step (bf16 autocast, channels_last, Adam)", ""]
    lines += [
        "| grid | batch | torch.compile | step (ms) | samples/s | model GFLOP/step | TFLOP/s "
        "| MFU |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in train:
        lines.append(
            f"| {r['grid']}² | {r['batch']} | {'yes' if r['compile'] else 'no'} "
            f"| {1e3 * r['step_s']:.2f} | {r['samples_per_s']:,.1f} | {r['flops'] / 1e9:,.2f} "
            f"| {r['flops'] / r['step_s'] / 1e12:.3f} | {_fmt(r['mfu'] and 100 * r['mfu'], '.1f')}"
            f"{'' if r['mfu'] is None else ' %'} |"
        )
    lines += ["", "### Sampling (DDIM, bf16 autocast)", ""]
    lines += ["| grid | fields | sampler steps | fields/s |", "|---|---:|---:|---:|"]
    for r in sample:
        lines.append(f"| {r['grid']}² | {r['n']} | {r['steps']} | {r['fields_per_s']:,.2f} |")
    if ddp:
        lines += ["", f"### DDP training step, {ddp_grid}², per-GPU batch fixed (torchrun)", ""]
        lines += ["| GPUs | samples/s | speed-up | efficiency |", "|---:|---:|---:|---:|"]
        for r in ddp:
            lines.append(
                f"| {r['gpus']} | {r['samples_per_s']:,.1f} | {r['speedup']:.2f}× "
                f"| {100 * r['efficiency']:.0f} % |"
            )
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--channels", type=int, default=1, help="field channels C")
    parser.add_argument("--batch", type=int, default=128, help="training batch (per GPU)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--compile", choices=["auto", "both", "on", "off"], default="auto",
                        help="auto: eager and compiled on CUDA, eager only on CPU")  # fmt: skip
    parser.add_argument("--sample-n", type=int, default=256, help="fields per sampling call")
    parser.add_argument("--sample-steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--ddp-grid", type=int, default=64, help="grid of the DDP rows")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--ddp-worker", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> str:
    """Run the three measurements, print the markdown and return it."""
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ddp_worker:
        args.grid = args.ddp_grid
        _ddp_worker(args)
        return ""
    for name in ("batch", "steps", "sample_n", "sample_steps", "channels"):
        if getattr(args, name) < 1:
            raise SystemExit(f"gpu.py: --{name.replace('_', '-')} must be >= 1")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    notes = []
    if cuda:
        name = torch.cuda.get_device_name(device)
        peak = peak_bf16_tflops(name)
        device_line = f"device: {name}, bf16 dense peak " + (
            f"{peak:g} TFLOP/s" if peak else "unknown"
        )
        if peak is None:
            notes.append(f"no MFU: {name!r} is not in the table of bf16 peaks (PEAK_BF16_TFLOPS)")
    else:
        device_line = "device: CPU (smoke test)"
        notes.append("no MFU on the CPU: the figure is defined against a GPU's bf16 peak")
    device_line += f"; torch {torch.__version__}"
    modes = {"auto": [False, True] if cuda else [False], "both": [False, True]}
    compile_modes = modes.get(args.compile, [args.compile == "on"])
    if args.compile == "auto" and not cuda:
        notes.append("torch.compile rows left out on the CPU (--compile both to include them)")
    train = training_rows(
        args.grids, args.batch, args.steps, args.warmup, compile_modes, device, args.channels
    )
    sample = sampling_rows(args.grids, args.sample_n, args.sample_steps, device, args.channels)
    ddp, skipped = ddp_rows(args)
    if skipped:
        notes.append(skipped)
    text = format_tables(device_line, train, sample, ddp, notes, args.ddp_grid)
    print(text, end="")
    if args.out is not None:
        with atomic_output(args.out) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
