"""Darcy benchmark: every field family on joint (permeability, pressure) fields, physics AND
distribution.

Each family is trained on the z-scored (a, u) fields with the same budget of sample-gradient
evaluations (optimizer steps × batch; a GAN step counts its critic and generator batches),
samples ``n_samples`` fields and is scored beside the data's own floors:

* physics: PBFM's residual error RE (mean over samples of the grid-mean |r| of the problem's
  discrete operator, physical units) and the relative RMS residual, beside the reference's;
* distribution (z-score units, joint (a, u) fields): W1 of pointwise marginals, sliced
  Wasserstein, MMD² with a permutation p-value, energy distance, spectrum LSD, mean- and
  std-field errors, each beside its reference-vs-reference floor;
* a collapse check (pointwise std ratio to the data's), NFE, time per sample, parameters and
  training time;
* the same physics and distribution numbers after the **solver projection** (u re-solved for
  the generated a with the problem's own solver, a clamped to the data's range): the hard
  constraint any family can add at sampling time.

Families: conv VAE, PI-VAE (Zhu et al. 2025), Glow, flow matching (OT pairs), flow matching +
residual on x̂0 with conflict-free gradients (PBFM), diffusion with ε- and with v-prediction,
v-diffusion + residual on x̂0 (PIDM), WGAN-GP (DCGAN nets), and WGAN-GP + residual on
generated fields (PI-GAN).

Usage: ``physgen run darcy_benchmark --quick`` (2-core CPU, ``darcy-32``) or without
``--quick`` (one GPU, ``darcy-pidm-64``). Results go to ``runs/darcy_benchmark[-quick]/``;
an interrupted run resumes without retraining finished rows, and a row whose settings
changed is trained again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from physgen.data import FieldDataset, load_stats, write_fields
from physgen.data.atomic import atomic_output, nonfinite_to_none, write_json_atomic
from physgen.metrics import residual_error, residual_rms, std_ratio
from physgen.metrics.report import distribution_report
from physgen.models.base import GenerativeModel, available_models
from physgen.paths import runs_root
from physgen.physics import ResidualPenalty
from physgen.problem import Problem, load
from physgen.recipes import load_recipe, make_dataset
from physgen.training import fit

__all__ = [
    "CONFIGS",
    "FAMILIES",
    "Data",
    "aggregate",
    "load_data",
    "main",
    "run_study",
    "samples_path",
    "write_samples",
]

# (key, label, registry name, physics-informed?) in table order.
FAMILIES: tuple[tuple[str, str, str, bool], ...] = (
    ("vae", "conv VAE", "vae", False),
    ("pivae", "PI-VAE (Zhu)", "pivae", True),
    ("glow", "Glow", "glow", False),
    ("fm", "flow matching (OT)", "flow-matching", False),
    ("fm-physics", "flow matching + residual, ConFIG (PBFM)", "flow-matching", True),
    ("fm-physics-unroll", "FM + residual, ConFIG, 3-step unrolling (PBFM)", "flow-matching", True),
    ("diffusion-eps", "diffusion (VP, ε-prediction)", "diffusion", False),
    ("diffusion", "diffusion (VP, v-prediction)", "diffusion", False),
    ("diffusion-physics", "diffusion (v) + residual on x̂0 (PIDM)", "diffusion", True),
    ("wgan-gp", "WGAN-GP (DCGAN nets)", "dcgan", False),
    ("wgan-gp-physics", "WGAN-GP + residual (PI-GAN)", "dcgan", True),
)

CONFIGS: dict[str, dict[str, Any]] = {
    # 2-core CPU: 400 batches of 32 per family, three seeds never used while choosing settings.
    "quick": {
        "dataset": "darcy-32", "seeds": [1, 2, 3], "device": "cpu", "threads": 2,
        "batch_size": 32, "budget_batches": 400, "n_samples": 200, "lr": 2e-3,
        "grad_clip": 1.0, "ema_decay": None,
        "unet": {"channels": [16, 32, 32], "blocks": 1},
        "vae": {"latent_dim": 32, "channels": [16, 32], "hidden": [256]},
        "glow": {"levels": 3, "steps": 2, "checker_steps": 2, "hidden": 32},
        "gan": {"latent_dim": 64, "channels": [32, 64], "n_critic": 2},
        "physics": {
            "fm": 1.0, "diffusion": 0.01, "gan": 0.1, "pivae": 0.01, "power": 1, "unroll": 3,
        },
        "fm_steps": 20,
        "diffusion": {"prediction": "v", "sampler": "ddim", "steps": 50},
        "diffusion_eps": {"prediction": "eps", "sampler": "ddpm", "steps": 100},
    },
    # One GPU (PBFM trains for hours): 20 000 batches of 64, wider nets, EMA.
    "full": {
        "dataset": "darcy-pidm-64", "seeds": [1, 2, 3], "device": "cuda", "threads": None,
        "batch_size": 64, "budget_batches": 20000, "n_samples": 1024, "lr": 2e-4,
        "grad_clip": 1.0, "ema_decay": 0.999,
        "unet": {"channels": [64, 128, 128], "blocks": 2},
        "vae": {"latent_dim": 128, "channels": [64, 128, 128], "hidden": [512]},
        "glow": {"levels": 4, "steps": 6, "checker_steps": 4, "hidden": 128},
        "gan": {"latent_dim": 128, "channels": [64, 128, 128], "n_critic": 2},
        "physics": {
            "fm": 1.0, "diffusion": 0.01, "gan": 0.1, "pivae": 0.01, "power": 1, "unroll": 3,
        },
        "fm_steps": 20,
        "diffusion": {"prediction": "v", "sampler": "ddim", "steps": 50},
        "diffusion_eps": {"prediction": "eps", "sampler": "ddpm", "steps": 100},
    },
}  # fmt: skip

# PBFM's published Darcy table (Baldan et al., arXiv:2506.08604), PIDM's 64² data, 1024 samples:
# RE in the units of that data, WD·10², NFE. Drawn for reference on the full configuration only.
PBFM_TABLE = {
    "PBFM": (0.838, 0.138, 20),
    "FM-OT": (4.159, 0.059, 20),
    "PIDM": (0.022, 3.103, 100),
    "DiffusionPDE": (3.388, 0.089, 20),
}


@dataclass
class Data:
    """z-scored train and reference fields ``(N, 2, *grid)``, their normalizer and problem."""

    train: Tensor
    ref: Tensor  # held-out fields (valid + test) for the distribution metrics
    mean: Tensor  # (2,) float64
    scale: Tensor  # (2,) float64
    bounds: dict[str, tuple[float, float]]  # the coefficient's range in the training data
    problem: Problem
    name: str

    def physical(self, x: Tensor) -> Tensor:
        """z-scores → physical units, float64."""
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x.double() * self.scale.reshape(shape) + self.mean.reshape(shape)

    def normalized(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return ((x.double() - self.mean.reshape(shape)) / self.scale.reshape(shape)).float()


def load_data(dataset: str | dict[str, Any]) -> Data:
    """A recipe's train split and its valid + test splits as the reference (``physgen data
    make`` builds them once); or, for a dict ``{"problem", "params", "n_train", "n_ref"}``,
    fields generated in memory (seeds 0 and 1), normalized with the training statistics."""
    if isinstance(dataset, dict):
        problem = load(dataset["problem"], **dataset.get("params", {}))
        train = problem.to_tensor(problem.generate(dataset["n_train"], seed=0))
        ref = problem.to_tensor(problem.generate(dataset["n_ref"], seed=1))
        dims = (0, *range(2, train.ndim))
        mean, scale = train.mean(dims), train.std(dims)
        name = problem.name
    else:
        recipe = load_recipe(dataset)
        files = make_dataset(recipe, progress=True)
        stats = load_stats(files["stats"])
        problem = load(recipe.problem, **recipe.params)
        names = list(problem.field_names)
        sets = []
        for split in ("train", "valid", "test"):
            ds = FieldDataset(files[split], names)
            sets.append(torch.stack([ds[i] for i in range(len(ds))]).double())
        train, ref = sets[0], torch.cat(sets[1:])
        mean = torch.tensor([stats[f].mean for f in names], dtype=torch.float64)
        scale = torch.tensor([stats[f].std for f in names], dtype=torch.float64)
        name = dataset
    coefficient = problem.field_names[0]
    bounds = {coefficient: (float(train[:, 0].min()), float(train[:, 0].max()))}
    data = Data(train, ref, mean, scale, bounds, problem, name)
    data.train, data.ref = data.normalized(train), data.normalized(ref)
    return data


def _penalty(data: Data, cfg: dict[str, Any]) -> ResidualPenalty:
    lo = data.bounds[data.problem.field_names[0]][0]
    return ResidualPenalty(
        data.problem, data.mean, data.scale, power=cfg["physics"]["power"],
        bounds={data.problem.field_names[0]: (lo, None)},
    )  # fmt: skip


def build(key: str, data: Data, cfg: dict[str, Any]) -> tuple[GenerativeModel, int]:
    """The family's model and its optimizer steps for the budget."""
    shape = tuple(data.train.shape[1:])
    registry = available_models()
    budget, physics = cfg["budget_batches"], cfg["physics"]
    if key in ("vae", "pivae"):
        extra: dict[str, Any] = {}
        if key == "pivae":
            extra = dict(
                problem=data.problem.name, problem_params=dict(data.problem.params.__dict__),
                channel_mean=data.mean.tolist(), channel_std=data.scale.tolist(),
                alpha1=physics["pivae"], alpha2=physics["pivae"], n_syn=256,
                pretrain_steps=budget // 2,
            )  # fmt: skip
        return registry[key](shape, arch="conv", **cfg["vae"], **extra), budget
    if key == "glow":
        return registry["glow"](shape=list(shape), **cfg["glow"]), budget
    if key.startswith("fm"):
        model = registry["flow-matching"](
            shape, coupling="ot", method="euler", steps=cfg["fm_steps"], **cfg["unet"],
            **(dict(physics_weight=physics["fm"], gradient_combination="config",
                    physics_unroll=physics["unroll"] if key == "fm-physics-unroll" else 1)
               if key.startswith("fm-physics") else {}),
        )  # fmt: skip
    elif key.startswith("diffusion"):
        own = cfg["diffusion_eps" if key == "diffusion-eps" else "diffusion"]
        model = registry["diffusion"](
            shape, prediction=own["prediction"], **cfg["unet"],
            **(dict(physics_weight=physics["diffusion"], physics_time_weight="signal")
               if key == "diffusion-physics" else {}),
        )  # fmt: skip
    elif key.startswith("wgan-gp"):
        gan = dict(cfg["gan"])
        model = registry["dcgan"](
            shape, objective="wasserstein", **gan,
            **({"physics_weight": physics["gan"]} if key == "wgan-gp-physics" else {}),
        )  # fmt: skip
        return _with_penalty(model, data, cfg), budget // (gan["n_critic"] + 1)
    else:
        raise ValueError(f"unknown family {key!r}; known: {[f[0] for f in FAMILIES]}")
    return _with_penalty(model, data, cfg), budget


