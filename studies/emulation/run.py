"""Emulation study: conditional generative models of the next frame, rolled out into ensembles.

Data: ``burgers-128`` for ``--quick`` (1-D viscous Burgers, 128 points; every 5th stored frame,
Δt = 0.05, 21 frames per trajectory) and ``kolmogorov-64`` (Kolmogorov flow, 64², frames every
1/32) in the full run, which needs a GPU. Every method sees the k = 2 previous frames as
channels (``physgen.emulation.TrajectoryPairs``), predicts the increment over the newest frame
(``target="increment"``) and is trained on the same pairs with the same budget (optimizer
steps × batch):

* conditional flow matching, conditional diffusion (U-Nets), a conditional VAE and a
  conditional Glow (generative: M-member ensembles);
* a deterministic U-Net regressor trained by MSE (``physgen.emulation.Regressor``);
* residual flow matching (CorrDiff, Mardani et al. 2023): the regressor's prediction plus a
  draw of conditional flow matching trained on the regressor's residuals, conditioned on the
  history and the prediction (``physgen.emulation.train_residual_emulator``), and the same
  trained on the residuals of histories the regressor rolled n steps from the truth
  (``rollout_residuals=n``, one row per n of the configuration; no λ grid for these);
* persistence (u_j = u_{j−1}) and climatology (random training frames), untrained.

Each generative model is rolled out on the test trajectories as trained (λ = 1) and with the
multiplicative inflation λ of ``physgen.emulation.rollout`` chosen, from a grid, on validation
trajectories (the λ whose per-lead spread–skill ratios have the smallest mean |log SSR|); its λ
= 1 rollout is also post-processed by a spread factor per lead time s(t) about the ensemble
mean (``physgen.emulation.fit_spread_calibration``: log s a polynomial in t fit to the
validation rollout, its degree chosen by two-fold cross-validation over the validation
trajectories). Nothing is chosen on the test trajectories. Each test trajectory's first k
frames start an M-member rollout to the end of the trajectory;
``physgen.emulation.lead_time_scores`` gives, per lead time, the fair CRPS, the corrected
spread–skill ratio with its 90 % case-bootstrap interval (``lead_time_ssr_interval``), the
RMSE of the ensemble mean and the ensemble-mean correlation, ``lead_time_spectrum_error``
the energy-spectrum error beside its floor (in physical units).

Usage: ``physgen run emulation --quick`` (CPU) or without ``--quick`` (the GPU configuration).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
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
    fit_spread_calibration,
    lead_time_scores,
    lead_time_spectrum_error,
    lead_time_ssr_interval,
    persistence_model,
    read_trajectories,
    rollout,
    stability_horizon,
    train_emulator,
    train_residual_emulator,
)
from physgen.paths import runs_root
from physgen.recipes import make_dataset

__all__ = ["CONFIGS", "calibrated_until", "choose_degree", "main", "wins"]

CONFIGS: dict[str, dict[str, Any]] = {
    # CPU: small 1-D networks, 64 test trajectories × 8 members (~25 min on a busy 2-core
    # CPU). The pooled spread–skill ratio of 16 cases varied by ~40 % between two such sets.
    "quick": {
        "recipe": "burgers-128", "stride": 5, "history": 2, "target": "increment",
        "n_test": 64, "n_valid": 48, "members": 8,
        "steps": 1500, "batch_size": 32, "lr": 2e-3, "ema_decay": 0.99, "device": "cpu",
        "models": {
            "unet": {"channels": [16, 32], "blocks": 1, "periodic": True},
            "cvae": {"latent_dim": 16, "channels": [16, 32]},
            "glow": {"hidden": 32, "periodic": True},
        },
        # Glow's rollouts diverged at lr 2e-3 (its samples of OOD histories blow up).
        "fit": {"glow": {"lr": 5e-4, "grad_clip": 1.0}},
        "sample": {"flow-matching": {"method": "euler", "steps": 10}, "diffusion": {"steps": 10}},
        "inflation": [0.55, 0.7, 0.85, 1.0, 1.5],
        "spread_degrees": [0, 1, 2, 3],
        "rollout_residuals": [2, 5],
    },
    # One GPU: Kolmogorov flow, the recipe's 40 test trajectories × 16 members.
    "full": {
        "recipe": "kolmogorov-64", "stride": 1, "history": 2, "target": "increment",
        "n_test": 40, "n_valid": 20, "members": 16,
        "steps": 50000, "batch_size": 64, "lr": 2e-4, "ema_decay": 0.9999, "device": "cuda",
        "models": {
            "unet": {"channels": [64, 128, 128], "blocks": 2, "periodic": True},
            "cvae": {"latent_dim": 64, "channels": [64, 128]},
            "glow": {"hidden": 128, "periodic": True},
        },
        "fit": {"glow": {"grad_clip": 1.0}},
        "sample": {
            "flow-matching": {"method": "midpoint", "steps": 50}, "diffusion": {"steps": 100},
        },
        "inflation": [0.4, 0.55, 0.7, 0.85, 1.0, 1.5, 2.5],
        "spread_degrees": [0, 1, 2, 3],
        "rollout_residuals": [2, 5],
    },
}  # fmt: skip

GENERATIVE = (
    ("flow-matching", "conditional flow matching"),
    ("diffusion", "conditional diffusion"),
    ("cvae", "conditional VAE"),
    ("glow", "conditional Glow"),
)
RESIDUAL = "residual flow matching"


def _trajectories(path: Path, stride: int) -> tuple[torch.Tensor, float]:
    """Every ``stride``-th frame ``(N, C, T, *grid)`` and the spacing of those frames."""
    data, _, description = read_trajectories(path)
    times = description["time"]
    return data[:, :, ::stride], (times[1] - times[0]) * stride


def _fit_options(cfg: dict[str, Any], family: str) -> dict[str, Any]:
    """The training budget shared by every method, with ``family``'s overrides."""
    return {
        "steps": cfg["steps"], "batch_size": cfg["batch_size"], "lr": cfg["lr"],
        "ema_decay": cfg["ema_decay"], "device": cfg["device"], "progress": False,
        **cfg.get("fit", {}).get(family, {}),
    }  # fmt: skip


