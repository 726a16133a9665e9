"""Where the spread of u comes from, and how faithful f̂ is, for a trained SDE PI-VAE.

u's spread in the forward task comes from k and f through the equation alone. Solving
−(1/10)(k u')' = f, u(±1) = 0 with the generator's own tridiagonal solver for pairs (k, f)
taken from the model or the data separates three causes of a wrong u spread: k's marginal,
f̂'s marginal and the dependence between generated k and f̂ (independent in the data).
The f̂ rows compare the generated forcing with the data's, near the walls and inside.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from physgen.metrics.distribution import total_std, total_std_error
from physgen.models.pivae_sde import SDEPIVAE
from physgen.problem import Problem

__all__ = ["coupling_table", "solve_pairs"]


def solve_pairs(problem: Problem, k: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """u ``(N, n)`` solving the problem for each row of k and f ``(N, n)`` (float64)."""
    pairs = zip(k.double().numpy(), f.double().numpy(), strict=True)
    return torch.from_numpy(np.stack([problem.solve(kr, fr) for kr, fr in pairs]))


def coupling_table(
    model: SDEPIVAE, problem: Problem, fields: torch.Tensor, n: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Total std of u (every second node, as the study's u-std) for data and generated pairs.

    ``fields`` ``(N, 3, n_grid)`` are (k, u, f) of the data; ``n`` decodings of z ~ N(0, I)
    (seeded) against the first ``n`` data samples. Also: the correlation of generated log k
    and f̂ at x = 0; f̂'s total-std error and pointwise std at the two walls and over the
    middle fifth of the domain (data: std of f); the mean |residual| / RMS(f̂) of the decoded
    triple (float64) within 10 nodes of a wall and elsewhere.
    """
    n = min(n, len(fields))
    grid = torch.as_tensor(problem.grid.coords(0), dtype=model.u_coords.dtype)
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed + 7))
    model.eval()
    u_gen, k_gen, f_gen = model.sample_fields(0, grid, z=z).unbind(1)  # each (n, n_grid)
    k_ref, u_ref, f_ref = fields[:n].unbind(1)
    shuffled = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 8))
    spread = lambda u: float(total_std(u[:, ::2]))  # noqa: E731
    mid = grid.numel() // 2
    pair = torch.stack([k_gen[:, mid].log(), f_gen[:, mid]])
    exact = copy.deepcopy(model).double()  # the residual in float64, free of storage rounding
    decoded = exact.sample_fields(0, grid.double(), z=z.double())  # (n, 3, n_grid)
    triple = torch.stack([decoded[:, 1], decoded[:, 0], decoded[:, 2]], dim=1)  # (k, u, f̂)
    relative = problem.residual(triple).abs() / decoded[:, 2].pow(2).mean(1, keepdim=True).sqrt()
    relative = relative.mean(0)  # (n_grid − 2,) interior nodes
    centre = slice(2 * grid.numel() // 5, 3 * grid.numel() // 5)
    return {
        "data u": spread(u_ref),
        "decoded u": spread(u_gen),
        "solve(generated k, generated f̂)": spread(solve_pairs(problem, k_gen, f_gen)),
        "solve(generated k, shuffled generated f̂)": spread(
            solve_pairs(problem, k_gen, f_gen[shuffled])
        ),
        "solve(generated k, data f)": spread(solve_pairs(problem, k_gen, f_ref)),
        "solve(data k, generated f̂)": spread(solve_pairs(problem, k_ref, f_gen)),
        "corr(log k, f̂) at x = 0": float(torch.corrcoef(pair)[0, 1]),
        "f̂ total-std error": float(total_std_error(f_gen[:, ::2], f_ref[:, ::2])),
        "f̂ std at the walls (data: f)": float(f_gen[:, [0, -1]].std(0).mean()),
        "f̂ std in the middle fifth (data: f)": float(f_gen[:, centre].std(0).mean()),
        "data f std": float(f_ref.std(0).mean()),
        "mean |r|/RMS(f̂) within 10 nodes of a wall": float(
            torch.cat([relative[:10], relative[-10:]]).mean()
        ),
        "mean |r|/RMS(f̂) elsewhere": float(relative[10:-10].mean()),
    }