def _with_penalty(model: GenerativeModel, data: Data, cfg: dict[str, Any]) -> GenerativeModel:
    if getattr(model, "physics_weight", 0.0):
        model.physics_penalty = _penalty(data, cfg)
    return model


def _sample(key: str, model: GenerativeModel, n: int, cfg: dict[str, Any]) -> tuple[Tensor, int]:
    """``n`` samples in chunks of 100, and the network evaluations per sample."""
    chunks, nfe = [], 1
    for start in range(0, n, 100):
        m = min(100, n - start)
        if key.startswith("diffusion"):
            own = cfg["diffusion_eps" if key == "diffusion-eps" else "diffusion"]
            x = model.sample(m, sampler=own["sampler"], steps=own["steps"])
            nfe = own["steps"]
        elif key.startswith("fm"):
            x, nfe = model.sample(m), cfg["fm_steps"]
        else:  # one network pass: a VAE's decoder mean, a flow's inverse, a GAN's generator
            x = model.sample(m)
        chunks.append(x.detach().float().cpu())
    return torch.cat(chunks), nfe


# The settings each family's rows depend on, beside the common ones.
_COMMON = ("dataset", "batch_size", "budget_batches", "n_samples", "lr", "grad_clip", "ema_decay")
_OWN: dict[str, tuple[str, ...]] = {
    "vae": ("vae",),
    "pivae": ("vae", "physics.pivae"),
    "glow": ("glow",),
    "fm": ("unet", "fm_steps"),
    "fm-physics": ("unet", "fm_steps", "physics.fm", "physics.power"),
    "fm-physics-unroll": ("unet", "fm_steps", "physics.fm", "physics.power", "physics.unroll"),
    "diffusion-eps": ("unet", "diffusion_eps"),
    "diffusion": ("unet", "diffusion"),
    "diffusion-physics": ("unet", "diffusion", "physics.diffusion", "physics.power"),
    "wgan-gp": ("gan",),
    "wgan-gp-physics": ("gan", "physics.gan", "physics.power"),
}  # fmt: skip