def _train(pairs: TrajectoryPairs, cfg: dict[str, Any], family: str) -> tuple[Emulator, float]:
    """One family's emulator and its training time in seconds."""
    fit_options = _fit_options(cfg, family)
    start = time.perf_counter()
    cls = Regressor if family == "regressor" else family
    options = cfg["models"].get(family, cfg["models"]["unet"])
    emulator, _ = train_emulator(
        pairs,
        cls,
        model_options=options,
        sample_options=cfg["sample"].get(family, {}),
        **fit_options,
    )
    return emulator, time.perf_counter() - start


def _train_residual(
    pairs: TrajectoryPairs, cfg: dict[str, Any], mean: Any, rollout_residuals: int = 0
) -> tuple[Emulator, float]:
    """The residual flow-matching emulator on the trained regressor ``mean`` (same U-Net,
    budget and sampler as conditional flow matching; residuals of histories rolled
    ``rollout_residuals`` steps) and its training time in seconds."""
    start = time.perf_counter()
    emulator, _ = train_residual_emulator(
        pairs,
        mean,
        "flow-matching",
        rollout_residuals=rollout_residuals,
        model_options=cfg["models"]["unet"],
        sample_options=cfg["sample"]["flow-matching"],
        **_fit_options(cfg, "flow-matching"),
    )
    return emulator, time.perf_counter() - start


