"""β-VAE sweep: which latent carries which generative factor of a random field, against β?

Data: 1-D Gaussian random fields on 64 nodes of [0, 1] with a squared-exponential kernel,
u(x) = μ + σ g(x), g ~ GP(0, exp(−r²/2ℓ²)), with three known factors drawn independently per
sample from 8 levels each: the length scale ℓ ∈ [0.05, 0.3], the amplitude σ ∈ [0.5, 2] and
the mean μ ∈ [−6, 6] (a configuration's ``ranges`` or ``--length-range``,
``--amplitude-range``, ``--mean-range`` changes a range). The field g itself is a nuisance
the code must also carry.

For each β an MLP VAE (Higgins et al. 2017: loss −E log p(x|z) + β KL) is trained on the
same data and budget; its posterior means μ(x) of held-out fields are scored by the mutual
information gap (Chen et al. 2018; :func:`physgen.diagnostics.mig`, 20 equal-width bins) and
the correlation of every latent with every factor. The β with the highest MIG gets a latent
traversal figure, rows labelled by the factor each latent carries most. Options change the
VAE: ``--decoder-scale`` (a decoder scale predicted from the code: per sample, per value, or
per DCT coefficient, optionally with the constant coefficient's scale learned once; the
traversal then draws fields with one shared noise draw), ``--tc-weight`` (the β-TCVAE
total-correlation penalty), ``--arch conv`` with ``--pool mean`` or ``moments`` (a
convolutional encoder and decoder, the encoder's features pooled over the grid),
``--decoder-mean constant`` (the decoder's mean one level per field), ``--latent-dim``,
``--steps``, ``--seed``. A hand-made code of three statistics (`statistics_code`) is scored
beside them.

Usage: ``physgen run beta_vae --quick`` (CPU, minutes) or without ``--quick`` (more data and
steps). Results go to ``runs/beta_vae[-quick]/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from physgen.data.atomic import atomic_output, write_json_atomic
from physgen.diagnostics import latent_factor_correlation, mig
from physgen.models.vae import VAE
from physgen.paths import runs_root
from physgen.plotting import latent_traversal
from physgen.random_fields import se_kernel
from physgen.training import fit

__all__ = ["CONFIGS", "FACTORS", "factor_fields", "main", "run_study", "statistics_code"]

FACTORS = ("length", "amplitude", "mean")
LEVELS = {"length": (0.05, 0.3), "amplitude": (0.5, 2.0), "mean": (-6.0, 6.0)}

CONFIGS: dict[str, dict[str, Any]] = {
    "quick": {
        "n_nodes": 64, "levels": 8, "n_train": 5000, "n_test": 2000, "seed": 0,
        "betas": [0.5, 1.0, 4.0, 16.0], "latent_dim": 8, "hidden": [128, 128],
        "steps": 4000, "batch_size": 128, "lr": 1e-3, "threads": 1, "bins": 20,
    },
    "full": {
        "n_nodes": 64, "levels": 8, "n_train": 20000, "n_test": 5000, "seed": 0,
        "betas": [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0], "latent_dim": 8,
        "hidden": [256, 256], "steps": 20000, "batch_size": 256, "lr": 1e-3, "threads": None,
        "bins": 20,
    },
}  # fmt: skip


def factor_fields(n: int, cfg: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fields ``(n, 1, n_nodes)`` and their factors ``(n, 3)`` (length, amplitude, mean)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, cfg["n_nodes"])
    r = np.abs(x[:, None] - x[None, :])
    ranges = {**LEVELS, **{f: tuple(r) for f, r in cfg.get("ranges", {}).items()}}
    grids = {f: np.linspace(*ranges[f], cfg["levels"]) for f in FACTORS}
    # One Cholesky factor per length level (jitter for the SE kernel's near-singular matrix).
    chol = [
        np.linalg.cholesky(se_kernel(r, ell) + 1e-6 * np.eye(len(x))) for ell in grids["length"]
    ]
    idx = rng.integers(0, cfg["levels"], (n, 3))
    factors = np.stack([grids[f][idx[:, k]] for k, f in enumerate(FACTORS)], 1)
    xi = rng.standard_normal((n, len(x)))
    g = np.stack([chol[i] @ xi[j] for j, i in enumerate(idx[:, 0])])
    u = factors[:, 2:3] + factors[:, 1:2] * g
    return u[:, None, :], factors


def statistics_code(x: np.ndarray) -> np.ndarray:
    r"""A hand-made code of fields ``(n, 1, n_nodes)``, one column per factor: the log
    roughness :math:`\log\mathrm{sd}(\Delta u) - \log\mathrm{sd}(u)`, the log spread
    :math:`\log\mathrm{sd}(u)` and the spatial mean (sd over the grid of each field).

    Its MIG is what three summary statistics of one field reach: a reference for the VAEs,
    not a bound (the statistics are neither sufficient nor disentangled).
    """
    u = x.reshape(len(x), -1)
    log_sd = np.log(u.std(1))
    return np.stack([np.log(np.diff(u, axis=1).std(1)) - log_sd, log_sd, u.mean(1)], 1)


def run_study(cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    """Train one VAE per β, score MIG and correlations; write results and the best traversal."""
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    x_train, _ = factor_fields(cfg["n_train"], cfg, cfg["seed"])
    x_test, v_test = factor_fields(cfg["n_test"], cfg, cfg["seed"] + 1)
    mean, std = x_train.mean(), x_train.std()
    train = torch.as_tensor((x_train - mean) / std, dtype=torch.float32)
    test = torch.as_tensor((x_test - mean) / std, dtype=torch.float32)
    reference = mig(statistics_code(x_test), v_test, bins=cfg["bins"])
    print(f"statistics code: MIG {reference.value:.3f} gaps {np.round(reference.gaps, 3)}")
    rows, models = [], {}
    for beta in cfg["betas"]:
        torch.manual_seed(cfg["seed"])
        model = VAE(
            train.shape[1:], latent_dim=cfg["latent_dim"], hidden=cfg["hidden"], beta=beta,
            decoder_scale=cfg.get("decoder_scale", "global"),
            tc_weight=cfg.get("tc_weight", 0.0), dataset_size=len(train),
            arch=cfg.get("arch", "mlp"), pool=cfg.get("pool", "flatten"),
            channels=cfg.get("channels", (32, 64)),
            decoder_mean=cfg.get("decoder_mean", "field"),
        )  # fmt: skip
        start = time.perf_counter()
        fit(model, train, steps=cfg["steps"], batch_size=cfg["batch_size"], lr=cfg["lr"],
            seed=cfg["seed"], progress=False, device="cpu")  # fmt: skip
        model.eval()
        with torch.no_grad():
            mu, _ = model.encode(test)
        result = mig(mu.numpy(), v_test, bins=cfg["bins"])
        corr = latent_factor_correlation(mu.numpy(), v_test)
        per_factor = lambda a: dict(zip(FACTORS, a.tolist(), strict=True))  # noqa: E731
        rows.append({
            "beta": beta, "mig": result.value, "gaps": per_factor(result.gaps),
            "best_latent": per_factor(result.best_latent), "correlation": corr.tolist(),
            "train_s": time.perf_counter() - start,
        })  # fmt: skip
        models[beta] = model
        print(f"beta={beta:g}: MIG {result.value:.3f} gaps {np.round(result.gaps, 3)}", flush=True)
    best = max(rows, key=lambda row: row["mig"])
    out.mkdir(parents=True, exist_ok=True)
    # Each row names the factor(s) its latent knows best, with the gap: a small gap means
    # the latent is only the least bad of several, not the factor's own.
    labels: dict[int, str] = {}
    for factor, latent in best["best_latent"].items():
        text = f"{factor} (gap {best['gaps'][factor]:.2f})"
        labels[latent] = f"{labels[latent]}\n{text}" if latent in labels else f"z{latent}: {text}"
    latent_traversal(
        models[best["beta"]], out / "traversal.png", dims=sorted(labels) or None, labels=labels,
        values=(-2.0, -1.0, 0.0, 1.0, 2.0), title=f"β = {best['beta']:g}, MIG {best['mig']:.2f}",
        # a decoder whose scale depends on the code: draw fields with one shared noise draw,
        # so a latent that sets their size or roughness shows it
        noise_seed=None if cfg.get("decoder_scale", "global") == "global" else cfg["seed"],
    )  # fmt: skip
    result = {
        "config": cfg, "factors": list(FACTORS), "rows": rows, "best_beta": best["beta"],
        "statistics_code": {"mig": reference.value, "gaps": reference.gaps.tolist()},
    }  # fmt: skip
    write_json_atomic(result, out / "results.json")
    with atomic_output(out / "results.md") as tmp:
        tmp.write_text(markdown(rows) + "\n", encoding="utf-8")
    return result


def markdown(rows: list[dict[str, Any]]) -> str:
    """MIG and each factor's gap and carrying latent, one row per β."""
    head = "| β | MIG | " + " | ".join(f"gap {f} (latent)" for f in FACTORS) + " |"
    lines = [head, "|---" * (len(FACTORS) + 2) + "|"]
    for row in rows:
        cells = [f"{row['gaps'][f]:.3f} (z{row['best_latent'][f]})" for f in FACTORS]
        lines.append(f"| {row['beta']:g} | {row['mig']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the sweep and print the MIG table."""
    parser = argparse.ArgumentParser(prog="physgen run beta_vae", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CPU configuration (minutes)")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--betas", type=float, nargs="+", help="override the β values")
    parser.add_argument("--steps", type=int, help="override the training steps per β")
    parser.add_argument("--latent-dim", type=int, help="override the number of latents")
    parser.add_argument("--seed", type=int, help="override the seed (data and training)")
    parser.add_argument(
        "--decoder-scale",
        choices=("global", "sample", "pixel", "spectral", "spectral_global_dc"),
        help="the Gaussian decoder's standard deviation: one for all (default) or from the code "
        "(spectral_global_dc: per DCT coefficient, the constant coefficient's scale learned once)",
    )  # fmt: skip
    parser.add_argument(
        "--tc-weight", type=float,
        help="add this multiple of the total correlation to the loss (β-TCVAE; default 0)",
    )  # fmt: skip
    parser.add_argument(
        "--arch",
        choices=("mlp", "conv"),
        help="encoder and decoder: MLP (default) or stride-2 convs",
    )
    parser.add_argument(
        "--pool", choices=("flatten", "mean", "moments"),
        help="with --arch conv: flatten the encoder's last feature map, or pool it over the grid",
    )  # fmt: skip
    parser.add_argument("--channels", type=int, nargs="+", help="conv channels per level")
    parser.add_argument(
        "--decoder-mean", choices=("field", "constant"),
        help="the decoder's mean: a field (default) or one level per field (a homogeneous law)",
    )  # fmt: skip
    for factor in FACTORS:
        parser.add_argument(
            f"--{factor}-range", type=float, nargs=2, metavar=("LO", "HI"),
            help=f"override the {factor}'s range",
        )  # fmt: skip
    args = parser.parse_args(argv)
    cfg = json.loads(json.dumps(CONFIGS["quick" if args.quick else "full"]))
    overrides = ("betas", "steps", "latent_dim", "seed", "decoder_scale", "tc_weight", "arch",
                 "pool", "channels", "decoder_mean")  # fmt: skip
    for key in overrides:
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    ranges = {f: getattr(args, f"{f}_range") for f in FACTORS}
    if any(ranges.values()):
        cfg["ranges"] = {f: r for f, r in ranges.items() if r}
    out = args.out or runs_root() / ("beta_vae-quick" if args.quick else "beta_vae")
    result = run_study(cfg, out)
    print("\n" + markdown(result["rows"]))
    print(f"wrote {out / 'results.md'}, results.json and traversal.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
