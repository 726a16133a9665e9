"""The PI-WGAN baseline row of the SDE study: train PI-GAN on sde1d sensors, score u and k."""

from __future__ import annotations

import time
from typing import Any

import torch

from physgen.metrics.distribution import mean_field_error, total_std_error
from physgen.models.pigan import PIGAN
from physgen.problem import Problem, load
from physgen.training import fit
from physgen.utils import seed_everything

__all__ = ["pigan_row"]


def _sensor_data(problem: Problem, fields: torch.Tensor, task: str) -> tuple[torch.Tensor, dict]:
    """Sensor vectors ``[u, k, f]`` of ``fields`` ``(B, 3, n)`` and their coordinates by field."""
    sensors = problem.observations()[task]
    x = problem.grid.coords(0)
    coords: dict[str, list[float]] = {"u": [], "k": [], "f": []}
    for label, (_, (i,)) in zip(sensors.labels, sensors.points, strict=True):
        coords[label.split("[")[0]].append(float(x[i]))
    return sensors(fields), coords


def pigan_row(
    task: str = "forward",
    n_data: int = 2000,
    data_seed: int = 0,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-4,
    betas: tuple[float, float] = (0.5, 0.9),
    schedule: str = "constant",
    n_eval: int = 5000,
    eval_points: int = 201,
    seed: int = 0,
    device: str | torch.device = "cpu",
    problem: Problem | None = None,
    **model_options: Any,
) -> dict[str, Any]:
    """Train the PI-WGAN baseline (Yang, Zhang & Karniadakis 2020) and return its metrics row.

    The data are ``n_data`` samples of the ``sde1d`` problem read at the sensors of ``task``
    (``forward``: u at the two boundaries, 17 k-, 21 f-sensors). PI-GAN is trained by
    ``physgen.training.fit`` with Adam (``lr``, ``betas``, ``schedule``), ``n_critic`` critic
    steps per generator step (``steps`` counts generator steps). The errors are those of
    the PI-VAE study: relative L2 error of the mean curve (``mean_field_error``) and relative
    error of the total standard deviation (``total_std_error``) of u and k, from ``n_eval``
    generated fields against the ``n_data`` reference fields on ``eval_points`` equispaced
    grid points (a fixed evaluation noise set, seeded by ``seed``).

    Returns:
        A dict: ``method``, ``task``, ``steps``, ``train_s``, ``u_mean_err``, ``u_std_err``,
        ``k_mean_err``, ``k_std_err``, plus ``residual`` (median relative discrete residual of
        generated fields on the problem grid) and ``boundary`` (mean |u(-1)| + |u(1)|).
    """
    problem = load("sde1d") if problem is None else problem
    if problem.field_names != ("k", "u", "f"):
        raise ValueError(f"pigan_row needs the sde1d fields (k, u, f); got {problem.field_names}")
    n_grid = problem.grid.shape[0]
    if (n_grid - 1) % (eval_points - 1):
        raise ValueError(f"eval_points={eval_points} must divide the {n_grid}-node grid evenly")
    device = torch.device(device)
    fields = problem.to_tensor(problem.generate(n_data, seed=data_seed), dtype=torch.float32)
    data, coords = _sensor_data(problem, fields, task)

    seed_everything(seed)
    model = PIGAN(
        u_sensors=coords["u"], k_sensors=coords["k"], f_sensors=coords["f"], **model_options
    )
    start = time.perf_counter()
    fit(
        model,
        data,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        betas=betas,
        schedule=schedule,
        seed=seed,
        device=device,
        progress=False,
    )
    train_s = time.perf_counter() - start

    stride = (n_grid - 1) // (eval_points - 1)
    grid = torch.as_tensor(problem.grid.coords(0), dtype=torch.float32, device=device)
    z = model.latent(n_eval, device, torch.Generator(device="cpu").manual_seed(seed + 1))
    gen = torch.cat([model.sample_fields(0, grid, z=chunk) for chunk in z.split(1000)])
    u_gen, k_gen = gen[:, 0, ::stride].cpu(), gen[:, 1, ::stride].cpu()
    k_ref, u_ref = fields[:, 0, ::stride], fields[:, 1, ::stride]
    generated = torch.stack([gen[:, 1], gen[:, 0], gen[:, 2]], dim=1).double().cpu()  # (k, u, f)
    return {
        "method": "PI-WGAN",
        "task": task,
        "steps": steps,
        "train_s": round(train_s, 1),
        "u_mean_err": float(mean_field_error(u_gen, u_ref)),
        "u_std_err": float(total_std_error(u_gen, u_ref)),
        "k_mean_err": float(mean_field_error(k_gen, k_ref)),
        "k_std_err": float(total_std_error(k_gen, k_ref)),
        "residual": float(problem.relative_residual(generated).median()),
        "boundary": float(problem.constraints(generated)["boundary"].mean()),
    }