def _calibrate(
    emulator: Emulator, frames: torch.Tensor, cfg: dict[str, Any], grid: bool = True
) -> tuple[float, dict[str, float], torch.Tensor]:
    """The inflation λ of the grid (or only λ = 1 without ``grid``) with the smallest mean
    |log SSR| on the validation trajectories ``frames (B, T, C, *grid)`` (1 when no λ gives
    a finite one), that mean for every λ, and the validation rollout at λ = 1."""
    k = cfg["history"]
    misfit: dict[str, float] = {}
    plain = None
    for lam in sorted(set(cfg["inflation"] if grid else []) | {1.0}):
        ens = rollout(emulator, frames[:, :k], frames.shape[1] - k, cfg["members"], seed=2,
                      inflation=lam)  # fmt: skip
        if lam == 1.0:
            plain = ens
        if lam in cfg["inflation"] or not grid:
            misfit[str(lam)] = _misfit(lead_time_scores(ens, frames[:, k:])["spread_skill"])
    finite = {lam: v for lam, v in misfit.items() if math.isfinite(v)}
    best = min(finite, key=finite.__getitem__) if finite else "1.0"
    assert plain is not None
    return float(best), misfit, plain


def _misfit(ratios: list[float]) -> float:
    """Mean |log SSR| over the lead times (inf when a ratio is 0 or not finite)."""
    logs = [math.log(r) if r > 0 and math.isfinite(r) else math.inf for r in ratios]
    return sum(abs(v) for v in logs) / len(logs)


def choose_degree(
    members: torch.Tensor, truth: torch.Tensor, times: list[float], degrees: list[int]
) -> tuple[int, dict[str, float]]:
    """The degree of :func:`~physgen.emulation.fit_spread_calibration` with the smallest
    two-fold cross-validated mean |log SSR| on validation cases: the factors are fit on one
    half of the cases (``members (B, M, T, ...)``, ``truth (B, T, ...)``) and scored on the
    other, both ways. Returns the degree (the lowest on ties) and every degree's misfit."""
    half = members.shape[0] // 2
    parts = [(slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))]
    misfit: dict[str, float] = {}
    for degree in degrees:
        total = 0.0
        for fit, held in parts:
            try:
                cal = fit_spread_calibration(members[fit], truth[fit], times, degree)
            except ValueError:  # no spread on a half: this degree cannot be judged
                total = math.inf
                break
            scores = lead_time_scores(cal.apply(members[held], times), truth[held])
            total += _misfit(scores["spread_skill"]) / len(parts)
        misfit[str(degree)] = total
    best = min(degrees, key=lambda d: (misfit[str(d)], d))
    return best, misfit


def _spread_calibration(
    valid_ens: torch.Tensor, valid_truth: torch.Tensor, times: list[float], cfg: dict[str, Any]
) -> dict[str, Any] | None:
    """The spread factor s(t) fit on the validation rollout, its degree chosen by
    :func:`choose_degree` (None when the rollout has no finite positive spread–skill)."""
    degree, misfit = choose_degree(valid_ens, valid_truth, times, cfg["spread_degrees"])
    if not math.isfinite(misfit[str(degree)]):
        return None
    try:
        cal = fit_spread_calibration(valid_ens, valid_truth, times, degree)
    except ValueError:
        return None
    return {"degree": degree, "cv_mean_abs_log_ssr": misfit, "calibration": cal,
            "factors": cal.factors(times).tolist()}  # fmt: skip


def wins(scores: list[float], reference: list[float]) -> int:
    """At how many lead times ``scores`` is below ``reference`` (lower is better)."""
    return sum(a < b for a, b in zip(scores, reference, strict=True))


def calibrated_until(ratios: list[float], times: list[float], low=0.8, high=1.2) -> float:
    """The last lead time up to which every spread–skill ratio lies in [low, high] (0 when
    the first does not)."""
    last = 0.0
    for r, t in zip(ratios, times, strict=True):
        if not low <= r <= high:
            break
        last = t
    return last


