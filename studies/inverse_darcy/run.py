"""Inverse Darcy study: colorization both ways and 4× super-resolution, as probabilistic prediction.

Tasks on ``darcy-32`` (FNO Darcy flow, 32² cells, fields a = permeability, u = pressure):

* ``colorize:u`` — infer pressure from permeability (the forward problem);
* ``colorize:a`` — infer permeability from pressure (the inverse problem);
* ``sr4:u`` — 4× super-resolution of pressure from 8² block means.

Methods, all through :func:`physgen.inverse.solve`: CVAE, conditional Glow, conditional
diffusion (trained on pairs ``(target, lifted observation)``), and one unconditional joint
(a, u) diffusion prior guided at sampling time (ΠGDM likelihood with the isotropic Jacobian)
without and with the Darcy residual on x̂0. Families missing from the installed registry
are skipped and named.

Scores, per task, on the target field in physical units: relative L2 of the ensemble mean,
fair CRPS, corrected spread–skill ratio, the relative Darcy residual of (observed truth,
inferred member) against the ground-truth floor, the data misfit ‖A(x̂) − y‖/‖y‖, and wall
times; beside the trivial baseline (bicubic interpolation for SR, the training mean for
colorization, scored as a point forecast: CRPS = MAE) and the ground truth.

Usage: ``physgen run inverse_darcy -- --quick`` (CPU, minutes) or without ``--quick`` (the
GPU configuration of the README).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from physgen.data import FieldDataset, load_stats
from physgen.inverse import ScorePrior, Task, parse_task, solve
from physgen.metrics import crps_fair, relative_l2, spread_skill_ratio
from physgen.models.base import GenerativeModel, available_models
from physgen.problem import load
from physgen.recipes import load_recipe, make_dataset
from physgen.study import study_setup, write_results
from physgen.training import fit

__all__ = ["CONFIGS", "main"]

TASKS = ("colorize:u", "colorize:a", "sr4:u")
FIELDS = ("a", "u")
CONDITIONAL = (
    ("cvae", "CVAE"),
    ("glow", "conditional Glow"),
    ("diffusion", "conditional diffusion"),
)

CONFIGS: dict[str, dict[str, Any]] = {
    # CPU in minutes: small nets, 8 test cases × 8 members; every method gets the same
    # budget (optimizer steps × batch), so the rows rank methods, not training lengths.
    "quick": {
        "n_train": 1000, "n_test": 8, "members": 8, "batch_size": 16, "device": "cpu",
        "steps": {"cvae": 400, "glow": 400, "diffusion": 400, "prior": 400},
        "lr": {"cvae": 1e-3, "glow": 1e-3, "diffusion": 2e-3, "prior": 2e-3},
        "cvae": {"latent_dim": 16, "channels": [16, 32], "hidden": [128]},
        "glow": {"levels": 3, "steps": 2, "checker_steps": 2, "hidden": 24},
        "diffusion": {"channels": [8, 16], "blocks": 1},
        "sampling_steps": 30, "residual_std": 0.5, "residual_until": 0.3,
    },
    # One GPU: the whole split, 200 test cases × 32 members, models trained to convergence.
    "full": {
        "n_train": 1000, "n_test": 200, "members": 32, "batch_size": 64, "device": "cuda",
        "steps": {"cvae": 50000, "glow": 50000, "diffusion": 50000, "prior": 50000},
        "lr": {"cvae": 1e-3, "glow": 5e-4, "diffusion": 2e-4, "prior": 2e-4},
        "cvae": {"latent_dim": 32, "channels": [32, 64, 128], "hidden": [256]},
        "glow": {"levels": 3, "steps": 4, "checker_steps": 4, "hidden": 96},
        "diffusion": {"channels": [64, 128, 128], "blocks": 2},
        "sampling_steps": 250, "residual_std": 0.5, "residual_until": 0.3,
    },
}  # fmt: skip


@dataclass
class Data:
    """Normalized train/test tensors of (a, u), the de-normalizer and the problem."""

    train: Tensor  # (N, 2, 32, 32), z-scored per field
    test: Tensor  # (B, 2, 32, 32), z-scored
    test_phys: Tensor  # (B, 2, 32, 32), physical units, float64
    mean: Tensor  # (2, 1, 1)
    scale: Tensor  # (2, 1, 1)
    problem: Any

    def denorm(self, x: Tensor, channels: list[int]) -> Tensor:
        """z-scores → physical units for the given channels of (a, u)."""
        mean, scale = self.mean[channels].to(x), self.scale[channels].to(x)
        return x * scale + mean


def _data(cfg: dict[str, Any]) -> Data:
    recipe = load_recipe("darcy-32")
    files = make_dataset(recipe, progress=False)
    stats = load_stats(files["stats"])
    train = FieldDataset(files["train"], list(FIELDS), stats=stats)
    test = FieldDataset(files["test"], list(FIELDS), stats=stats)
    x_train = torch.stack([train[i] for i in range(min(cfg["n_train"], len(train)))])
    x_test = torch.stack([test[i] for i in range(min(cfg["n_test"], len(test)))])
    norm = train.normalizer
    assert norm is not None
    phys = norm.denormalize(x_test.double())
    problem = load(recipe.problem, **recipe.params)
    return Data(x_train, x_test, phys, norm.mean.float(), norm.scale.float(), problem)


def _build(family: str, target_shape, cond_shape, cfg: dict[str, Any]) -> GenerativeModel:
    cls = available_models()[family]
    if family == "cvae":
        return cls(target_shape, cond_shape, arch="conv", **cfg["cvae"])
    if family == "glow":
        return cls(shape=list(target_shape), cond_shape=list(cond_shape), **cfg["glow"])
    return cls(target_shape, cond_shape, **cfg["diffusion"])


def _train(model: GenerativeModel, data: Any, key: str, cfg: dict[str, Any]) -> float:
    start = time.perf_counter()
    fit(
        model, data, steps=cfg["steps"][key], batch_size=cfg["batch_size"], lr=cfg["lr"][key],
        grad_clip=1.0, device=cfg["device"], progress=False, seed=0,
    )  # fmt: skip
    model.eval()
    return time.perf_counter() - start


def _sample_options(family: str, cfg: dict[str, Any]) -> dict[str, Any]:
    if family == "cvae":
        return {"mean": False}  # the posterior predictive includes the decoder noise
    if family == "diffusion":
        return {"sampler": "ddpm", "steps": cfg["sampling_steps"]}
    return {}


def _scores(
    task: Task, data: Data, ens: Tensor, y: Tensor, channels: list[str]
) -> dict[str, float]:
    """Scores of the target channel(s) in physical units (members ``ens`` normalized)."""
    index = [FIELDS.index(f) for f in task.targets]
    own = [channels.index(f) for f in task.targets]
    members = data.denorm(ens[:, :, own].double(), index)  # (B, M, C_t, *grid)
    truth = data.test_phys[:, index]
    full = data.test_phys[:, None].repeat(1, members.shape[1], 1, 1, 1)
    full[:, :, index] = members  # (observed truth, inferred member)
    res = data.problem.relative_residual(full.flatten(0, 1)).mean()
    floor = data.problem.relative_residual(data.test_phys).mean()
    task_channels = [channels.index(f) for f in task.fields]
    observed = task.operator(ens[:, :, task_channels].flatten(0, 1).double())
    y_rep = y.double().repeat_interleave(ens.shape[1], dim=0)
    misfit = (observed - y_rep).flatten(1).norm(dim=1) / y_rep.flatten(1).norm(dim=1)
    return {
        "rel_l2_mean": float(relative_l2(members.mean(1), truth).mean()),
        "crps_fair": float(crps_fair(members, truth, member_dim=1).mean()),
        "spread_skill": float(spread_skill_ratio(members, truth, member_dim=1)),
        "residual": float(res),
        "residual_over_floor": float(res / floor),
        "misfit": float(misfit.mean()),
    }


def _point_scores(task: Task, data: Data, pred: Tensor) -> dict[str, float]:
    """A deterministic baseline ``pred`` (B, C_t, *grid) physical: CRPS of a point = MAE."""
    index = [FIELDS.index(f) for f in task.targets]
    truth = data.test_phys[:, index]
    full = data.test_phys.clone()
    full[:, index] = pred
    res = data.problem.relative_residual(full).mean()
    floor = data.problem.relative_residual(data.test_phys).mean()
    return {
        "rel_l2_mean": float(relative_l2(pred, truth).mean()),
        "crps_fair": float((pred - truth).abs().mean()),
        "spread_skill": None,
        "residual": float(res),
        "residual_over_floor": float(res / floor),
    }


def _baseline(task: Task, data: Data, y: Tensor) -> dict[str, float]:
    index = [FIELDS.index(f) for f in task.targets]
    if task.name.startswith("sr"):
        pred = data.denorm(task.operator.lift(y.double(), task.sample_shape), index)
        return {"method": "bicubic interpolation", **_point_scores(task, data, pred)}
    mean = data.denorm(data.train[:, index].double().mean(0, keepdim=True), index)
    pred = mean.expand(data.test.shape[0], -1, -1, -1)
    return {"method": "training mean", **_point_scores(task, data, pred)}


def _floor(task: Task, data: Data) -> dict[str, float]:
    index = [FIELDS.index(f) for f in task.targets]
    return {"method": "ground truth (floor)", **_point_scores(task, data, data.test_phys[:, index])}


def run_task(
    spec: str, data: Data, cfg: dict[str, Any], prior: GenerativeModel | None, prior_s: float
) -> list[dict[str, Any]]:
    """All rows of one task: baseline, each available method, ground-truth floor."""
    grid = data.problem.grid
    task = parse_task(spec, FIELDS, grid)
    x_task = data.test[:, [FIELDS.index(f) for f in task.fields]]
    y = task.observe(x_task.double()).float()
    rows = [_baseline(task, data, y)]
    train_task = data.train[:, [FIELDS.index(f) for f in task.fields]]
    targets = train_task[:, task.target_index]
    conds = task.condition(task.observe(train_task.double()).float())
    registry = available_models()
    for family, label in CONDITIONAL:
        if family not in registry:
            rows.append({"method": label, "skipped": f"'{family}' is not registered"})
            continue
        torch.manual_seed(0)
        model = _build(family, task.target_shape, tuple(conds.shape[1:]), cfg)
        train_s = _train(model, (targets, conds), family, cfg)
        start = time.perf_counter()
        with torch.no_grad():
            ens = solve(
                model, task, y.to(cfg["device"]), cfg["members"],
                sample_options=_sample_options(family, cfg),
            )  # fmt: skip
        sample_s = time.perf_counter() - start
        scores = _scores(task, data, ens.cpu(), y, list(task.fields))
        rows.append({"method": label, **scores, "train_s": train_s, "sample_s": sample_s})
    if prior is None:
        rows.append({"method": "guided diffusion", "skipped": "'diffusion' is not registered"})
    else:
        for pde in (False, True):
            rows.append(_guided_row(task, data, cfg, prior, prior_s, y, pde))
    rows.append(_floor(task, data))
    for row in rows:
        row["fraction"] = task.fraction
    return rows


def _positive(fields: Tensor, data: Data) -> Tensor:
    """Permeability clipped below at a₋ for the residual: its harmonic face means
    2a₁a₂/(a₁ + a₂) are undefined where a generated a changes sign."""
    a = fields[:, :1].clamp_min(data.problem.params.a_minus)
    return torch.cat([a, fields[:, 1:]], dim=1)


def _guided_row(
    task: Task, data: Data, cfg: dict[str, Any], prior: Any, prior_s: float, y: Tensor, pde: bool
) -> dict[str, Any]:
    residual: Callable[[Tensor], Tensor] | None = None
    if pde:
        residual = lambda x: data.problem.residual(_positive(data.denorm(x, [0, 1]), data))  # noqa: E731
    start = time.perf_counter()
    ens = solve(
        ScorePrior(prior.sde, lambda x, t: prior.score(x, t)), task, y.to(cfg["device"]),
        cfg["members"], sampler="ddpm", steps=cfg["sampling_steps"], covariance="isotropic",
        prior_fields=FIELDS, residual=residual, residual_std=cfg["residual_std"],
        residual_until=cfg["residual_until"], generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    sample_s = time.perf_counter() - start
    label = "guided diffusion + PDE" if pde else "guided diffusion"
    scores = _scores(task, data, ens.detach().cpu(), y, list(FIELDS))
    return {"method": label, **scores, "train_s": prior_s, "sample_s": sample_s}


def _table(results: dict[str, list[dict[str, Any]]]) -> str:
    head = (
        "| task | method | obs. fraction | rel. L2 (mean) | fair CRPS | spread–skill | "
        "residual / floor | misfit | train s | sample s |"
    )
    lines = [head, "|" + "---|" * 10]
    fmt = lambda v, p=3: "–" if v is None else f"{v:.{p}g}"  # noqa: E731
    for spec, rows in results.items():
        for r in rows:
            if "skipped" in r:
                lines.append(f"| {spec} | {r['method']} | – | skipped: {r['skipped']} |||||||")
                continue
            lines.append(
                f"| {spec} | {r['method']} | {r['fraction']:.4g} | {fmt(r['rel_l2_mean'])} | "
                f"{fmt(r['crps_fair'])} | {fmt(r['spread_skill'])} | "
                f"{fmt(r['residual_over_floor'])} | {fmt(r.get('misfit'))} | "
                f"{fmt(r.get('train_s'), 3)} | {fmt(r.get('sample_s'), 3)} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the study; write ``results.json`` and ``results.md`` under ``runs/``."""
    cfg, out = study_setup("inverse_darcy", __doc__, CONFIGS, argv)
    torch.manual_seed(0)
    data = _data(cfg)
    prior, prior_s = None, 0.0
    if "diffusion" in available_models():
        family = available_models()["diffusion"]
        prior = family(tuple(data.train.shape[1:]), None, **cfg["diffusion"])
        prior_s = _train(prior, data.train, "prior", cfg)
    results = {}
    for spec in TASKS:
        results[spec] = run_task(spec, data, cfg, prior, prior_s)
        print(_table({spec: results[spec]}), flush=True)
    table = _table(results)
    write_results(out, cfg, results, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
