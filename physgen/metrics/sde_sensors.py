"""Sensor readings of the stochastic elliptic problem and the PI-VAE paper's scores on them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from physgen.models.pivae_sde import SDEPIVAE
    from physgen.problem import Problem

__all__ = ["evaluate_sde", "sensor_data"]


def sensor_data(
    problem: Problem, fields: Tensor, task: str
) -> tuple[Tensor, dict[str, list[float]]]:
    """Sensor vectors ``[u, k, f]`` of ``fields`` ``(B, 3, n)`` for ``task`` and their coordinates.

    ``task`` names one of ``problem.observations()`` (for ``sde1d``: ``forward``, ``mixed``,
    ``inverse``); the coordinates by field feed `SDEPIVAE`'s ``u_sensors`` etc.
    """
    observations = problem.observations()
    if task not in observations:
        raise KeyError(
            f"problem {problem.name!r} has no sensor set {task!r}; known: {sorted(observations)}"
        )
    sensors = observations[task]
    x = problem.grid.coords(0)
    coords: dict[str, list[float]] = {"u": [], "k": [], "f": []}
    for label, (_, (i,)) in zip(sensors.labels, sensors.points, strict=True):
        coords[label.split("[")[0]].append(float(x[i]))
    return sensors(fields), coords


def evaluate_sde(
    model: SDEPIVAE,
    problem: Problem,
    fields: Tensor,
    n_eval: int = 5000,
    eval_points: int = 201,
    seed: int = 0,
) -> dict[str, float]:
    """Zhong & Meidani's errors of a trained `SDEPIVAE`, plus the residual of its decodings.

    ``n_eval`` decodings of a fixed z-set (seeded by ``seed``) on the problem grid; u and k
    are compared on ``eval_points`` equispaced nodes with the reference ``fields``
    ``(N, 3, n)`` (k, u, f): relative L2 error of the mean curve and relative error of the
    scalar total std (the paper code's ``std_cal``), and, for u, k and f̂, the relative L2
    error of the pointwise std curve, ‖σ̂(x) − σ(x)‖₂ / ‖σ(x)‖₂ (``*_std_curve_err``, PI-GAN's
    comparison of std curves, Yang et al., arXiv:1811.02033). ``residual`` is the median
    relative residual of the decoded (k, u, f̂) under the generator's discrete operator,
    ``boundary`` the mean ``|u(−1)| + |u(1)|``.
    """
    from physgen.metrics.distribution import mean_field_error, std_field_error, total_std_error

    n_grid = problem.grid.shape[0]
    if (n_grid - 1) % (eval_points - 1):
        raise ValueError(f"eval_points={eval_points} must divide the {n_grid}-node grid evenly")
    stride = (n_grid - 1) // (eval_points - 1)
    device = model.u_coords.device
    grid = torch.as_tensor(problem.grid.coords(0), dtype=model.u_coords.dtype, device=device)
    z = torch.randn(n_eval, model.latent_dim, generator=torch.Generator().manual_seed(seed + 1))
    model.eval()
    gen = torch.cat([model.sample_fields(0, grid, z=c.to(grid)) for c in z.split(1000)]).cpu()
    u_gen, k_gen, f_gen = gen[:, 0, ::stride], gen[:, 1, ::stride], gen[:, 2, ::stride]
    k_ref, u_ref, f_ref = fields[:, 0, ::stride], fields[:, 1, ::stride], fields[:, 2, ::stride]
    decoded = torch.stack([gen[:, 1], gen[:, 0], gen[:, 2]], dim=1).double()  # (k, u, f̂)
    return {
        "u_mean_err": float(mean_field_error(u_gen, u_ref)),
        "u_std_err": float(total_std_error(u_gen, u_ref)),
        "k_mean_err": float(mean_field_error(k_gen, k_ref)),
        "k_std_err": float(total_std_error(k_gen, k_ref)),
        "u_std_curve_err": float(std_field_error(u_gen, u_ref)),
        "k_std_curve_err": float(std_field_error(k_gen, k_ref)),
        "f_std_curve_err": float(std_field_error(f_gen, f_ref)),
        "residual": float(problem.relative_residual(decoded).median()),
        "boundary": float(problem.constraints(decoded)["boundary"].mean()),
    }
