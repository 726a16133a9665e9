"""PI-VAE on the 1-D stochastic elliptic problem, against the official code's anchors.

Trains physgen's PI-VAE (`physgen.models.pivae.SDEPIVAE`) on sensor readings of the
``sde1d`` problem for the forward, mixed and inverse sensor sets, evaluates u/k mean and
total-std errors with the PI-VAE code's definitions, the discrete PDE residual of decoded
fields against the data's floor and the wall time, and writes ``results.json`` and
``results.md`` (atomically) under ``runs/pivae_sde[-quick]/``. Ablation (forward task): the
synthetic-latent physics term off (α2 = 0), Z_syn by plain N(0, I) instead of a Latin
hypercube, and no physics terms at all. ``--pigan`` adds the PI-WGAN row at equal epochs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from physgen.data.atomic import atomic_output, write_json_atomic
from physgen.metrics.distribution import mean_field_error, total_std_error
from physgen.models.pivae import SDEPIVAE
from physgen.paths import load_module_from_path, runs_root
from physgen.problem import Problem, load
from physgen.training import fit
from physgen.utils import seed_everything

__all__ = ["ANCHORS", "MODEL", "evaluate", "main", "train_row"]

_HERE = Path(__file__).resolve().parent
_pigan = load_module_from_path(_HERE / "pigan_row.py", "physgen_study_pivae_sde_pigan_row")

# The official code (WeihengZ/PI-VAE) run on this kind of machine, forward task, 2000 samples,
# batch 1000, Adam 1e-3 (0.5, 0.9): (u-mean, u-std, k-mean, k-std) errors at an epoch count.
ANCHORS: list[tuple[str, int, tuple[float, float, float, float]]] = [
    ("official code, run 1", 100, (0.070, 0.081, 0.107, 0.293)),
    ("official code, run 2", 100, (0.086, 0.055, 0.160, 0.272)),
    ("official code, run 2", 200, (0.027, 0.031, 0.111, 0.129)),
    ("official code, run 2", 400, (0.074, 0.033, 0.062, 0.032)),
]

# physgen's PI-VAE: the paper's encoder, MMD losses and f by autograd, with a Chebyshev
# coordinate decoder, positive k, an unconstrained encoder variance and Zhu et al.'s boundary
# physics on reconstructions (α1) and on a Latin-hypercube Z_syn (α2) after a VAE stage.
MODEL: dict[str, Any] = {
    "latent_dim": 8,
    "width": 128,
    "depth": 3,
    "decoder": "chebyshev",
    "degree": 16,
    "k_transform": "exp",
    "encoder_logvar": "linear",
    "alpha1": 10.0,
    "alpha2": 10.0,
    "n_syn": 2000,
    "syn_sampling": "lhs",
}
TRAIN: dict[str, Any] = {"batch_size": 200, "lr": 2e-3, "betas": (0.9, 0.999)}
ABLATIONS: dict[str, dict[str, Any]] = {
    "α2 = 0 (physics on reconstructions only)": {"alpha2": 0.0},
    "Z_syn ~ N(0, I) instead of Latin hypercube": {"syn_sampling": "normal"},
    "no physics terms (α1 = α2 = 0)": {"alpha1": 0.0, "alpha2": 0.0},
}


def evaluate(
    model: SDEPIVAE,
    problem: Problem,
    fields: torch.Tensor,
    n_eval: int = 5000,
    eval_points: int = 201,
    seed: int = 0,
) -> dict[str, float]:
    """The PI-VAE code's errors plus the discrete residual of decoded fields.

    ``n_eval`` decodings of a fixed z-set (seeded) on the problem grid; u and k compared on
    ``eval_points`` equispaced nodes with the reference ``fields`` ``(N, 3, n)`` (k, u, f):
    relative L2 error of the mean curve and relative error of the total std (the code's
    ``std_cal``). ``residual`` is the median relative residual of the decoded (k, u, f̂) under
    the generator's discrete operator; ``boundary`` the mean |u(−1)| + |u(1)|.
    """
    n_grid = problem.grid.shape[0]
    stride = (n_grid - 1) // (eval_points - 1)
    grid = torch.as_tensor(problem.grid.coords(0), dtype=torch.float32)
    z = torch.randn(n_eval, model.latent_dim, generator=torch.Generator().manual_seed(seed + 1))
    model.eval()
    gen = torch.cat([model.sample_fields(0, grid, z=chunk) for chunk in z.split(1000)])
    u_gen, k_gen = gen[:, 0, ::stride], gen[:, 1, ::stride]
    k_ref, u_ref = fields[:, 0, ::stride], fields[:, 1, ::stride]
    decoded = torch.stack([gen[:, 1], gen[:, 0], gen[:, 2]], dim=1).double()  # (k, u, f̂)
    return {
        "u_mean_err": float(mean_field_error(u_gen, u_ref)),
        "u_std_err": float(total_std_error(u_gen, u_ref)),
        "k_mean_err": float(mean_field_error(k_gen, k_ref)),
        "k_std_err": float(total_std_error(k_gen, k_ref)),
        "residual": float(problem.relative_residual(decoded).median()),
        "boundary": float(problem.constraints(decoded)["boundary"].mean()),
    }


def train_row(
    problem: Problem,
    fields: torch.Tensor,
    task: str,
    epochs: int,
    seed: int = 0,
    pretrain_epochs: int = 10,
    **overrides: Any,
) -> dict[str, Any]:
    """Train one PI-VAE on ``task``'s sensors for ``epochs`` and return its metrics row."""
    data, coords = _pigan._sensor_data(problem, fields, task)
    steps_per_epoch = len(data) // TRAIN["batch_size"]
    config = {**MODEL, **overrides}
    config.setdefault("pretrain_steps", min(pretrain_epochs, epochs // 2) * steps_per_epoch)
    seed_everything(seed)
    model = SDEPIVAE(u_sensors=coords["u"], k_sensors=coords["k"], f_sensors=coords["f"], **config)
    start = time.perf_counter()
    fit(model, data, epochs=epochs, schedule="cosine", seed=seed, progress=False, **TRAIN)
    train_s = time.perf_counter() - start
    row = {"task": task, "epochs": epochs, "seed": seed, "train_s": round(train_s, 1)}
    return {**row, **evaluate(model, problem, fields, seed=seed)}


def _table(rows: list[dict[str, Any]], floor: dict[str, float]) -> str:
    head = (
        "| method | task | epochs | u-mean | u-std | k-mean | k-std | residual (rel.) "
        "| \\|u(±1)\\| | train s |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for name, epochs, errs in ANCHORS:
        cells = " | ".join(f"{e:.3f}" for e in errs)
        lines.append(f"| {name} | forward | {epochs} | {cells} | – | – | – |")
    for r in rows:
        errs = (r["u_mean_err"], r["u_std_err"], r["k_mean_err"], r["k_std_err"])
        cells = " | ".join(f"{e:.3f}" for e in errs)
        lines.append(
            f"| {r['method']} | {r['task']} | {r['epochs']} | {cells} | {r['residual']:.1e} "
            f"| {r['boundary']:.1e} | {r['train_s']:.0f} |"
        )
    note = (
        f"\nData floor of the relative residual (median over the reference set): "
        f"{floor['float64']:.1e} in float64, {floor['float32']:.1e} in float32.\n"
    )
    return head + "\n".join(lines) + "\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="physgen run pivae_sde", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="forward task, 30 epochs")
    parser.add_argument("--epochs", type=int, default=None, help="default 100 (quick: 30)")
    parser.add_argument("--tasks", nargs="+", default=None, help="forward mixed inverse")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-ablation", action="store_true", help="skip the ablation rows")
    parser.add_argument("--pigan", action="store_true", help="add PI-WGAN at equal epochs")
    parser.add_argument("--samples", type=int, default=2000, help="training samples (2000)")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    args = parser.parse_args(argv)
    epochs = args.epochs or (30 if args.quick else 100)
    tasks = args.tasks or (["forward"] if args.quick else ["forward", "mixed", "inverse"])
    out = args.out or runs_root() / ("pivae_sde-quick" if args.quick else "pivae_sde")
    out.mkdir(parents=True, exist_ok=True)

    problem = load("sde1d")
    ds = problem.generate(args.samples, seed=0)
    fields64 = problem.to_tensor(ds)
    fields = fields64.float()
    floor = {
        "float64": float(problem.relative_residual(fields64).median()),
        "float32": float(problem.relative_residual(fields.double()).median()),
    }
    rows: list[dict[str, Any]] = []

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        write_json_atomic({"floor": floor, "rows": rows}, out / "results.json")
        with atomic_output(out / "results.md") as tmp:
            tmp.write_text(_table(rows, floor))

    for task in tasks:
        for seed in args.seeds:
            record({"method": "physgen PI-VAE", **train_row(problem, fields, task, epochs, seed)})
    if not args.no_ablation and "forward" in tasks:
        for name, overrides in ABLATIONS.items():
            for seed in args.seeds:
                row = train_row(problem, fields, "forward", epochs, seed, **overrides)
                record({"method": f"ablation: {name}", **row})
    if args.pigan:
        steps = epochs * args.samples // TRAIN["batch_size"]
        for task in tasks:
            row = _pigan.pigan_row(
                task,
                n_data=args.samples,
                steps=steps,
                batch_size=TRAIN["batch_size"],
                problem=problem,
            )
            record({**row, "epochs": epochs, "method": "PI-WGAN (physgen)"})
    print(_table(rows, floor))
    print(f"results: {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
