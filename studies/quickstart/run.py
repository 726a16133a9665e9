"""Quickstart study: generate a small physgen dataset, check its physics, write a report.

Steps (each a function of the shared ``Context``; later steps append to ``STEPS``):

1. ``generate``: draw samples from a built-in problem (default ``sde1d``, the PI-GAN/PI-VAE
   stochastic elliptic problem) and write them as physgen-field/1 files;
2. ``physics``: residual of the generator output (float64) and of the stored float32 file
   against the problem's discrete operator, plus its constraints;
3. ``figures``: sample panels and the residual histogram;
4. ``pivae``: train physgen's PI-VAE (Zhong & Meidani's form with Zhu et al.'s boundary
   physics) on the forward sensors of the data (u only at the two boundaries, k and f at
   17 and 21 points), sample 2000 fields, and score them: u/k mean and total-std errors,
   discrete residual of the decoded fields, figures of mean ± std and the loss curve;
5. ``report``: ``report.md`` beside the figures under ``runs/quickstart-<timestamp>/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from physgen.data import open_fields, write_fields
from physgen.data.atomic import atomic_output
from physgen.metrics.sde_sensors import evaluate_sde, sensor_data
from physgen.models.pivae_sde import SDEPIVAE
from physgen.paths import runs_root
from physgen.plotting import (
    axis_label,
    mean_std_figure,
    plot_loss_curves,
    plot_marginals,
    plot_sample_grid,
    read_training_log,
    save_figure,
)
from physgen.problem import Problem, load
from physgen.training import fit

__all__ = ["STEPS", "Context", "main"]


@dataclass
class Context:
    """What the steps share: the problem, the run folder, and what each step found."""

    problem: Problem
    out: Path
    n_samples: int
    seed: int
    epochs: int = 300
    files: dict[str, Path] = field(default_factory=dict)
    results: dict[str, object] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def generate(ctx: Context) -> None:
    """Generate ``n_samples`` samples and write train/valid files (80/20 split)."""
    n_train = max(1, int(0.8 * ctx.n_samples))
    splits = {"train": (0, n_train), "valid": (n_train, ctx.n_samples - n_train)}
    for split, (start, n) in splits.items():
        if n == 0:
            continue
        ds = ctx.problem.generate(n, ctx.seed, start=start)
        if split == "train":
            ctx.results["train_float64"] = ctx.problem.to_tensor(ds)
        ctx.files[split] = write_fields(
            ds, ctx.out / "data" / f"{split}.nc", provenance={"split": split}
        )
    sizes = ", ".join(f"{k} {v[1]}" for k, v in splits.items() if v[1])
    ctx.sections.append(
        f"## Data\n\nProblem `{ctx.problem.name}` ({ctx.problem.pde}), parameters "
        f"`{json.dumps(ctx.problem.params.__dict__)}`, seed {ctx.seed}: {sizes} samples of "
        f"shape {ctx.problem.sample_shape()} (fields {', '.join(ctx.problem.field_names)}), "
        f"written as physgen-field/1 to `{ctx.out / 'data'}`."
    )


def physics(ctx: Context) -> None:
    """Relative residual of the float64 generator output and of the stored float32 file."""
    problem = ctx.problem
    stored = problem.to_tensor(open_fields(ctx.files["train"], load=True))
    rows = []
    try:
        exact = problem.relative_residual(ctx.results["train_float64"])
        on_disk = problem.relative_residual(stored)
    except NotImplementedError:
        ctx.sections.append("## Physics\n\nThis problem states no PDE residual.")
        return
    ctx.results["residual_float32"] = on_disk.numpy()
    for label, r in (("generator output (float64)", exact), ("stored file (float32)", on_disk)):
        rows.append(f"| {label} | {float(r.median()):.2e} | {float(r.max()):.2e} |")
    constraint_rows = [
        f"| {name} | {float(v.max()):.2e} |" for name, v in problem.constraints(stored).items()
    ]
    text = (
        "## Physics\n\nRelative residual RMS(r)/scale per sample, with the problem's own "
        "discrete operator (the floor any generated sample is compared with):\n\n"
        "| data | median | max |\n|---|---|---|\n" + "\n".join(rows)
    )
    if constraint_rows:
        text += "\n\nConstraint violations (stored file, max over samples):\n\n"
        text += "| constraint | max |\n|---|---|\n" + "\n".join(constraint_rows)
    ctx.sections.append(text)


def figure(ctx: Context, path: Path, caption: str) -> str:
    """The report's Markdown for a figure: the image and its numbered caption."""
    number = int(ctx.results.get("figures", 0)) + 1  # figures are numbered through the report
    ctx.results["figures"] = number
    return f"![Figure {number}]({path.name})\n\n*Figure {number}.* {caption}"