def _table(
    results: dict[str, dict[str, Any]], leads: list[int], times: list[float], reference: str
) -> str:
    head = " | ".join(f"CRPS t+{times[i]:.2f}" for i in leads)
    ratio = " | ".join(f"SSR t+{times[i]:.2f}" for i in leads)
    lines = [
        f"| method | {head} | {ratio} | RMSE t+{times[leads[-1]]:.2f} | CRPS < regressor at "
        "| SSR in [0.8, 1.2] to | corr < 0.5 at | stable to | train s |",
        "|---" * (2 * len(leads) + 7) + "|",
    ]
    base = results[reference]["scores"]["crps"]
    for name, r in results.items():
        s = r["scores"]
        crps = " | ".join(f"{s['crps'][i]:.4f}" for i in leads)
        ssr = " | ".join(f"{s['spread_skill'][i]:.2f}" for i in leads)
        won = "–" if name == reference else f"{wins(s['crps'], base)}/{len(times)}"
        until = calibrated_until(s["spread_skill"], times)
        stable = r["stability_horizon"]
        lines.append(
            f"| {name} | {crps} | {ssr} | {s['rmse'][leads[-1]]:.4f} | {won} | "
            f"{'–' if until == 0 else f't+{until:.2f}'} | {r['horizon']:.2f} | "
            f"{'never' if math.isinf(stable) else f'{stable:.2f}'} | {r['train_s']:.0f} |"
        )
    return "\n".join(lines)


