r"""Conflict-free combination of several loss gradients (ConFIG, Liu et al., ICLR 2025)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["conflict_free_direction"]


def conflict_free_direction(grads: Sequence[Tensor], eps: float = 1e-12) -> Tensor:
    r"""The ConFIG update of gradients :math:`g_1, \dots, g_m` (flattened, one per loss).

    With unit vectors :math:`\hat g_i = g_i / \|g_i\|` and :math:`G = [\hat g_1, \dots,
    \hat g_m]^\top`, the direction :math:`u = G^{+}\mathbf 1` is the minimum-norm vector with
    :math:`\hat g_i^\top u = 1` for every i: it makes the same angle with every gradient, so a
    small step along it decreases every loss at once whenever such a direction exists. Its
    length is the summed projection of the raw gradients on it:

    .. math:: g_c = \Big(\sum_i g_i^\top \hat u\Big)\,\hat u, \qquad \hat u = u / \|u\|

    (Liu, Chu & Thuerey, "ConFIG: Towards conflict-free training of physics informed neural
    networks", ICLR 2025, eqs. 2–3). For two gradients :math:`\hat u` is the bisector of
    :math:`\hat g_1` and :math:`\hat g_2`. A zero gradient (a loss that is already at its
    minimum, e.g. a PDE residual on exact solutions) is left out, so one loss alone gives its
    own gradient back.

    Args:
        grads: ``m`` gradients of equal shape (any shape; they are flattened).
        eps: norms below this count as zero.

    Returns:
        The combined gradient, shaped like ``grads[0]``; zeros if every gradient is zero.
    """
    if not grads:
        raise ValueError("conflict_free_direction needs at least one gradient")
    shape = grads[0].shape
    for i, g in enumerate(grads):
        if g.shape != shape:
            raise ValueError(
                f"conflict_free_direction: gradient {i} has shape {tuple(g.shape)}, expected "
                f"{tuple(shape)} (the shape of gradient 0)"
            )
    flat = torch.stack([g.reshape(-1) for g in grads])  # (m, P)
    norms = flat.norm(dim=1)
    keep = norms > eps
    if not bool(keep.any()):
        return torch.zeros_like(grads[0])
    flat, norms = flat[keep], norms[keep]
    units = flat / norms[:, None]  # (m', P)
    # u = G⁺ 1 through the m'×m' Gram matrix: G⁺ = Gᵀ (G Gᵀ)⁺ for a full-row-rank G.
    gram = units @ units.T  # (m', m')
    ones = torch.ones(units.shape[0], 1, dtype=units.dtype, device=units.device)
    coef = torch.linalg.pinv(gram) @ ones  # (m', 1)
    direction = (units * coef).sum(0)  # (P,)
    length = direction.norm()
    if not length > eps:
        return torch.zeros_like(grads[0])
    direction = direction / length
    return ((flat @ direction).sum() * direction).reshape(shape)
