"""Emulation study: conditional generative models of the next frame, rolled out into ensembles.

Data: ``burgers-128`` for ``--quick`` (1-D viscous Burgers, 128 points; every 5th stored frame,
Δt = 0.05, 21 frames per trajectory) and ``kolmogorov-64`` (Kolmogorov flow, 64², frames every
1/32) in the full run, which needs a GPU. Every method sees the k = 2 previous frames as U-Net
channels (``physgen.emulation.TrajectoryPairs``) and is trained on the same pairs with the
same budget (optimizer steps × batch):

* conditional flow matching and conditional diffusion (generative: M-member ensembles);
* a deterministic U-Net regressor trained by MSE (``physgen.emulation.Regressor``);
* persistence (u_j = u_{j−1}) and climatology (random training frames), untrained.

Each test trajectory's first k frames start an M-member rollout to the end of the
trajectory; ``physgen.emulation.lead_time_scores`` gives, per lead time, the fair CRPS, the
corrected spread–skill ratio, the RMSE of the ensemble mean and the ensemble-mean correlation
(in physical units).

Usage: ``physgen run emulation --quick`` (CPU) or without ``--quick`` (the GPU configuration).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path
from typing import Any

import torch

from physgen.data.atomic import atomic_output, nonfinite_to_none, write_json_atomic
from physgen.emulation import (
    Emulator,
    Regressor,
    TrajectoryPairs,
    climatology_model,
    correlation_horizon,
    lead_time_scores,
    persistence_model,
    read_trajectories,
    rollout,
    train_emulator,
)
from physgen.paths import runs_root
from physgen.recipes import make_dataset

__all__ = ["CONFIGS", "main"]

CONFIGS: dict[str, dict[str, Any]] = {
    # CPU: small 1-D U-Nets, 16 test trajectories × 8 members (minutes on a busy 2-core CPU).
    "quick": {
        "recipe": "burgers-128", "stride": 5, "history": 2, "n_test": 16, "members": 8,
        "steps": 400, "batch_size": 32, "lr": 2e-3, "ema_decay": 0.99, "device": "cpu",
        "unet": {"channels": [16, 32], "blocks": 1, "periodic": True},
        "sample": {"flow-matching": {"method": "euler", "steps": 10}, "diffusion": {"steps": 10}},
    },
    # One GPU: Kolmogorov flow, 100 test trajectories × 16 members.
    "full": {
        "recipe": "kolmogorov-64", "stride": 1, "history": 2, "n_test": 100, "members": 16,
        "steps": 50000, "batch_size": 64, "lr": 2e-4, "ema_decay": 0.9999, "device": "cuda",
        "unet": {"channels": [64, 128, 128], "blocks": 2, "periodic": True},
        "sample": {
            "flow-matching": {"method": "midpoint", "steps": 50}, "diffusion": {"steps": 100},
        },
    },
}  # fmt: skip

GENERATIVE = (
    ("flow-matching", "conditional flow matching"),
    ("diffusion", "conditional diffusion"),
)


def _trajectories(path: Path, stride: int) -> tuple[torch.Tensor, float]:
    """Every ``stride``-th frame ``(N, C, T, *grid)`` and the spacing of those frames."""
    data, _, description = read_trajectories(path)
    times = description["time"]
    return data[:, :, ::stride], (times[1] - times[0]) * stride


def _methods(pairs: TrajectoryPairs, cfg: dict[str, Any]) -> dict[str, tuple[Emulator, float]]:
    """Every method's emulator and its training time in seconds."""
    settings = pairs.describe()
    fit_options = {
        "steps": cfg["steps"], "batch_size": cfg["batch_size"], "lr": cfg["lr"],
        "ema_decay": cfg["ema_decay"], "device": cfg["device"], "progress": False,
    }  # fmt: skip
    out: dict[str, tuple[Emulator, float]] = {}
    for family, label in (*GENERATIVE, ("regressor", "deterministic U-Net")):
        start = time.perf_counter()
        cls = Regressor if family == "regressor" else family
        emulator, _ = train_emulator(
            pairs,
            cls,
            model_options=cfg["unet"],
            sample_options=cfg["sample"].get(family, {}),
            **fit_options,
        )
        out[label] = (emulator, time.perf_counter() - start)
        print(f"trained {label} in {out[label][1]:.0f} s", flush=True)
    frames = pairs.trajectories[:, :, pairs.history :].transpose(1, 2).flatten(0, 1)
    out["persistence"] = (Emulator(persistence_model(settings), settings), 0.0)
    out["climatology"] = (Emulator(climatology_model(frames, settings), settings), 0.0)
    return out


