"""Translation study: coarse → fine Darcy pressure, paired and unpaired, and filling gaps in it.

Paired and unpaired parts (``coarse_fine.py``): the pressure of a coarse solve (permeability
averaged over 4 × 4 blocks, 8² cells, upsampled bicubically) translated to the fine solve
(32² cells). Paired: bicubic, a U-Net regressor, pix2pix, a CVAE and conditional diffusion,
scored by rel. L2, fair CRPS, spectrum LSD (with its floor) and the Darcy residual (with the
truth's). Unpaired: CycleGAN against the identity map and the paired pix2pix, on distribution
metrics with their floors and on the residual.

Inpainting tasks on ``darcy-32`` (FNO Darcy flow, 32² cells; the pressure u alone is observed):

* ``inpaint:u:random0.3`` — 30 % of the pixels missing at random;
* ``inpaint:u:box`` — a centred 16 × 16 box missing (25 % of the grid).

Methods: an unconditional diffusion prior of u guided by the observed pixels (ΠGDM likelihood
with the isotropic Jacobian), a conditional diffusion model trained on pairs (u, observed
values and mask), the harmonic (Laplace) fill and kriging (Matérn-5/2 Gaussian process with
its length scale by maximum likelihood, sampled from its conditional Gaussian), and conditional
diffusion of the error of a fill (harmonic, or the kriging mean with one length scale) given the
fill and the mask, whose members are the fill plus the drawn error (CorrDiff's split), as drawn
and with their spread inflated by the scalar that calibrates it on validation cases; around
the kriging mean also with the spread shaped point by point by the kriging posterior standard
deviation and then scaled by the scalar that calibrates it on validation cases.

Scores on the missing pixels only, physical units: relative L2 of the ensemble mean, fair
CRPS, corrected spread–skill (1 = calibrated) with its 90 % bootstrap interval over the test
cases, and the relative Darcy residual of the completed field (true permeability, completed
pressure) over the ground truth's. A point forecast (the
harmonic fill) has CRPS = MAE and no spread.

Usage: ``physgen run translation -- --quick`` (CPU, minutes) or without ``--quick`` (GPU);
``--parts paired unpaired inpaint`` picks parts (the unpaired part's upper bound is the paired
part's pix2pix).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from physgen.data import FieldDataset, load_stats
from physgen.inverse import (
    ScorePrior,
    complete_residual,
    harmonic_fill,
    kriging,
    missing_region_scores,
    parse_task,
    solve,
    spread_inflation,
    spread_skill_interval,
)
from physgen.models.base import available_models
from physgen.paths import load_module_from_path
from physgen.problem import load
from physgen.recipes import load_recipe, make_dataset
from physgen.study import study_setup, write_results

__all__ = ["CONFIGS", "PARTS", "main"]

coarse_fine = load_module_from_path(
    Path(__file__).with_name("coarse_fine.py"), "physgen_study_translation_coarse_fine"
)
PARTS = ("paired", "unpaired", "inpaint")

TASKS = ("inpaint:u:random0.3", "inpaint:u:box")
FIELDS = ("a", "u")

CONFIGS: dict[str, dict[str, Any]] = {
    # CPU in minutes: small nets, 32 test cases × 8 members (64 validation cases choose the
    # spread factors), one training budget for every diffusion model.
    "quick": {
        "n_train": 1000, "n_test": 32, "n_val": 64, "members": 8, "batch_size": 16, "device": "cpu",
        "steps": 600, "lr": 2e-3, "diffusion": {"channels": [16, 32], "blocks": 1},
        "sampling_steps": 50,
        "paired": {"n_test": 64, "n_ref": 64, "coarsen": 4, "channels": [16, 32],
                   "critic": [16, 32], "latent": 16, "cyclegan": {"residual": True}},
    },
    # One GPU: 100 test cases × 32 members, models trained longer.
    "full": {
        "n_train": 1000, "n_test": 100, "n_val": 100, "members": 32, "batch_size": 64,
        "device": "cuda",
        "steps": 30000, "lr": 2e-4, "diffusion": {"channels": [64, 128, 128], "blocks": 2},
        "sampling_steps": 250,
        "paired": {"n_test": 100, "n_ref": 100, "coarsen": 4, "channels": [64, 128, 128],
                   "critic": [64, 128, 256], "latent": 64, "cyclegan": {"residual": True}},
    },
}  # fmt: skip


def _data(cfg: dict[str, Any]) -> dict[str, Any]:
    """z-scored u (train, validation, test), test (a, u) in physical units, the u statistics,
    problem."""
    recipe = load_recipe("darcy-32")
    files = make_dataset(recipe, progress=False)
    stats = load_stats(files["stats"])
    train = FieldDataset(files["train"], list(FIELDS), stats=stats)
    test = FieldDataset(files["test"], list(FIELDS), stats=stats)
    valid = FieldDataset(files["valid"], list(FIELDS), stats=stats)
    x_train = torch.stack([train[i] for i in range(min(cfg["n_train"], len(train)))])
    x_test = torch.stack([test[i] for i in range(min(cfg["n_test"], len(test)))])
    x_val = torch.stack([valid[i] for i in range(min(cfg["n_val"], len(valid)))])
    norm = train.normalizer
    assert norm is not None
    return {
        "train": x_train[:, 1:],
        "valid": x_val[:, 1:],
        "test": x_test[:, 1:],
        "phys": norm.denormalize(x_test.double()),  # (B, 2, 32, 32)
        "mean": float(norm.mean.flatten()[1]),
        "scale": float(norm.scale.flatten()[1]),
        "problem": load(recipe.problem, **recipe.params),
    }


def _residual(data: dict[str, Any], u: Tensor) -> float:
    """Mean relative Darcy residual of (true a, completed u) over the ground truth's."""
    phys = data["phys"]
    m = u.shape[1]
    a = phys[:, None, :1].expand(-1, m, -1, -1, -1)
    fields = torch.cat([a, u], dim=2).flatten(0, 1)  # (B·M, 2, *grid)
    floor = data["problem"].relative_residual(phys).mean()
    return float(data["problem"].relative_residual(fields).mean() / floor)


