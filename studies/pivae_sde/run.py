"""PI-VAE on the 1-D stochastic elliptic problem, against the official code's anchors.

Trains physgen's PI-VAE (`physgen.models.pivae.SDEPIVAE`) on sensor readings of the
``sde1d`` problem for the forward, mixed and inverse sensor sets, in flux form and with the
paper's u and k decoders, over several seeds; evaluates u/k mean and total-std errors with the
PI-VAE code's definitions, the discrete PDE residual of decoded fields against the data's
floor and the wall time, and writes ``results.json`` and ``results.md`` (atomically, after
every row) under ``runs/pivae_sde[-quick]/``; rerunning with the same settings keeps the
finished rows. Ablation (forward task): the synthetic-latent physics term off (α2 = 0),
Z_syn by plain N(0, I) instead of a Latin hypercube, no physics terms, the integrated-f MMD
term, latent 16. ``--rows pigan`` adds PI-WGAN at equal epochs."""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from physgen.data.atomic import atomic_output, write_json_atomic
from physgen.models.pivae import SDEPIVAE, evaluate_sde, sensor_data
from physgen.paths import load_module_from_path, runs_root
from physgen.problem import Problem, load
from physgen.training import fit
from physgen.utils import seed_everything

__all__ = ["ANCHORS", "MODEL", "coupling_report", "main", "train_model", "train_row"]

_HERE = Path(__file__).resolve().parent
_pigan = load_module_from_path(_HERE / "pigan_row.py", "physgen_study_pivae_sde_pigan_row")
_coupling = load_module_from_path(_HERE / "coupling.py", "physgen_study_pivae_sde_coupling")

# The official code (WeihengZ/PI-VAE) run on this kind of machine, forward task, 2000 samples,
# batch 1000, Adam 1e-3 (0.5, 0.9): (u-mean, u-std, k-mean, k-std) errors at an epoch count.
ANCHORS: list[tuple[str, int, tuple[float, float, float, float]]] = [
    ("official code, run 1", 100, (0.070, 0.081, 0.107, 0.293)),
    ("official code, run 2", 100, (0.086, 0.055, 0.160, 0.272)),
    ("official code, run 2", 200, (0.027, 0.031, 0.111, 0.129)),
    ("official code, run 2", 400, (0.074, 0.033, 0.062, 0.032)),
]

# physgen's PI-VAE: the paper's encoder, MMD losses and f by autograd, with Chebyshev
# coordinate decoders of the flux q = k u' and of log k (u = ∫ q/k, f̂ = −c q'), an
# unconstrained encoder variance, k compared as log k in the MMD, and Zhu et al.'s boundary
# physics on reconstructions (α1) and on a Latin-hypercube Z_syn (α2) after a VAE stage.
MODEL: dict[str, Any] = {
    "form": "flux",
    "latent_dim": 8,
    "width": 128,
    "depth": 3,
    "decoder": "chebyshev",
    "degree": 16,
    "k_transform": "exp",
    "encoder_logvar": "linear",
    "mmd_k": "log",
    "kernel_num": 7,
    "alpha1": 10.0,
    "alpha2": 10.0,
    "n_syn": 2000,
    "syn_sampling": "lhs",
}
TRAIN: dict[str, Any] = {"batch_size": 200, "lr": 3e-3, "betas": (0.9, 0.999)}
# The rows run per task and seed: physgen's configuration with u(1) = 0 exact, the same with
# u(1) = 0 left to the data and Zhu et al.'s terms (the ablation's base), and the model with
# the paper's u and k decoders (f̂ = −c(k u')'), raw k in the MMD and Adam 2e-3.
VARIANTS: dict[str, dict[str, Any]] = {
    "physgen PI-VAE (flux form, exact walls)": {"exact_boundary": True},
    "physgen PI-VAE (flux form)": {},
    "physgen PI-VAE, paper's u and k decoders": {
        "form": "u",
        "mmd_k": "k",
        "train": {"lr": 2e-3},
    },
}
ABLATIONS: dict[str, dict[str, Any]] = {
    "α2 = 0 (physics on reconstructions only)": {"alpha2": 0.0},
    "Z_syn ~ N(0, I) instead of Latin hypercube": {"syn_sampling": "normal"},
    "no physics terms (α1 = α2 = 0)": {"alpha1": 0.0, "alpha2": 0.0},
    "MMD on twice-integrated f added (forcing_integrals = 2)": {"forcing_integrals": 2},
    "latent dimension 16": {"latent_dim": 16},
}