def fingerprint(key: str, cfg: dict[str, Any], data_name: str) -> str:
    """A hash of the settings that shape ``key``'s rows, so changing one retrains exactly the
    rows it shapes (the seeds, threads and device do not enter)."""
    used = {}
    for name in (*_COMMON, *_OWN[key]):
        value: Any = cfg
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        used[name] = value
    text = json.dumps({"family": key, "data": data_name, "settings": used}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def score(samples: Tensor, data: Data, seed: int) -> dict[str, Any]:
    """Physics and distribution scores of z-scored samples against the reference set."""
    phys = data.physical(samples)
    finite = torch.isfinite(phys.flatten(1)).all(1)
    if not bool(finite.all()):
        phys, samples = phys[finite], samples[finite]
    coefficient = data.problem.field_names[0]
    lo = data.bounds[coefficient][0]
    # The operator's harmonic face means need a positive coefficient: clamp it from below
    # to the data's minimum for the residual only.
    clamped = phys.clone()
    clamped[:, 0] = clamped[:, 0].clamp_min(lo)
    report = distribution_report(
        samples.double(), data.ref.double(), spatial_dims=data.problem.grid.ndim,
        periodic=False, seed=seed, num_permutations=200, num_splits=3,
    )  # fmt: skip
    keep = ("marginal_w1", "sliced_wasserstein", "mmd2", "energy_distance", "spectrum_lsd",
            "mean_error_std_units", "std_error")  # fmt: skip
    out: dict[str, Any] = {k: report[k] for k in keep}
    out["finite_fraction"] = float(finite.double().mean())
    out["re"] = float(residual_error(data.problem, clamped))
    out["relative_residual"] = float(residual_rms(data.problem, clamped, relative=True).mean())
    out["std_ratio"] = [float(std_ratio(samples[:, c], data.ref[:, c])) for c in range(2)]
    return out


def projected_score(samples: Tensor, data: Data, seed: int) -> dict[str, Any]:
    """Scores after the solver projection: a clamped to the data's range, u re-solved."""
    phys = data.physical(samples)
    phys = phys[torch.isfinite(phys.flatten(1)).all(1)]
    lo, hi = data.bounds[data.problem.field_names[0]]
    phys[:, 0] = phys[:, 0].clamp(lo, hi)
    start = time.perf_counter()
    solved = data.problem.solve_state(phys)
    solve_s = (time.perf_counter() - start) / max(1, len(phys))
    z = data.normalized(solved)
    out = score(z, data, seed)
    out["solve_s_per_sample"] = solve_s
    return out


def floor_scores(data: Data, n: int, seed: int) -> dict[str, Any]:
    """The reference's own row: its residual and its halves' distribution floors."""
    m = min(n, len(data.ref) // 2)
    out = score(data.ref[:m], data, seed)
    # Against itself the value is meaningless; the floors are what this row shows.
    for v in out.values():
        if isinstance(v, dict) and "floor" in v:
            v["value"] = v["floor"]
    return out


def samples_path(out: Path, key: str, seed: int) -> Path:
    """Where ``--save-samples`` writes the samples of the row (``key``, ``seed``)."""
    return out / "samples" / f"{key}-seed{seed}.nc"


def write_samples(samples: Tensor, data: Data, path: Path, provenance: dict[str, Any]) -> Path:
    """Write z-scored samples ``(N, C, *grid)`` as a physgen-field file in physical units,
    with the problem's attributes, so ``physgen evaluate`` can score them against the data.

    Samples holding NaN or Inf are written as drawn (``evaluate`` counts and skips them)."""
    phys = data.physical(samples).numpy()  # (N, C, *grid)
    arrays = {name: phys[:, c] for c, name in enumerate(data.problem.field_names)}
    ds = data.problem.to_dataset(arrays, np.arange(len(phys)))
    ds.attrs.update(title=f"{data.problem.name} samples of a trained model",
                    source="physgen run darcy_benchmark (generated, not solved)")  # fmt: skip
    return write_fields(ds, path, provenance={"generator": "physgen run darcy_benchmark",
                                              **provenance})  # fmt: skip


def train_row(
    key: str, seed: int, data: Data, cfg: dict[str, Any], samples_to: Path | None = None
) -> dict[str, Any]:
    """Train one family with one seed, sample and score it (and its projection); with
    ``samples_to``, also write the samples there (:func:`write_samples`)."""
    torch.manual_seed(seed)
    model, steps = build(key, data, cfg)
    params = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    result = fit(
        model, data.train, steps=steps, batch_size=cfg["batch_size"], lr=cfg["lr"],
        grad_clip=cfg["grad_clip"], ema_decay=cfg["ema_decay"], device=cfg["device"],
        seed=seed, progress=False, nonfinite="skip",
    )  # fmt: skip
    train_s = time.perf_counter() - start
    net = result.ema if result.ema is not None else result.model
    net.eval()
    torch.manual_seed(10_000 + seed)
    start = time.perf_counter()
    with torch.no_grad():
        samples, nfe = _sample(key, net, cfg["n_samples"], cfg)
    sample_s = (time.perf_counter() - start) / cfg["n_samples"]
    row = {
        "family": key, "seed": seed, "steps": steps, "params": params,
        "skipped_steps": result.skipped, "train_s": train_s, "nfe": nfe,
        "sample_s_per_sample": sample_s, **score(samples, data, seed),
    }  # fmt: skip
    row["projected"] = projected_score(samples, data, seed)
    row["preview"] = data.physical(samples[:4]).float().numpy().tolist()
    if samples_to is not None:
        write_samples(samples, data, samples_to, {"family": key, "seed": seed,
                                                  "steps": steps})  # fmt: skip
    return row


def _metric_value(row: dict[str, Any], name: str) -> float | None:
    v = row.get(name)
    if isinstance(v, dict):
        v = v.get("value")
    if isinstance(v, list):
        v = sum(v) / len(v)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


SUMMARY = ("re", "relative_residual", "marginal_w1", "sliced_wasserstein", "mmd2",
           "energy_distance", "spectrum_lsd", "mean_error_std_units", "std_error", "std_ratio",
           "train_s", "sample_s_per_sample", "nfe", "params")  # fmt: skip


def aggregate(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per family: mean, sample std, min and max over seeds of every summary metric (and of
    the projected RE, W1 and MMD²), plus the MMD p-values and the seeds."""
    out: dict[str, dict[str, Any]] = {}
    for key, *_ in FAMILIES:
        mine = [r for r in rows if r.get("family") == key and "error" not in r]
        if not mine:
            continue
        summary: dict[str, Any] = {"seeds": [r["seed"] for r in mine]}
        for name in SUMMARY:
            values = [v for r in mine if (v := _metric_value(r, name)) is not None]
            summary[name] = _stats(values)
        for name in ("re", "marginal_w1", "mmd2"):
            values = [v for r in mine if (v := _metric_value(r["projected"], name)) is not None]
            summary[f"projected_{name}"] = _stats(values)
        summary["mmd_p_values"] = [r["mmd2"].get("p_value") for r in mine]
        out[key] = summary
    return out


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def _fmt(stat: dict[str, Any] | None, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    mean, std = stat["mean"], stat["std"]
    return f"{mean:.{digits}g} ± {std:.2g}" if stat["n"] > 1 else f"{mean:.{digits}g}"


def table(summary: dict[str, dict[str, Any]], floor: dict[str, Any], data_name: str) -> str:
    """The Markdown table: one line per family (mean ± std over seeds) under the data floor."""
    head = (
        f"Data: `{data_name}`. RE = mean |residual| (physical units); rel. = relative RMS "
        "residual; distribution metrics in z-score units on joint (a, u) fields, data row = "
        "reference-vs-reference floor; mean err. in data-std units; σ ratio = pointwise std / "
        "data's, mean of a and u; "
        "proj. = after the solver projection.\n\n"
        "| family | RE | rel. residual | W1 | sliced W | MMD² | energy | spectrum LSD | "
        "mean err. | std err. | σ ratio | RE proj. | W1 proj. | MMD² proj. | NFE | "
        "s/sample | params | train s |\n" + "|---" * 18 + "|\n"
    )
    lines = []

    def val(name: str) -> str:
        v = floor.get(name)
        v = v.get("floor") if isinstance(v, dict) else v
        if isinstance(v, list):
            return " / ".join(f"{x:.3g}" for x in v)
        return "–" if v is None else f"{v:.3g}"

    lines.append(
        f"| data (floor) | {val('re')} | {val('relative_residual')} | {val('marginal_w1')} | "
        f"{val('sliced_wasserstein')} | {val('mmd2')} | {val('energy_distance')} | "
        f"{val('spectrum_lsd')} | {val('mean_error_std_units')} | {val('std_error')} | 1 | "
        "– | – | – | – | – | – | – |"
    )
    labels = {k: label for k, label, *_ in FAMILIES}
    for key, s in summary.items():
        cells = [_fmt(s[n]) for n in SUMMARY[:10]]
        cells += [_fmt(s[f"projected_{n}"]) for n in ("re", "marginal_w1", "mmd2")]
        cells += [_fmt(s["nfe"], 4), _fmt(s["sample_s_per_sample"], 2), _fmt(s["params"], 6),
                  _fmt(s["train_s"], 3)]  # fmt: skip
        lines.append(f"| {labels[key]} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def headline_table(summary: dict[str, dict[str, Any]], floor: dict[str, Any]) -> str:
    """The README's short table: residual and distribution, raw and after the projection."""
    lines = [
        "| family | RE | W1 | MMD² | σ ratio | RE proj. | W1 proj. | MMD² proj. | train s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| data (floor) | {floor['re']:.2g} | {floor['marginal_w1']['floor']:.3g} | "
        f"{floor['mmd2']['floor']:.2g} ± {floor['mmd2'].get('floor_std', 0.0):.2g} | 1 | – | – "
        "| – | – |",
    ]
    labels = {k: label for k, label, *_ in FAMILIES}
    for key, s in summary.items():
        cells = [_fmt(s[n]) for n in ("re", "marginal_w1", "mmd2", "std_ratio")]
        cells += [_fmt(s[f"projected_{n}"]) for n in ("re", "marginal_w1", "mmd2")]
        cells.append(_fmt(s["train_s"], 3))
        lines.append(f"| {labels[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _previous(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        rows = json.loads(path.read_text())["rows"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a results file of this study ({err}); move it away") from err
    return {r["key"]: r for r in rows if isinstance(r, dict) and "key" in r}


def run_study(
    cfg: dict[str, Any],
    out: Path,
    families: list[str] | None = None,
    *,
    trainer: Callable[..., dict[str, Any]] = train_row,
    save_samples: bool = False,
) -> dict[str, Any]:
    """Train, score and tabulate every (family, seed) row; rows already in
    ``out/results.json`` with the same fingerprint are kept, not retrained.

    With ``save_samples`` every row's samples are written to ``out/samples/`` as physgen-field
    files (:func:`samples_path`); a kept row whose file is missing is then trained again."""
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    data = load_data(cfg["dataset"])
    chosen = families or [f[0] for f in FAMILIES]
    unknown = sorted(set(chosen) - {f[0] for f in FAMILIES})
    if unknown:
        raise ValueError(f"unknown families {unknown}; known: {[f[0] for f in FAMILIES]}")
    done = _previous(out / "results.json")
    floor = floor_scores(data, cfg["n_samples"], seed=0)
    # Rows of families not chosen this time stay in the results as they were.
    rows: list[dict[str, Any]] = [r for r in done.values() if r.get("family") not in chosen]

    def save() -> dict[str, Any]:
        summary = aggregate(rows)
        result = {"config": cfg, "data": data.name, "floor": floor, "rows": rows,
                  "summary": summary}  # fmt: skip
        write_json_atomic(nonfinite_to_none(result), out / "results.json")
        with atomic_output(out / "results.md") as tmp:
            Path(tmp).write_text(
                table(summary, floor, data.name)
                + "\nHeadline:\n\n"
                + headline_table(summary, floor)
            )
        return result

    for key in chosen:
        for seed in cfg["seeds"]:
            row_key, stamp = f"{key}/seed{seed}", fingerprint(key, cfg, data.name)
            previous = done.get(row_key)
            target = samples_path(out, key, seed) if save_samples else None
            if (
                previous is not None
                and previous.get("fingerprint") == stamp
                and (target is None or target.is_file())
            ):
                rows.append(previous)
                print(f"{row_key}: kept from the earlier run", flush=True)
                continue
            start = time.perf_counter()
            try:
                row = (
                    trainer(key, seed, data, cfg)
                    if target is None
                    else trainer(key, seed, data, cfg, samples_to=target)
                )
            except (RuntimeError, ValueError, FloatingPointError) as err:
                row = {"family": key, "seed": seed, "error": f"{type(err).__name__}: {err}"}
            row.update(key=row_key, fingerprint=stamp)
            rows.append(row)
            print(
                f"{row_key}: {time.perf_counter() - start:.0f} s, RE {row.get('re', '–')}, "
                f"W1 {_metric_value(row, 'marginal_w1')}", flush=True,
            )  # fmt: skip
            save()
    result = save()
    _figures(result, data, out)
    return result


def _figures(result: dict[str, Any], data: Data, out: Path) -> None:
    """The frontier plot (RE against W1, seed error bars) and sample grids per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from physgen.plotting import save_figure

    labels = {k: label for k, label, *_ in FAMILIES}
    fig, ax = plt.subplots(figsize=(7, 5))
    for key, s in result["summary"].items():
        re, w1 = s["re"], s["marginal_w1"]
        if re["mean"] is None or w1["mean"] is None:
            continue
        ax.errorbar(
            w1["mean"], re["mean"], xerr=w1["std"], yerr=re["std"], fmt="o", capsize=3,
            label=labels[key],
        )  # fmt: skip
        pre, pw1 = s["projected_re"], s["projected_marginal_w1"]
        if pre["mean"] is not None:
            ax.plot(pw1["mean"], pre["mean"], "x", color="grey")
    floor = result["floor"]
    ax.axhline(floor["re"], color="k", ls="--", lw=1, label="data residual floor")
    ax.axvline(floor["marginal_w1"]["floor"], color="k", ls=":", lw=1, label="data W1 floor")
    if result["data"] == "darcy-pidm-64":
        for name, (re_pub, wd, _) in PBFM_TABLE.items():
            ax.plot(wd / 100, re_pub, "s", mfc="none", color="tab:grey")
            ax.annotate(f"{name} (published WD)", (wd / 100, re_pub), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("W1 of pointwise marginals (z-score units)")
    ax.set_ylabel("RE: mean |residual| (physical units)")
    ax.set_title(f"Residual against distribution, {result['data']} (× = after projection)")
    ax.legend(fontsize=7, loc="best")
    save_figure(fig, out / "frontier.png")
    plt.close(fig)

    families = [
        r for r in result["rows"] if "preview" in r and r["seed"] == result["rows"][0]["seed"]
    ]
    if not families:
        return
    ref = data.physical(data.ref[:4]).numpy()
    fig, axes = plt.subplots(2 * (len(families) + 1), 4, figsize=(8, 4 * (len(families) + 1)))
    sets = [("data", ref)] + [(labels[r["family"]], np.asarray(r["preview"])) for r in families]
    for i, (name, fields) in enumerate(sets):
        for c, field in enumerate(data.problem.field_names):
            for j in range(min(4, len(fields))):
                ax = axes[2 * i + c, j]
                lim = (ref[:, c].min(), ref[:, c].max())
                ax.imshow(fields[j, c].T, origin="lower", vmin=lim[0], vmax=lim[1])
                ax.set_xticks([])
                ax.set_yticks([])
            axes[2 * i + c, 0].set_ylabel(f"{name}\n{field}", fontsize=7)
    save_figure(fig, out / "samples.png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write ``results.json``, ``results.md`` and figures under ``runs/``."""
    parser = argparse.ArgumentParser(prog="physgen run darcy_benchmark", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2-core CPU configuration")
    parser.add_argument("--families", nargs="+", help=f"subset of {[f[0] for f in FAMILIES]}")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    parser.add_argument("--device", help="override the configuration's device")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument(
        "--save-samples", action="store_true",
        help="also write every row's samples to OUT/samples/FAMILY-seedS.nc (physgen fields)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    cfg = json.loads(json.dumps(CONFIGS["quick" if args.quick else "full"]))
    if args.seeds:
        cfg["seeds"] = args.seeds
    if args.device:
        cfg["device"] = args.device
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        parser.error("the full configuration needs a GPU; use --quick on CPU (or --device cpu)")
    out = args.out or runs_root() / ("darcy_benchmark-quick" if args.quick else "darcy_benchmark")
    result = run_study(cfg, out, args.families, save_samples=args.save_samples)
    print("\n" + table(result["summary"], result["floor"], result["data"]))
    print(f"wrote {out / 'results.md'}, results.json, frontier.png, samples.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