def _row(
    method: str, data: dict[str, Any], u: Tensor, missing: Tensor, seconds: float
) -> dict[str, Any]:
    """Scores of completed pressure members ``u`` (B, M, 1, *grid) in physical units."""
    truth = data["phys"][:, 1:]
    if u.shape[1] == 1:  # a point forecast: CRPS = MAE, no spread
        err = (u[:, 0] - truth)[..., missing]
        rel = err.flatten(1).norm(dim=1) / truth[..., missing].flatten(1).norm(dim=1)
        scores = {
            "crps": float(err.abs().mean()),
            "spread_skill": None,
            "rel_l2": float(rel.mean()),
        }
    else:
        scores = missing_region_scores(u, truth, missing)
        scores["ssr_interval"] = spread_skill_interval(u, truth, missing)
    return {
        "method": method,
        **scores,
        "residual_over_floor": _residual(data, u),
        "seconds": seconds,
    }


def _harmonic(task: Any, data: dict[str, Any]) -> Callable[[Tensor], Tensor]:
    """The harmonic fill of z-scored fields ``(B, 1, *grid)``."""
    missing, spacing = task.operator.missing.numpy(), data["problem"].grid.spacing
    return lambda u: torch.as_tensor(harmonic_fill(u.double().numpy(), missing, spacing=spacing))


def _kriging(task: Any, data: dict[str, Any]) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """The kriging mean and posterior standard deviation (zero where observed) of z-scored
    fields ``(B, 1, *grid)`` with one Matérn length scale for every field: the median of the
    maximum-likelihood ones of 16 training fields (a per-field fit would cost a likelihood
    search for each of the training cases)."""
    missing, mesh = task.operator.missing.numpy(), data["problem"].grid.mesh()
    fits = [kriging(u[0].double().numpy(), missing, mesh) for u in data["train"][:16]]
    length = float(np.median([f.length_scale for f in fits]))

    def fill(u: Tensor) -> tuple[Tensor, Tensor]:
        mean = u.double().clone()
        sd = torch.zeros_like(mean)
        for b in range(len(u)):
            fit = kriging(u[b, 0].double().numpy(), missing, mesh, length_scale=length)
            mean[b, 0][task.operator.missing] = torch.as_tensor(fit.mean)
            sd[b, 0][task.operator.missing] = torch.as_tensor(fit.std)
        return mean, sd

    return fill