def figures(ctx: Context) -> None:
    """Sample panels for every field and the residual histogram of the stored data."""
    ds = open_fields(ctx.files["train"], load=True)
    lines = ["## Figures"]
    for name in ctx.problem.field_names:
        path = plot_sample_grid(
            ds[name], ctx.out / f"samples_{name}.png", n=4, title=name, label="training data"
        )
        what = ds[name].attrs.get("long_name", name)
        lines.append(
            figure(ctx, path, f"The first four training samples of {name} ({what}), as stored.")
        )
    if "residual_float32" in ctx.results:
        residual = np.log10(np.asarray(ctx.results["residual_float32"]))
        path = plot_marginals(
            {"stored data": residual},
            ctx.out / "residual_histogram.png",
            bins=30,
            xlabel="log10 relative residual",
            title="PDE residual of the stored training data",
        )
        lines.append(
            figure(
                ctx,
                path,
                f"Histogram of the per-sample relative PDE residual RMS(r)/scale of the "
                f"{len(residual)} stored (float32) training samples, on a log10 scale: the "
                "floor any generated sample is compared with.",
            )
        )
    ctx.sections.append("\n\n".join(lines))


# The study's PI-VAE (studies/pivae_sde: flux form with exact walls, log k in the MMD),
# narrower so the quickstart stays within minutes.
PIVAE_OPTIONS = {
    "form": "flux",
    "exact_boundary": True,
    "mmd_k": "log",
    "latent_dim": 8,
    "width": 64,
    "depth": 2,
    "decoder": "chebyshev",
    "degree": 16,
    "k_transform": "exp",
    "encoder_logvar": "linear",
    "alpha1": 10.0,
    "alpha2": 10.0,
    "n_syn": 1000,
}


