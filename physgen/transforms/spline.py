"""Monotone rational-quadratic splines with identity tails (the neural spline flow map)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..utils import full_precision

__all__ = ["rq_spline"]


def _knots(raw: Tensor, bound: float, min_size: float) -> tuple[Tensor, Tensor]:
    """Bin sizes and knot positions on [-bound, bound] from unconstrained logits."""
    k = raw.shape[-1]
    sizes = min_size + (1 - min_size * k) * torch.softmax(raw, dim=-1)
    knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))  # (..., K + 1), from 0 to 1
    knots = 2 * bound * knots - bound
    # Pin the ends exactly, so the spline meets the identity tails without a gap.
    knots = torch.cat(
        [
            torch.full_like(knots[..., :1], -bound),
            knots[..., 1:-1],
            torch.full_like(knots[..., :1], bound),
        ],
        dim=-1,
    )
    return knots[..., 1:] - knots[..., :-1], knots


def rq_spline(
    x: Tensor,
    widths: Tensor,
    heights: Tensor,
    derivatives: Tensor,
    bound: float = 5.0,
    inverse: bool = False,
    min_bin: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    r"""Elementwise monotone rational-quadratic spline on :math:`[-B, B]`, identity outside.

    With knots :math:`(x_k, y_k)`, derivatives :math:`\delta_k` (1 at both ends, so the map
    is :math:`C^1` with the identity tails), :math:`s_k = h_k / w_k` and
    :math:`\xi = (x - x_k) / w_k` in bin :math:`k`:

    .. math:: g(x) = y_k + \frac{h_k [s_k \xi^2 + \delta_k \xi (1 - \xi)]}
                               {s_k + (\delta_{k+1} + \delta_k - 2 s_k)\, \xi (1 - \xi)},

    .. math:: g'(x) = \frac{s_k^2 [\delta_{k+1} \xi^2 + 2 s_k \xi (1 - \xi)
                     + \delta_k (1 - \xi)^2]}{[s_k + (\delta_{k+1} + \delta_k - 2 s_k)
                     \xi (1 - \xi)]^2}.

    The inverse solves the quadratic in :math:`\xi` in its stable root form. Values outside
    the bound pass through with log-derivative 0; the spline is evaluated there at a clamped
    input, so no NaN or Inf arises for any finite input.

    Arguments:
        x: Input, any shape ``S``.
        widths, heights: Unconstrained bin logits, shape ``(*S, K)``.
        derivatives: Unconstrained interior knot derivatives, shape ``(*S, K - 1)``.
        bound: Half-width :math:`B` of the spline interval.
        inverse: Evaluate :math:`g^{-1}` instead of :math:`g`.

    Returns:
        ``(g(x), log|g'(x)|)`` (or the inverse and its log-derivative), each of shape ``S``,
        in at least float32 (bf16 conditioner outputs under autocast are promoted).

    References:
        Neural Spline Flows (Durkan, Bekasov, Murray and Papamakarios, 2019),
        https://arxiv.org/abs/1906.04032
    """
    x, widths, heights = full_precision(x), full_precision(widths), full_precision(heights)
    derivatives = full_precision(derivatives)
    w, xk = _knots(widths, bound, min_bin)
    h, yk = _knots(heights, bound, min_bin)
    d = min_derivative + F.softplus(derivatives)
    d = F.pad(d, (1, 1), value=1.0)  # (..., K + 1): slope 1 at both ends

    inside = (x > -bound) & (x < bound)
    xc = x.clamp(-bound, bound)
    ref = yk if inverse else xk
    k = (xc.unsqueeze(-1) >= ref[..., 1:-1]).sum(-1, keepdim=True)  # bin index, (*S, 1)

    def pick(t: Tensor) -> Tensor:
        return t.gather(-1, k).squeeze(-1)

    x_k, y_k, w_k, h_k = pick(xk), pick(yk), pick(w), pick(h)
    d_k, d_k1 = pick(d), d[..., 1:].gather(-1, k).squeeze(-1)
    s_k = h_k / w_k
    curve = d_k1 + d_k - 2 * s_k

    if inverse:
        dy = xc - y_k
        a = h_k * (s_k - d_k) + dy * curve
        b = h_k * d_k - dy * curve
        c = -s_k * dy
        disc = (b.square() - 4 * a * c).clamp_min(0)
        xi = (2 * c) / (-b - disc.sqrt())
        out = x_k + xi * w_k
    else:
        xi = (xc - x_k) / w_k
        out = y_k + h_k * (s_k * xi.square() + d_k * xi * (1 - xi)) / (s_k + curve * xi * (1 - xi))

    xi1 = xi * (1 - xi)
    log_deriv = (
        2 * torch.log(s_k)
        + torch.log(d_k1 * xi.square() + 2 * s_k * xi1 + d_k * (1 - xi).square())
        - 2 * torch.log(s_k + curve * xi1)
    )
    if inverse:
        log_deriv = -log_deriv
    return torch.where(inside, out, x), torch.where(inside, log_deriv, 0.0)