def _kriging_mean(task: Any, data: dict[str, Any]) -> Callable[[Tensor], Tensor]:
    """The kriging mean of :func:`_kriging`."""
    fits = _kriging(task, data)
    return lambda u: fits(u)[0]


def _shape_by(sd: Tensor, r: Tensor, missing: Tensor) -> Tensor:
    """The inflation field σ(x) / ρ_b that gives the drawn residuals ``r`` (B, M, 1, *grid)
    the spatial profile of ``sd`` (B, 1, *grid): ρ_b is the root-mean-square member spread
    of case b over the missing points, so the members' pointwise spread becomes
    σ(x)·spread_b(x)/ρ_b before the scalar validation factor."""
    rho = r[..., missing].var(1, correction=1).flatten(1).mean(1).sqrt()  # (B,)
    return sd / rho.clamp_min(1e-300).reshape(-1, *[1] * (sd.ndim - 1))


def _residual_rows(
    name: str, fill: Callable[[Tensor], Tensor], task: Any, data: dict[str, Any], y: Tensor,
    cfg: dict[str, Any], sd: Callable[[Tensor], Tensor] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Conditional diffusion of a fill's error r = u − f given (f, mask), learnt as in residual
    super-resolution (CorrDiff); the members are f + r on the gap and the observations
    elsewhere (:func:`complete_residual`). Rows: as drawn, and with the spread inflated by
    the scalar that calibrates it on the validation cases; with ``sd`` (a posterior standard
    deviation field of z-scored fields) also with the spread shaped by it (:func:`_shape_by`)
    and then scaled by the scalar that calibrates that on the validation cases."""
    op, missing = task.operator, task.operator.missing

    def cond(u: Tensor) -> tuple[Tensor, Tensor]:
        f = fill(u)
        mask = op.observed.double().expand(len(f), 1, *op.grid_shape)
        return f, torch.cat([f, mask], 1).float()

    f_train, c_train = cond(data["train"])
    r_train = data["train"].double() - f_train  # zero where observed
    r_scale = float(r_train[..., missing].std())
    torch.manual_seed(0)
    model = available_models()["diffusion"](
        task.target_shape, tuple(c_train.shape[1:]), **cfg["diffusion"]
    )
    train_s = coarse_fine.train(model, ((r_train / r_scale).float(), c_train), cfg)
    options = {"sampler": "ddpm", "steps": cfg["sampling_steps"]}

    def draw(u: Tensor) -> tuple[Tensor, Tensor]:
        f, c = cond(u)
        r = coarse_fine.draw_members(model, c.to(cfg["device"]), cfg["members"], options)
        return f, r_scale * r

    start = time.perf_counter()
    f_test, r_test = draw(data["test"])
    drawn = complete_residual(op, y.double(), f_test, r_test)
    seconds = time.perf_counter() - start
    y_val = task.observe(data["valid"].double())
    f_val, r_val = draw(data["valid"])
    val = complete_residual(op, y_val, f_val, r_val)
    s = spread_inflation(val, data["valid"], missing)
    inflated = complete_residual(op, y.double(), f_test, r_test, inflation=s)
    phys = lambda z: z * data["scale"] + data["mean"]  # noqa: E731
    rows = [
        {**_row(name, data, phys(drawn), missing, seconds), "train_s": train_s},
        {**_row(f"{name}, spread × {s:.2g} (validation)", data, phys(inflated), missing,
                seconds), "train_s": train_s, "inflation": s},
    ]  # fmt: skip
    if sd is not None:
        w_val = _shape_by(sd(data["valid"]), r_val, missing)
        shaped_val = complete_residual(op, y_val, f_val, r_val, inflation=w_val)
        k = spread_inflation(shaped_val, data["valid"], missing)
        w_test = k * _shape_by(sd(data["test"]), r_test, missing)
        shaped = complete_residual(op, y.double(), f_test, r_test, inflation=w_test)
        rows.append({**_row(f"{name}, spread ∝ kriging sd (× {k:.2g}, validation)", data,
                            phys(shaped), missing, seconds),
                     "train_s": train_s, "inflation": k})  # fmt: skip
    return rows


def run_task(
    spec: str, data: dict[str, Any], cfg: dict[str, Any], prior: Any, prior_s: float
) -> list[dict[str, Any]]:
    """Every row of one inpainting task."""
    problem = data["problem"]
    task = parse_task(spec, ("u",), problem.grid, seed=0)
    op = task.operator
    missing = op.missing
    y = task.observe(data["test"].double()).float()  # z-scored observed pixels
    phys = lambda z: z.double() * data["scale"] + data["mean"]  # noqa: E731
    truth = data["phys"][:, 1:]  # (B, 1, *grid)
    rows = []
    start = time.perf_counter()
    filled = harmonic_fill(truth.numpy(), missing.numpy(), spacing=problem.grid.spacing)
    rows.append(_row("harmonic fill", data, torch.as_tensor(filled)[:, None], missing,
                     time.perf_counter() - start))  # fmt: skip
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    members = truth[:, None].repeat(1, cfg["members"], 1, 1, 1).numpy()
    for b in range(truth.shape[0]):
        fit_b = kriging(truth[b, 0].numpy(), missing.numpy(), problem.grid.mesh())
        members[b, :, 0][:, missing.numpy()] = fit_b.sample(cfg["members"], rng)
    rows.append(_row("kriging (Matérn-5/2 GP)", data, torch.as_tensor(members), missing,
                     time.perf_counter() - start))  # fmt: skip
    if prior is not None:
        start = time.perf_counter()
        ens = solve(
            ScorePrior(prior.sde, lambda x, t: prior.score(x, t)), task, y.to(cfg["device"]),
            cfg["members"], sampler="ddpm", steps=cfg["sampling_steps"], covariance="isotropic",
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        completed = op.complete(y[:, None].to(ens), ens.detach()).cpu()  # observed pixels kept
        row = _row("guided diffusion", data, phys(completed), missing, time.perf_counter() - start)
        rows.append({**row, "train_s": prior_s})
        family = available_models()["diffusion"]
        targets, conds = task.pairs(data["train"].double())
        torch.manual_seed(0)
        model = family(task.target_shape, tuple(conds.shape[1:]), **cfg["diffusion"])
        train_s = coarse_fine.train(model, (targets.float(), conds.float()), cfg)
        start = time.perf_counter()
        with torch.no_grad():
            options = {"sampler": "ddpm", "steps": cfg["sampling_steps"]}
            ens = solve(model, task, y.to(cfg["device"]), cfg["members"], sample_options=options)
        completed = op.complete(y[:, None].to(ens), ens.detach()).cpu()
        row = _row("conditional diffusion", data, phys(completed), missing,
                   time.perf_counter() - start)  # fmt: skip
        rows.append({**row, "train_s": train_s})
        rows += _residual_rows(
            "conditional diffusion on the harmonic fill", _harmonic(task, data), task, data, y, cfg
        )
        kriged = _kriging(task, data)
        rows += _residual_rows("conditional diffusion on the kriging mean",
                               lambda u: kriged(u)[0], task, data, y, cfg,
                               sd=lambda u: kriged(u)[1])  # fmt: skip
    for row in rows:
        row["missing_fraction"] = float(missing.double().mean())
    return rows


def _interval(row: dict[str, Any]) -> str:
    """`` (lo–hi)``: the bootstrap interval of a row's spread–skill, if it has one."""
    if row.get("ssr_interval") is None:
        return ""
    lo, hi = row["ssr_interval"]
    return f" ({lo:.2f}–{hi:.2f})"


def _table(results: dict[str, list[dict[str, Any]]]) -> str:
    head = (
        "| task | method | missing | rel. L2 (mean, missing) | fair CRPS (missing) | "
        "spread–skill (90 % interval) | residual / floor | train s | fill s |"
    )
    lines = [head, "|" + "---|" * 9]
    fmt = lambda v, p=3: "–" if v is None else f"{v:.{p}g}"  # noqa: E731
    for spec, rows in results.items():
        for r in rows:
            lines.append(
                f"| {spec} | {r['method']} | {r['missing_fraction']:.3g} | {fmt(r['rel_l2'])} | "
                f"{fmt(r['crps'])} | {fmt(r['spread_skill'])}{_interval(r)} | "
                f"{fmt(r['residual_over_floor'])} | {fmt(r.get('train_s'))} | "
                f"{fmt(r['seconds'])} |"
            )
    return "\n".join(lines)


def _fmt(v: float | None, p: int = 3) -> str:
    return "–" if v is None else f"{v:.{p}g}"


def paired_table(rows: list[dict[str, Any]]) -> str:
    """The paired part's table."""
    lines = [
        "| method | rel. L2 (mean) | fair CRPS | spectrum LSD (floor) | residual (floor) | "
        "train s |",
        "|" + "---|" * 6,
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {_fmt(r['rel_l2'])} | {_fmt(r['crps'])} | "
            f"{_fmt(r['lsd'])} ({_fmt(r['lsd_floor'], 2)}) | {_fmt(r['residual'])} "
            f"({_fmt(r['residual_floor'], 2)}) | {_fmt(r['train_s'])} |"
        )
    return "\n".join(lines)


def unpaired_table(rows: list[dict[str, Any]]) -> str:
    """The unpaired part's table: distribution metrics (floors), rel. L2 and residual."""
    names = list(coarse_fine.DISTRIBUTION_METRICS)
    heads = {"mean_err": "mean-field err.", "std_err": "std-field err.", "lsd": "spectrum LSD",
             "w1": "pointwise W1", "energy": "energy distance"}  # fmt: skip
    lines = [
        "| method | "
        + " | ".join(f"{heads[n]} (floor)" for n in names)
        + " | rel. L2 (paired) | residual | train s |",
        "|" + "---|" * (len(names) + 4),
    ]
    for r in rows:
        cells = [f"{_fmt(r[n]['value'])} ({_fmt(r[n]['floor'], 2)})" for n in names]
        lines.append(
            f"| {r['method']} | "
            + " | ".join(cells)
            + f" | {_fmt(r['rel_l2'])} | {_fmt(r['residual'])} | {_fmt(r['train_s'])} |"
        )
    return "\n".join(lines)


def run_coarse_fine(cfg: dict[str, Any], parts: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The paired and unpaired parts: their rows and tables."""
    sub = {**cfg, **cfg["paired"]}
    data = coarse_fine.load_coarse_fine(sub)
    results: dict[str, Any] = {}
    tables = []
    upper = None
    if "paired" in parts:
        results["paired"], upper = coarse_fine.paired_rows(data, sub)
        tables.append("### Paired: coarse → fine\n\n" + paired_table(results["paired"]))
        print(tables[-1], flush=True)
    if "unpaired" in parts:
        results["unpaired"] = coarse_fine.unpaired_rows(data, sub, upper)
        tables.append("### Unpaired: coarse → fine\n\n" + unpaired_table(results["unpaired"]))
        print(tables[-1], flush=True)
    return results, tables


def main(argv: list[str] | None = None) -> int:
    """Run the study; write ``results.json`` and ``results.md`` under ``runs/``."""
    cfg, out = study_setup("translation", __doc__, CONFIGS, argv, parts=PARTS)
    torch.manual_seed(0)
    results, tables = run_coarse_fine(cfg, cfg["parts"])
    if "inpaint" not in cfg["parts"]:
        write_results(out, cfg, results, "\n\n".join(tables))
        return 0
    data = _data(cfg)
    prior, prior_s = None, 0.0
    if "diffusion" in available_models():
        prior = available_models()["diffusion"](
            tuple(data["train"].shape[1:]), None, **cfg["diffusion"]
        )
        prior_s = coarse_fine.train(prior, data["train"], cfg)
    inpainting = {}
    for spec in TASKS:
        inpainting[spec] = run_task(spec, data, cfg, prior, prior_s)
        print(_table({spec: inpainting[spec]}), flush=True)
    results["inpaint"] = inpainting
    tables.append("### Inpainting\n\n" + _table(inpainting))
    write_results(out, cfg, results, "\n\n".join(tables))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