def _table(results: dict[str, dict[str, Any]], leads: list[int], times: list[float]) -> str:
    head = " | ".join(f"CRPS t+{times[i]:.2f}" for i in leads)
    ratio = " | ".join(f"SSR t+{times[i]:.2f}" for i in leads)
    lines = [
        f"| method | {head} | {ratio} | RMSE t+{times[leads[-1]]:.2f} | corr < 0.5 at | train s |",
        "|---" * (2 * len(leads) + 4) + "|",
    ]
    for name, r in results.items():
        s = r["scores"]
        crps = " | ".join(f"{s['crps'][i]:.4f}" for i in leads)
        ssr = " | ".join(f"{s['spread_skill'][i]:.2f}" for i in leads)
        lines.append(
            f"| {name} | {crps} | {ssr} | {s['rmse'][leads[-1]]:.4f} | "
            f"{r['horizon']:.2f} | {r['train_s']:.0f} |"
        )
    return "\n".join(lines)


def _plots(results: dict[str, dict[str, Any]], times: list[float], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, r in results.items():
        for ax, key in zip(axes, ("crps", "spread_skill", "rmse"), strict=True):
            ax.plot(times, r["scores"][key], marker="o", ms=3, label=name)
    for ax, title in zip(
        axes, ("fair CRPS", "spread–skill (corrected)", "RMSE of the mean"), strict=True
    ):
        ax.set_title(title)
        ax.set_xlabel("lead time")
    axes[1].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(out / "lead_times.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the study; write ``results.json``, ``results.md`` and ``lead_times.png``."""
    parser = argparse.ArgumentParser(prog="physgen run emulation", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CPU configuration")
    parser.add_argument("--device", help="override the configuration's device")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/emulation-…)")
    args = parser.parse_args(argv)
    cfg = dict(CONFIGS["quick" if args.quick else "full"])
    if args.device:
        cfg["device"] = args.device
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = args.out or runs_root() / f"emulation-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    files = make_dataset(cfg["recipe"], progress=False)
    train, _ = _trajectories(files["train"], cfg["stride"])
    test, dt_frame = _trajectories(files["test"], cfg["stride"])
    test = test[: cfg["n_test"]]
    k = cfg["history"]
    pairs = TrajectoryPairs(train, k)
    results: dict[str, dict[str, Any]] = {}
    frames = test.transpose(1, 2)  # (B, T, C, *grid)
    steps = frames.shape[1] - k
    for name, (emulator, train_s) in _methods(pairs, cfg).items():
        start = time.perf_counter()
        ens = rollout(emulator, frames[:, :k], steps, cfg["members"], seed=1)
        scores = lead_time_scores(ens, frames[:, k:])
        results[name] = {
            "scores": scores,
            "train_s": train_s,
            "rollout_s": time.perf_counter() - start,
        }
        print(f"{name}: CRPS {scores['crps'][0]:.4f} → {scores['crps'][-1]:.4f}", flush=True)
    times = [dt_frame * (j + 1) for j in range(steps)]
    for r in results.values():
        r["horizon"] = correlation_horizon(r["scores"]["correlation"], times)
    leads = sorted({0, steps // 4, steps // 2, steps - 1})
    table = _table(results, leads, times)
    write_json_atomic(
        nonfinite_to_none({"config": cfg, "lead_times": times, "results": results}),
        out / "results.json",
    )
    with atomic_output(out / "results.md") as tmp:
        Path(tmp).write_text(table + "\n")
    _plots(results, times, out)
    print(f"\n{table}\n\nwrote {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