def pivae(ctx: Context) -> None:
    """Train a PI-VAE on the forward sensors, sample fields and score them against the data."""
    problem = ctx.problem
    if "forward" not in problem.observations():
        ctx.sections.append(
            f"## PI-VAE\n\nSkipped: problem `{problem.name}` has no `forward` sensor set "
            "(the PI-VAE step runs on `sde1d`)."
        )
        return
    fields = ctx.results["train_float64"].float()  # (N, 3, n): k, u, f
    data, coords = sensor_data(problem, fields, "forward")
    batch = min(120, len(data))
    model = SDEPIVAE(
        u_sensors=coords["u"], k_sensors=coords["k"], f_sensors=coords["f"], **PIVAE_OPTIONS
    )
    log = ctx.out / "pivae_log.jsonl"
    start = time.perf_counter()
    fit(
        model,
        data,
        epochs=ctx.epochs,
        batch_size=batch,
        lr=2e-3,
        schedule="cosine",
        seed=ctx.seed,
        progress=False,
        log_file=log,
        log_every=max(1, ctx.epochs * (len(data) // batch) // 50),
    )
    train_s = time.perf_counter() - start
    scores = evaluate_sde(model, problem, fields, n_eval=2000, seed=ctx.seed)
    grid = torch.as_tensor(problem.grid.coords(0), dtype=torch.float32)
    z = torch.randn(2000, model.latent_dim, generator=torch.Generator().manual_seed(ctx.seed))
    generated = model.sample_fields(0, grid, z=z)  # (2000, 3, n): u, k, f̂
    with open_fields(ctx.files["train"], nonfinite="ignore") as stored:
        xlabel = axis_label(stored["x"], "x")
        ylabels = {name: axis_label(stored[name], name) for name in ("u", "k")}
    panels = {
        name: {"data": ref.numpy(), "PI-VAE": gen.numpy()}
        for name, gen, ref in zip(
            ("u", "k"), generated[:, :2].unbind(1), (fields[:, 1], fields[:, 0]), strict=True
        )
    }
    fig = mean_std_figure(
        grid.numpy(),
        panels,
        xlabel=xlabel,
        ylabels=ylabels,
    )
    mean_std = save_figure(fig, ctx.out / "pivae_mean_std.png")
    loss = plot_loss_curves(
        log, ctx.out / "pivae_loss.png", keys=["loss"], title="PI-VAE training loss"
    )
    steps = int(read_training_log(log)[-1]["step"])
    ctx.results["pivae"] = scores
    ctx.sections.append(
        "## PI-VAE\n\n"
        f"physgen PI-VAE trained {ctx.epochs} epochs ({steps} optimizer steps of batch "
        f"{batch}) on the forward sensors of {len(data)} samples (u at the 2 boundaries, k at "
        f"{len(coords['k'])}, f at {len(coords['f'])} points); the training took "
        f"{train_s:.0f} s of this step (the timings below also count sampling and scoring). "
        "Errors of 2000 generated fields against the data "
        "(relative L2 error of the mean curve, relative error of the total std), the median "
        "relative residual of the decoded (k, u, f̂) under the generator's discrete operator, "
        "and the mean |u(−1)| + |u(1)|:\n\n"
        "| u-mean | u-std | k-mean | k-std | residual | \\|u(±1)\\| |\n|---|---|---|---|---|---|\n"
        f"| {scores['u_mean_err']:.3f} | {scores['u_std_err']:.3f} | {scores['k_mean_err']:.3f} "
        f"| {scores['k_std_err']:.3f} | {scores['residual']:.1e} | {scores['boundary']:.1e} |\n\n"
        + figure(
            ctx,
            mean_std,
            "Mean (line) and ±1 standard deviation (band) across samples, as functions of x, "
            f"of the solution u and the diffusion coefficient k: the {len(fields)} training "
            "samples against 2000 PI-VAE samples.",
        )
        + "\n\n"
        + figure(
            ctx,
            loss,
            "PI-VAE training loss (the model's objective, mean over each logging window) "
            f"against the optimizer step: {steps} steps = {ctx.epochs} epochs.",
        )
    )


STEPS: list[Callable[[Context], None]] = [generate, physics, figures, pivae]


def _utc_now() -> str:
    return f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"


def write_report(ctx: Context) -> Path:
    """Write ``report.md`` atomically and return its path."""
    timing = "\n".join(f"| {k} | {v:.2f} |" for k, v in ctx.timings.items())
    text = "\n\n".join(
        [
            f"# physgen quickstart — {ctx.problem.name}",
            f"Run folder `{ctx.out}`, created {_utc_now()}.",
            *ctx.sections,
            "## Timings\n\n| step | seconds |\n|---|---|\n" + timing,
        ]
    )
    path = ctx.out / "report.md"
    with atomic_output(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path


def main(argv: list[str]) -> int:
    """Run the quickstart; ``argv`` are the study's own arguments (see ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="physgen run quickstart", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--problem", default="sde1d", help="problem name or .py file (sde1d)")
    parser.add_argument("--samples", type=int, default=300, help="number of samples (300)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (0)")
    parser.add_argument("--epochs", type=int, default=300, help="PI-VAE training epochs (300)")
    parser.add_argument(
        "--out", type=Path, default=None, help="run folder (runs/quickstart-<time>)"
    )
    args = parser.parse_args(argv)
    if args.samples < 2:
        raise ValueError(f"--samples must be at least 2, got {args.samples}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or runs_root() / f"quickstart-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        problem=load(args.problem),
        out=out,
        n_samples=args.samples,
        seed=args.seed,
        epochs=args.epochs,
    )
    for step in STEPS:
        start = time.perf_counter()
        step(ctx)
        ctx.timings[step.__name__] = time.perf_counter() - start
    report = write_report(ctx)
    print(f"quickstart: report written to {report}")
    return 0
