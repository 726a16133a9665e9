"""The PI-WGAN baseline row of the SDE study: train PI-GAN on sde1d sensors, score u and k."""

from __future__ import annotations

import time
from typing import Any

import torch

from physgen.metrics.sde_sensors import evaluate_sde, sensor_data
from physgen.models.pigan import PIGAN
from physgen.problem import Problem, load
from physgen.training import fit
from physgen.utils import seed_everything

__all__ = ["pigan_row"]


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
    the PI-VAE study (``physgen.metrics.sde_sensors.evaluate_sde``): relative L2 error of the mean
    curve and relative error of the total standard deviation of u and k, from ``n_eval``
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
    fields = problem.to_tensor(problem.generate(n_data, seed=data_seed), dtype=torch.float32)
    data, coords = sensor_data(problem, fields, task)

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

    row = {"method": "PI-WGAN", "task": task, "steps": steps, "train_s": round(train_s, 1)}
    return {**row, **evaluate_sde(model, problem, fields, n_eval, eval_points, seed)}
