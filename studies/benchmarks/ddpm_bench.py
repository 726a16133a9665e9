"""DDPM on 32×32 Gaussian random fields: physgen vs diffusers' UNet2DModel at equal size.

Workload: 2,000 periodic isotropic GRFs (1 × 32 × 32, spectrum |k|^-4, unit variance).
Both networks are U-Nets with block widths (32, 64, 64), one residual block per level,
self-attention on the two coarser levels: diffusers ``UNet2DModel`` (Down/AttnDown/AttnDown)
and physgen's ``UNet``, both 1,163,105 parameters. DDPM: T = 1000, linear betas 1e-4..0.02,
ε-prediction, plain MSE, Adam 1e-4, batch 32. Training: 2 warm-up steps, then 5 interleaved
rounds of 6 steps. Sampling: 50-step DDIM (eta 0) of 16 fields without gradients, 1 warm-up
and 3 interleaved runs.

Run: ``python studies/benchmarks/ddpm_bench.py [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_bench import grf2d, interleaved, machine_load, print_table, versions

from physgen.models.diffusion import Diffusion

BATCH, STEPS, SAMPLES = 32, 6, 16


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

    data = grf2d()
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=32, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    torch.manual_seed(0)
    ours = Diffusion((1, 32, 32), sde="ddpm-linear", channels=(32, 64, 64), blocks=1,
                     attention=[False, True, True])  # fmt: skip
    n_ours = sum(p.numel() for p in ours.parameters())
    n_peer = sum(p.numel() for p in unet.parameters())
    ddpm = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                         beta_end=0.02)  # fmt: skip

    def peer_loss(x0: torch.Tensor) -> torch.Tensor:
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (x0.shape[0],))
        return (unet(ddpm.add_noise(x0, noise, t), t).sample - noise).pow(2).mean()

    def trainer(module: torch.nn.Module, loss_fn):
        opt = torch.optim.Adam(module.parameters(), lr=1e-4)
        batches = torch.Generator().manual_seed(1)

        def run() -> None:
            for _ in range(STEPS):
                x = data[torch.randint(0, data.shape[0], (BATCH,), generator=batches)]
                opt.zero_grad()
                loss_fn(x).backward()
                opt.step()

        return run

    def peer_sample() -> None:
        scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                  beta_start=1e-4, beta_end=0.02, clip_sample=False)  # fmt: skip
        scheduler.set_timesteps(50)
        x = torch.randn(SAMPLES, 1, 32, 32, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            for t in scheduler.timesteps:
                x = scheduler.step(unet(x, t).sample, t, x, eta=0.0).prev_sample

    def our_sample() -> None:
        ours.sample(SAMPLES, sampler="ddim", steps=50, generator=torch.Generator().manual_seed(2))

    print(f"# DDPM on 1x32x32 GRFs; {versions('diffusers')}")
    print(f"# parameters: physgen {n_ours:,}, diffusers {n_peer:,}")
    print(f"# threads {args.threads}; before: {machine_load()}")
    train = interleaved(
        {
            "physgen Diffusion + UNet": trainer(ours, lambda x: ours.loss(x).mean()),
            "diffusers UNet2DModel + DDPMScheduler": trainer(unet, peer_loss),
        },
        repeats=args.repeats,
        warmup=1,
    )
    sample = interleaved(
        {
            "physgen Diffusion + UNet": our_sample,
            "diffusers UNet2DModel + DDPMScheduler": peer_sample,
        },
        repeats=3,
        warmup=1,
    )
    print(f"# after: {machine_load()}")
    peer_name = "diffusers UNet2DModel + DDPMScheduler"
    peer_rate = statistics.median([STEPS / t for t in train[peer_name]])
    peer_sample_s = statistics.median(sample[peer_name])
    rows = []
    for name in train:
        rate = [STEPS / t for t in train[name]]
        rows.append({
            "implementation": name,
            "train steps/s median [min-max]": f"{statistics.median(rate):.3g} "
            f"[{min(rate):.3g}-{max(rate):.3g}]",
            "rate / diffusers": round(statistics.median(rate) / peer_rate, 3),
            "DDIM-50 s per 16 fields": f"{statistics.median(sample[name]):.3g} "
            f"[{min(sample[name]):.3g}-{max(sample[name]):.3g}]",
            "time / diffusers": round(statistics.median(sample[name]) / peer_sample_s, 3),
        })  # fmt: skip
    print_table(rows, list(rows[0]))


if __name__ == "__main__":
    main()