def train_model(
    problem: Problem,
    fields: torch.Tensor,
    task: str,
    epochs: int,
    seed: int = 0,
    pretrain_epochs: int = 10,
    train: dict[str, Any] | None = None,
    **overrides: Any,
) -> tuple[SDEPIVAE, float]:
    """Train one PI-VAE on ``task``'s sensors for ``epochs``; return it and the seconds taken.

    ``overrides`` replace entries of `MODEL`, ``train`` entries of `TRAIN`.
    """
    data, coords = sensor_data(problem, fields, task)
    options = {**TRAIN, **(train or {})}
    steps_per_epoch = len(data) // options["batch_size"]
    config = {**MODEL, **overrides}
    config.setdefault("pretrain_steps", min(pretrain_epochs, epochs // 2) * steps_per_epoch)
    seed_everything(seed)
    model = SDEPIVAE(u_sensors=coords["u"], k_sensors=coords["k"], f_sensors=coords["f"], **config)
    start = time.perf_counter()
    fit(model, data, epochs=epochs, schedule="cosine", seed=seed, progress=False, **options)
    return model, time.perf_counter() - start


def train_row(
    problem: Problem, fields: torch.Tensor, task: str, epochs: int, seed: int = 0, **kwargs: Any
) -> dict[str, Any]:
    """`train_model`, then the metrics row of the trained model (`evaluate_sde`)."""
    model, train_s = train_model(problem, fields, task, epochs, seed, **kwargs)
    row = {"task": task, "epochs": epochs, "seed": seed, "train_s": round(train_s, 1)}
    return {**row, **evaluate_sde(model, problem, fields, seed=seed)}


def coupling_report(
    problem: Problem, fields: torch.Tensor, epochs: int, seed: int, out: Path
) -> str:
    """Forward task, both forms: u spread of re-solved (k, f) pairs and f̂'s fidelity.

    Written to ``coupling.md`` and ``coupling.json`` in ``out``.
    """
    lines = [
        f"Forward task, {epochs} epochs, seed {seed}; 1000 decodings against 1000 data samples. "
        "u rows: total std of u (every second node); `solve` = the generator's tridiagonal "
        "solver. f̂ rows: see `coupling.py`.\n",
        "| quantity | " + " | ".join(VARIANTS) + " |",
        "|---|" + "---|" * len(VARIANTS),
    ]
    tables = {}
    for method, overrides in VARIANTS.items():
        model, _ = train_model(problem, fields, "forward", epochs, seed, **overrides)
        tables[method] = _coupling.coupling_table(model, problem, fields, seed=seed)
    for name in next(iter(tables.values())):
        cells = " | ".join(
            f"{t[name]:.3f}" if abs(t[name]) >= 0.01 else f"{t[name]:.1e}" for t in tables.values()
        )
        escaped = name.replace("|", r"\|")  # a bar inside a cell would split it
        lines.append(f"| {escaped} | {cells} |")
    text = "\n".join(lines) + "\n"
    write_json_atomic(tables, out / "coupling.json")
    with atomic_output(out / "coupling.md") as tmp:
        tmp.write_text(text)
    return text


_METRICS = ("u_mean_err", "u_std_err", "k_mean_err", "k_std_err", "residual", "boundary", "train_s")


def _row(name: str, task: str, epochs: int, seed: str, values: dict[str, float]) -> str:
    errs = " | ".join(f"{values[k]:.3f}" for k in _METRICS[:4])
    return (
        f"| {name} | {task} | {epochs} | {seed} | {errs} | {values['residual']:.1e} "
        f"| {values['boundary']:.1e} | {values['train_s']:.0f} |"
    )


def _table(rows: list[dict[str, Any]], floor: dict[str, float]) -> str:
    """Markdown table: anchors, then each row, then the mean of every multi-seed group."""
    head = (
        "| method | task | epochs | seed | u-mean | u-std | k-mean | k-std | residual (rel.) "
        "| \\|u(±1)\\| | train s |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for name, epochs, errs in ANCHORS:
        cells = " | ".join(f"{e:.3f}" for e in errs)
        lines.append(f"| {name} | forward | {epochs} | – | {cells} | – | – | – |")
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["task"], r["epochs"]), []).append(r)
    for (method, task, epochs), group in groups.items():
        for r in group:
            lines.append(_row(method, task, epochs, str(r.get("seed", "–")), r))
        if len(group) > 1:
            mean = {k: sum(r[k] for r in group) / len(group) for k in _METRICS}
            lines.append(_row(f"**{method}, mean**", task, epochs, f"{len(group)} seeds", mean))
    note = (
        f"\nData floor of the relative residual (median over the reference set): "
        f"{floor['float64']:.1e} in float64, {floor['float32']:.1e} in float32.\n"
    )
    return head + "\n".join(lines) + "\n" + note


def _row_key(
    method: str, task: str, epochs: int, seed: int, samples: int, overrides: dict[str, Any]
) -> str:
    """Fingerprint of the settings a row's numbers depend on (task, seed, configuration)."""
    settings = [method, task, epochs, seed, samples, MODEL, TRAIN, overrides]
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def _previous_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of an earlier run in ``path`` that carry a fingerprint (none if absent)."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())["rows"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a results file of this study ({err}); move it away") from err
    return [r for r in rows if isinstance(r, dict) and "key" in r]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="physgen run pivae_sde", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="forward task, 30 epochs")
    parser.add_argument("--epochs", type=int, default=None, help="default 100 (quick: 30)")
    parser.add_argument("--tasks", nargs="+", default=None, help="forward mixed inverse")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2, 3, 4],
        help="seeds of the main rows (default 0 1 2 3 4)",
    )
    parser.add_argument(
        "--ablation-seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds of the ablation rows (default: the first of --seeds)",
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=("main", "ablation", "pigan", "coupling"),
        default=("main", "ablation"),
        help="rows to run: both PI-VAE forms per task and seed, the forward ablation, "
        "PI-WGAN, the u-spread decomposition of both forms (default: main ablation)",
    )
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
    # Rows of an interrupted run with the same settings are kept, not recomputed.
    done = {r["key"]: r for r in _previous_rows(out / "results.json")}

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        write_json_atomic({"floor": floor, "rows": rows}, out / "results.json")
        with atomic_output(out / "results.md") as tmp:
            tmp.write_text(_table(rows, floor))

    def run_row(method: str, task: str, seed: int, overrides: dict[str, Any]) -> None:
        key = _row_key(method, task, epochs, seed, args.samples, overrides)
        row = done.get(key)
        if row is None:  # not finished by an earlier run with the same settings
            row = {"method": method, **train_row(problem, fields, task, epochs, seed, **overrides)}
            row["key"] = key
        record(row)

    for task in tasks if "main" in args.rows else ():
        for method, overrides in VARIANTS.items():
            for seed in args.seeds:
                run_row(method, task, seed, overrides)
    if "ablation" in args.rows and "forward" in tasks:
        for name, overrides in ABLATIONS.items():
            for seed in args.ablation_seeds or args.seeds[:1]:
                run_row(f"ablation: {name}", "forward", seed, overrides)
    if "pigan" in args.rows:
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
    if "coupling" in args.rows:
        print(coupling_report(problem, fields, epochs, args.seeds[0], out))
    print(_table(rows, floor))
    print(f"results: {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
