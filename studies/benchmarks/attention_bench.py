"""U-Net training step with the fused attention kernel against the written-out attention.

The same U-Net (attention at the coarse level and in the middle block), the same batch and the
same Adam step; the only difference is the attention: ``scaled_dot_product_attention`` (what
the U-Net runs) or ``softmax(q kᵀ/√d) v`` written out (what it ran in training before). The
two variants run through ``harness.run_rounds`` (balanced order per round, wall-clock and CPU
time), and the speed-up is paired per round; the load average is printed with the result.

Usage: ``OMP_WAIT_POLICY=PASSIVE python studies/benchmarks/attention_bench.py [--grid 32]
[--batch 16] [--rounds 7]``
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Comparison, bench_parser, comparison_table, load_average, run_rounds

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


def main() -> None:
    parser = bench_parser(__doc__, rounds=7, steps=5)
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
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

    def run(variant: str) -> None:
        _Attention.forward = fused if variant == "fused" else written_out  # type: ignore[method-assign]
        try:
            for _ in range(args.steps):
                step()
        finally:
            _Attention.forward = fused  # type: ignore[method-assign]

    load_start = load_average()
    times = run_rounds(
        {"fused": lambda: run("fused"), "written out": lambda: run("written out")},
        rounds=args.rounds,
    )
    load_end = load_average()
    print(
        f"U-Net training step, {args.grid}² grid, batch {args.batch}, {args.threads} thread(s), "
        f"{args.rounds} rounds of {args.steps} steps; speed of the fused attention over the "
        "written-out one (written-out time / fused time), paired per round:\n"
    )
    rows = [Comparison("fused", "written out", "same net, batch and Adam step")]
    print(comparison_table(times, rows, load_start, load_end, labels=("variant", "against")))


if __name__ == "__main__":
    main()