def _plots(
    results: dict[str, dict[str, Any]],
    spectra: dict[str, torch.Tensor],
    times: list[float],
    picks: list[int],
    out: Path,
) -> None:
    """CRPS, spread–skill and RMSE per lead time; mean energy spectra at three lead times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7.2))
    for name, r in results.items():
        for ax, key in zip(axes[0], ("crps", "spread_skill", "rmse"), strict=True):
            ax.plot(times, r["scores"][key], marker="o", ms=3, label=name)
    for ax, title in zip(
        axes[0], ("fair CRPS", "spread–skill (corrected)", "RMSE of the mean"), strict=True
    ):
        ax.set_title(title)
        ax.set_xlabel("lead time")
    for ax in (axes[0][0], axes[0][2]):
        ax.set_yscale("log")
    axes[0][1].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[0][0].legend(fontsize=6)
    for ax, i in zip(axes[1], picks, strict=True):
        for name, power in spectra.items():
            style = {"color": "k", "lw": 2} if name == "truth" else {"lw": 1}
            ax.loglog(range(1, power.shape[-1]), power[i, 1:], label=name, **style)
        ax.set_title(f"mean energy spectrum, t+{times[i]:.2f}")
        ax.set_xlabel("wavenumber k")
    axes[1][0].set_ylabel("P(k)")
    axes[1][0].legend(fontsize=6)
    fig.tight_layout()
    with atomic_output(out / "lead_times.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _score(
    ens: torch.Tensor, truth: torch.Tensor, times: list[float]
) -> tuple[dict[str, Any], torch.Tensor]:
    """Every lead-time score of a rollout ``(B, M, T, C, *grid)`` and the mean spectra
    ``(T, K)`` of its first field (periodic grids)."""
    from physgen.metrics import energy_spectrum

    scores = lead_time_scores(ens, truth)
    if ens.shape[1] > 1:
        scores["spread_skill_interval"] = lead_time_ssr_interval(ens, truth, n_boot=1000)
    ndim = truth.ndim - 3
    spectrum = lead_time_spectrum_error(ens[:, :, :, 0], truth[:, :, 0], spatial_dims=ndim)
    _, power = energy_spectrum(ens[:, :, :, 0], spatial_dims=ndim)
    entry = {
        "scores": scores,
        "spectrum_lsd": spectrum,
        "horizon": correlation_horizon(scores["correlation"], times),
        "stability_horizon": stability_horizon(spectrum["value"], spectrum["floor"], times),
    }
    return entry, power.mean((0, 1))


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
    valid, _ = _trajectories(files["valid"], cfg["stride"])
    test, dt_frame = _trajectories(files["test"], cfg["stride"])
    k = cfg["history"]
    pairs = TrajectoryPairs(train, k, target=cfg["target"])
    settings = pairs.describe()
    frames = test[: cfg["n_test"]].transpose(1, 2)  # (B, T, C, *grid)
    valid_frames = valid[: cfg["n_valid"]].transpose(1, 2)
    steps = frames.shape[1] - k
    times = [dt_frame * (j + 1) for j in range(steps)]
    truth = frames[:, k:]
    results: dict[str, dict[str, Any]] = {}
    spectra: dict[str, torch.Tensor] = {}

    def record(name: str, ens: torch.Tensor, train_s: float, **extra: Any) -> None:
        entry, spectra[name] = _score(ens, truth, times)
        results[name] = {**entry, "train_s": train_s, **extra}
        crps = entry["scores"]["crps"]
        print(f"{name}: CRPS {crps[0]:.4f} → {crps[-1]:.4f}", flush=True)

    def run(name: str, emulator: Emulator, train_s: float, inflation: float = 1.0) -> torch.Tensor:
        start = time.perf_counter()
        ens = rollout(emulator, frames[:, :k], steps, cfg["members"], seed=1, inflation=inflation)
        record(name, ens, train_s, inflation=inflation, rollout_s=time.perf_counter() - start)
        return ens

    calibration: dict[str, Any] = {}

    def calibrate(
        label: str, emulator: Emulator, ens: torch.Tensor, train_s: float, grid: bool = True
    ) -> None:
        """The inflation row (λ from the grid, if ``grid``) and the spread-factor row s(t),
        both chosen on the validation trajectories only."""
        lam, misfit, valid_ens = _calibrate(emulator, valid_frames, cfg, grid)
        calibration[label] = {"inflation": lam, "mean_abs_log_ssr": misfit}
        if lam != 1.0:
            run(f"{label}, λ = {lam:g}", emulator, train_s, inflation=lam)
        spread = _spread_calibration(valid_ens, valid_frames[:, k:], times, cfg)
        if spread is not None:
            cal = spread.pop("calibration")
            calibration[label]["spread"] = {**spread, **cal.to_dict()}
            record(
                f"{label}, s(t)", cal.apply(ens, times), train_s, spread_factors=spread["factors"]
            )

    for family, label in GENERATIVE:
        emulator, train_s = _train(pairs, cfg, family)
        print(f"trained {label} in {train_s:.0f} s", flush=True)
        calibrate(label, emulator, run(label, emulator, train_s), train_s)
    emulator, train_s = _train(pairs, cfg, "regressor")
    run("deterministic U-Net", emulator, train_s)
    corrective, residual_s = _train_residual(pairs, cfg, emulator.model)
    print(f"trained {RESIDUAL} in {residual_s:.0f} s", flush=True)
    total_s = train_s + residual_s  # the regressor's training is part of its cost
    calibrate(RESIDUAL, corrective, run(RESIDUAL, corrective, total_s), total_s)
    for n in cfg.get("rollout_residuals", []):
        label = f"{RESIDUAL}, {n}-step residuals"
        rolled, rolled_s = _train_residual(pairs, cfg, emulator.model, n)
        print(f"trained {label} in {rolled_s:.0f} s", flush=True)
        total_s = train_s + rolled_s
        calibrate(label, rolled, run(label, rolled, total_s), total_s, grid=False)
    run("persistence", Emulator(persistence_model(settings), settings), 0.0)
    climate = train[:, :, k:].transpose(1, 2).flatten(0, 1)
    run("climatology", Emulator(climatology_model(climate, settings), settings), 0.0)
    spectra["truth"] = _score(truth[:, None], truth, times)[1]
    leads = sorted({0, steps // 4, steps // 2, steps - 1})
    table = _table(results, leads, times, "deterministic U-Net")
    report = {"config": cfg, "lead_times": times, "calibration": calibration, "results": results}
    write_json_atomic(nonfinite_to_none(report), out / "results.json")
    with atomic_output(out / "results.md") as tmp:
        Path(tmp).write_text(table + "\n")
    _plots(results, spectra, times, [0, steps // 2, steps - 1], out)
    print(f"\n{table}\n\nwrote {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
