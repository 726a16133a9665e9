"""DDPM on 32×32 Gaussian random fields: physgen vs diffusers' UNet2DModel at equal size.

Workload: 2,000 periodic isotropic GRFs (1 × 32 × 32, spectrum |k|^-4, unit variance).
Both networks are U-Nets with block widths (32, 64, 64), one residual block per level,
self-attention on the two coarser levels and in the middle block: diffusers ``UNet2DModel``
(Down/AttnDown/AttnDown) and physgen's ``UNet``, with equal parameter counts (printed). The
attention is matched: diffusers gets ``attention_head_dim`` = physgen's head width, read from
physgen's model, so both run the same number of heads of the same width (printed); diffusers'
default (``attention_head_dim=8``) runs as a separate, labelled contender. DDPM: T = 1000,
linear betas 1e-4..0.02, ε-prediction, plain MSE, Adam 1e-4, batch 32. Training: rounds of
``--steps`` steps per contender; sampling: rounds of one 50-step DDIM (eta 0) of 16 fields
without gradients per contender. Both through ``harness.run_rounds`` (balanced order, wall
and CPU time, physgen's speed over the peer's paired per round), after one warm-up call.

Run: ``OMP_WAIT_POLICY=PASSIVE python studies/benchmarks/ddpm_bench.py [--threads 1]
[--rounds 5] [--steps 6]``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_bench import grf2d, versions
from harness import (
    Comparison,
    bench_parser,
    comparison_table,
    load_average,
    run_rounds,
    timing_table,
)

from physgen.models.diffusion import Diffusion

BATCH, SAMPLES, DDIM_STEPS = 32, 16, 50
OURS = "physgen Diffusion + UNet"
PEER = "diffusers UNet2DModel, matched heads"
PEER_DEFAULT = "diffusers UNet2DModel, default attention_head_dim=8"


def attention_heads(model: nn.Module) -> list[tuple[int, int]]:
    """(heads, head width) of every self-attention layer of a physgen or diffusers U-Net."""
    found = []
    for m in model.modules():
        if hasattr(m, "heads") and hasattr(m, "inner_dim"):  # diffusers' Attention
            found.append((m.heads, m.inner_dim // m.heads))
        elif hasattr(m, "heads") and isinstance(getattr(m, "qkv", None), nn.Linear):  # physgen
            found.append((m.heads, m.qkv.in_features // m.heads))
    return found


def diffusers_unet(head_dim: int | None) -> nn.Module:
    """diffusers' U-Net of the workload, seed 0; ``head_dim=None`` keeps its default."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    extra = {} if head_dim is None else {"attention_head_dim": head_dim}
    return UNet2DModel(
        sample_size=32, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), **extra,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, rounds=5, steps=6)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from diffusers import DDIMScheduler, DDPMScheduler

    data = grf2d()
    torch.manual_seed(0)
    ours = Diffusion((1, 32, 32), sde="ddpm-linear", prediction="eps", channels=(32, 64, 64),
                     blocks=1, attention=[False, True, True])  # fmt: skip
    our_heads = attention_heads(ours)
    widths = {width for _, width in our_heads}
    if len(widths) != 1:
        raise SystemExit(f"ddpm_bench: physgen's attention widths differ: {our_heads}")
    unets = {PEER: diffusers_unet(widths.pop()), PEER_DEFAULT: diffusers_unet(None)}
    print(f"# DDPM on 1x32x32 GRFs; {versions('diffusers')}")
    print(f"# threads {args.threads}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}")
    for name, model in ((OURS, ours), *unets.items()):
        count = sum(p.numel() for p in model.parameters())
        print(f"# {name}: {count:,} parameters; attention (heads, width): {attention_heads(model)}")
    if attention_heads(unets[PEER]) != our_heads:
        raise SystemExit("ddpm_bench: the matched diffusers U-Net has other attention heads")
    ddpm = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                         beta_end=0.02)  # fmt: skip

    def peer_loss(unet: nn.Module) -> Callable[[Tensor], Tensor]:
        def loss(x0: Tensor) -> Tensor:
            noise = torch.randn_like(x0)
            t = torch.randint(0, 1000, (x0.shape[0],))
            return (unet(ddpm.add_noise(x0, noise, t), t).sample - noise).pow(2).mean()

        return loss

    def trainer(module: nn.Module, loss_fn: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        opt = torch.optim.Adam(module.parameters(), lr=1e-4)
        batches = torch.Generator().manual_seed(1)

        def run() -> None:
            for _ in range(args.steps):
                x = data[torch.randint(0, data.shape[0], (BATCH,), generator=batches)]
                opt.zero_grad()
                loss_fn(x).backward()
                opt.step()

        return run

    def peer_sampler(unet: nn.Module) -> Callable[[], None]:
        def run() -> None:
            scheduler = DDIMScheduler(
                num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                beta_end=0.02, clip_sample=False,
            )  # fmt: skip
            scheduler.set_timesteps(DDIM_STEPS)
            x = torch.randn(SAMPLES, 1, 32, 32, generator=torch.Generator().manual_seed(2))
            with torch.no_grad():
                for t in scheduler.timesteps:
                    x = scheduler.step(unet(x, t).sample, t, x, eta=0.0).prev_sample

        return run

    def our_sampler() -> None:
        gen = torch.Generator().manual_seed(2)
        ours.sample(SAMPLES, sampler="ddim", steps=DDIM_STEPS, generator=gen)

    rows = [
        Comparison(OURS, PEER, "same widths, parameter count and attention heads"),
        Comparison(OURS, PEER_DEFAULT, "**different attention** (8 heads of width 8)"),
    ]
    load_start = load_average()
    train = run_rounds(
        {OURS: trainer(ours, lambda x: ours.loss(x).mean()),
         **{name: trainer(unet, peer_loss(unet)) for name, unet in unets.items()}},
        rounds=args.rounds,
    )  # fmt: skip
    load_mid = load_average()
    sample = run_rounds(
        {OURS: our_sampler, **{name: peer_sampler(unet) for name, unet in unets.items()}},
        rounds=args.rounds,
    )
    load_end = load_average()
    print(f"\n### training: seconds per {args.steps} steps, batch {BATCH}\n")
    print(timing_table(train, unit=f"s per {args.steps} steps"))
    print("\n### training, physgen against diffusers, paired per round\n")
    print(comparison_table(train, rows, load_start, load_mid))
    print(f"\n### DDIM-{DDIM_STEPS} sampling of {SAMPLES} fields: seconds per call\n")
    print(timing_table(sample))
    print("\n### sampling, physgen against diffusers, paired per round\n")
    print(comparison_table(sample, rows, load_mid, load_end))


if __name__ == "__main__":
    main()
