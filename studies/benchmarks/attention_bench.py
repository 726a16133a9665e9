"""U-Net training step with the fused attention kernel against the written-out attention.

The same U-Net (attention at the coarse level and in the middle block), the same batch and the
same Adam step; the only difference is the attention: ``scaled_dot_product_attention`` (what
the U-Net runs) or ``softmax(q kᵀ/√d) v`` written out (what it ran in training before). The
two variants alternate within each round, in alternating order, and the ratio is paired per
round, in wall-clock and CPU time; the load average is printed with the result.

Usage: ``python studies/benchmarks/attention_bench.py [--grid 32] [--batch 16] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from physgen.nn.unet import UNet, _Attention

__all__ = ["main", "written_out"]


def written_out(block: _Attention, x: Tensor) -> Tensor:
    """The attention as softmax(q kᵀ / √d) v, for comparison."""
    b, c = x.shape[:2]
    h = block.norm(x).flatten(2).transpose(1, 2)  # (B, L, C)
    q, k, v = block.qkv(h).reshape(b, -1, 3, block.heads, c // block.heads).unbind(2)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, L, d)
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    a = (w @ v).transpose(1, 2).reshape(b, -1, c)  # (B, L, C)
    return x + block.out(a).transpose(1, 2).reshape(x.shape)


def _timed(step: Callable[[], None], steps: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timing")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = UNet(ndim=2, in_channels=2, channels=[32, 64], attention=[False, True])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randn(args.batch, 2, args.grid, args.grid)
    t = torch.rand(args.batch)
    fused = _Attention.forward

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        ((net(x, t) - x) ** 2).mean().backward()
        optimizer.step()

    def run(variant: str) -> tuple[float, float]:
        _Attention.forward = fused if variant == "fused" else written_out  # type: ignore[method-assign]
        try:
            return _timed(step, args.steps)
        finally:
            _Attention.forward = fused  # type: ignore[method-assign]

    run("fused"), run("written out")  # warm-up
    ratios_wall, ratios_cpu = [], []
    for r in range(args.rounds):
        order = ("fused", "written out") if r % 2 == 0 else ("written out", "fused")
        times = {variant: run(variant) for variant in order}
        ratios_wall.append(times["written out"][0] / times["fused"][0])
        ratios_cpu.append(times["written out"][1] / times["fused"][1])
    print(
        f"U-Net training step, {args.grid}² grid, batch {args.batch}, {args.threads} thread(s), "
        f"{args.rounds} rounds of {args.steps} steps; load average {os.getloadavg()[0]:.2f}"
    )
    print("speed-up of the fused attention (written-out time / fused time), median [range]:")
    for name, ratios in (("wall", ratios_wall), ("CPU", ratios_cpu)):
        print(f"  {name:4s} {statistics.median(ratios):.2f}× [{min(ratios):.2f}–{max(ratios):.2f}]")


if __name__ == "__main__":
    main()
