"""Spectral indefinite integration on Chebyshev–Lobatto nodes (Clenshaw–Curtis)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from numpy.polynomial import chebyshev
from torch import Tensor

__all__ = ["chebyshev_lobatto_nodes", "indefinite_integral_matrix"]


def chebyshev_lobatto_nodes(n: int, domain: Sequence[float] = (-1.0, 1.0)) -> np.ndarray:
    r"""The ``n`` Chebyshev–Lobatto points of ``domain = (a, b)``, float64 ``(n,)``.

    :math:`x_j = a + \tfrac{b-a}2\bigl(1 - \cos\frac{\pi j}{n-1}\bigr)`, ascending, both ends
    included.
    """
    if n < 2:
        raise ValueError(f"chebyshev_lobatto_nodes: need n >= 2 nodes, got {n}")
    a, b = float(domain[0]), float(domain[1])
    t = -np.cos(np.pi * np.arange(n) / (n - 1))  # ascending on [-1, 1]
    return a + 0.5 * (b - a) * (t + 1.0)


@lru_cache(maxsize=32)
def _integral_matrix(points: tuple[float, ...], n: int, a: float, b: float) -> np.ndarray:
    t_nodes = 2.0 * (chebyshev_lobatto_nodes(n, (a, b)) - a) / (b - a) - 1.0
    t_points = 2.0 * (np.asarray(points) - a) / (b - a) - 1.0
    # Columns of the inverse Vandermonde are the Chebyshev coefficients of the cardinal
    # polynomials ℓ_j (ℓ_j(t_i) = δ_ij); integrate each from −1 and evaluate at the points.
    cardinal = np.linalg.inv(chebyshev.chebvander(t_nodes, n - 1))  # (n coefficients, n)
    integrated = chebyshev.chebint(cardinal, lbnd=-1.0, axis=0)  # (n + 1, n)
    return 0.5 * (b - a) * chebyshev.chebvander(t_points, n) @ integrated  # (P, n)


def indefinite_integral_matrix(
    points: Tensor | Sequence[float],
    n_nodes: int = 48,
    domain: Sequence[float] = (-1.0, 1.0),
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Nodes and a matrix that integrate sampled values: :math:`(A g)_p \approx \int_a^{x_p} g`.

    :math:`g` is replaced by its interpolating polynomial of degree :math:`N-1` through the
    :math:`N` = ``n_nodes`` Chebyshev–Lobatto nodes of ``domain = (a, b)``, which is then
    integrated exactly (Clenshaw & Curtis, Numer. Math. 2, 1960; Trefethen, *Spectral Methods in
    MATLAB*, ch. 12). Exact for polynomials of degree < N, spectrally accurate for analytic g.

    Returns ``nodes`` ``(N,)`` and ``A`` ``(P, N)`` for the ``P`` ``points`` (each in
    ``domain``), in ``dtype`` on ``device``; built in float64 and cached per point set.
    """
    a, b = float(domain[0]), float(domain[1])
    if not b > a:
        raise ValueError(f"indefinite_integral_matrix: domain must have b > a, got {domain}")
    values = torch.as_tensor(points, dtype=torch.float64).detach().cpu().reshape(-1)
    span = 1e-12 * (b - a)
    if values.numel() and (values.min() < a - span or values.max() > b + span):
        raise ValueError(
            f"indefinite_integral_matrix: points must lie in the domain [{a}, {b}], got values "
            f"in [{float(values.min())}, {float(values.max())}]"
        )
    matrix = _integral_matrix(tuple(values.tolist()), int(n_nodes), a, b)
    nodes = chebyshev_lobatto_nodes(int(n_nodes), (a, b))
    as_tensor = lambda v: torch.as_tensor(v, dtype=dtype, device=device)  # noqa: E731
    return as_tensor(nodes), as_tensor(matrix)
