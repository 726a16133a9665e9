"""Differential operators on a ``Grid``: finite differences with ghost values, and spectral.

Every operator acts on the trailing ``grid.ndim`` axes of a tensor ``(..., *grid.shape)`` —
typically ``(B, C, *grid)`` or ``(B, C, T, *grid)`` — and is built from differentiable torch
operations, so it runs on any device, in float32 or float64, and under autograd.

* ``method="fd"``: second-order central differences; ghost values come from the boundary
  condition (``pad``).
* ``method="spectral"``: exact differentiation of the trigonometric interpolant on periodic
  axes, ``k = 2π fftfreq(n, d=h)``; the Nyquist mode is dropped for odd derivatives.
* ``dealias``: Orszag's 2/3 rule — Fourier modes with ``|k_i| >= n_i / 3`` (integer
  wavenumbers) are removed from a nonlinear product.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from physgen.grids import Grid

__all__ = [
    "advection",
    "curl",
    "dealias",
    "dealias_mask",
    "derivative",
    "divergence",
    "flux_divergence",
    "gradient",
    "laplacian",
    "pad",
    "stream_function",
    "time_derivative",
    "velocity_from_vorticity",
    "vorticity_tendency",
    "wavenumbers",
]

Method = Literal["fd", "spectral"]
VectorBC = Literal["gradient", "scalar"]


def _dim(u: Tensor, grid: Grid, axis: int) -> int:
    """Tensor dimension of spatial ``axis`` in a ``(..., *grid)`` tensor."""
    if tuple(u.shape[u.ndim - grid.ndim :]) != grid.shape:
        raise ValueError(
            f"field of shape {tuple(u.shape)} does not end with the grid shape {grid.shape}"
        )
    if not 0 <= axis < grid.ndim:
        raise ValueError(f"axis {axis} out of range for a {grid.ndim}-D grid")
    return u.ndim - grid.ndim + axis


def pad(
    u: Tensor,
    grid: Grid,
    axis: int,
    width: int = 1,
    *,
    even: bool = False,
    normal: bool = False,
) -> Tensor:
    """Add ``width`` ghost layers on both ends of spatial ``axis`` from its boundary condition.

    * periodic: wrap around;
    * dirichlet (u = 0 on the boundary): odd reflection about the boundary — ghost
      ``u_{-j} = -u_{j-1}`` on a cell grid (boundary half a cell out), ``u_{-j} = 2u_0 - u_j``
      on a node grid (boundary node stored);
    * neumann (∂u/∂n = 0): even reflection — ``u_{-j} = u_{j-1}`` (cell), ``u_{-j} = u_j`` (node).

    ``even=True`` uses the even reflection on Dirichlet axes too; it extends a coefficient
    such as a permeability, which has no boundary condition of its own.

    ``normal=True`` pads the component ``v_axis`` of a vector field normal to this axis's
    walls, for a vector like the gradient of a field that obeys the boundary condition: if
    ``u`` extends oddly across the wall, ``∂u/∂x_axis`` extends evenly, and vice versa. The
    reflection is therefore swapped — even on a Dirichlet axis (``∂_n u`` is free at the
    wall, its own normal derivative ``∂²_n u = Δu`` vanishes there), odd on a Neumann axis
    (``∂_n u = 0``). With these ghosts the central difference of the discrete gradient is the
    gradient of the discretely extended field, so ``divergence(gradient(u))`` is the wide
    stencil ``(u_{i+2} − 2u_i + u_{i−2}) / 4h²`` of the extended ``u`` at every point.
    """
    if even and normal:
        raise ValueError("pad: even and normal are exclusive")
    d = _dim(u, grid, axis)
    n = u.shape[d]
    if width > n - 1:
        raise ValueError(f"pad: width {width} needs more than {n} points along axis {axis}")
    bc = grid.bc[axis]
    if bc == "periodic":
        return torch.cat([u.narrow(d, n - width, width), u, u.narrow(d, 0, width)], dim=d)
    odd = (bc == "dirichlet") != normal and not even
    node = grid.centering == "node"
    # Mirror images: cell grids reflect about the face (index -1/2), node grids about index 0.
    lo = u.narrow(d, 1 if node else 0, width).flip(d)
    hi = u.narrow(d, n - width - (1 if node else 0), width).flip(d)
    if odd:
        if node:
            lo = 2 * u.narrow(d, 0, 1) - lo
            hi = 2 * u.narrow(d, n - 1, 1) - hi
        else:
            lo, hi = -lo, -hi
    return torch.cat([lo, u, hi], dim=d)


def wavenumbers(grid: Grid, axis: int, *, real: bool = False, device=None, dtype=None) -> Tensor:
    """Angular wavenumbers ``2π fftfreq(n, d=h)`` of ``axis`` (``rfftfreq`` when ``real``)."""
    if grid.bc[axis] != "periodic":
        raise ValueError(f"spectral operators need a periodic axis; axis {axis} is {grid.bc[axis]}")
    n, h = grid.shape[axis], grid.spacing[axis]
    freq = torch.fft.rfftfreq if real else torch.fft.fftfreq
    return 2 * math.pi * freq(n, d=h, device=device, dtype=dtype or torch.float64)


def _spectral_derivative(u: Tensor, grid: Grid, axis: int, order: int) -> Tensor:
    d = _dim(u, grid, axis)
    n = grid.shape[axis]
    real_dtype = u.dtype if u.is_floating_point() else torch.get_default_dtype()
    k = wavenumbers(grid, axis, real=True, device=u.device, dtype=real_dtype)
    factor = (1j * k) ** order
    if order % 2 == 1 and n % 2 == 0:
        # The Nyquist mode's derivative is ambiguous (its sine part is not resolved): drop it.
        factor[-1] = 0
    shape = [1] * u.ndim
    shape[d] = k.numel()
    u_hat = torch.fft.rfft(u, dim=d)
    return torch.fft.irfft(u_hat * factor.reshape(shape), n=n, dim=d)


def derivative(
    u: Tensor,
    grid: Grid,
    axis: int,
    order: int = 1,
    method: Method = "fd",
    *,
    normal: bool = False,
) -> Tensor:
    """∂^order u / ∂x_axis^order for ``order`` 1 or 2.

    ``fd``: ``(u_{i+1} - u_{i-1}) / 2h`` and ``(u_{i+1} - 2u_i + u_{i-1}) / h²`` with ghosts
    from ``pad``; ``spectral``: multiplication by ``(ik)^order`` (periodic axes only).
    ``normal=True``: ``u`` is the component of a gradient-like vector normal to this axis's
    walls, padded with the swapped reflection (see ``pad``).
    """
    if order not in (1, 2):
        raise ValueError(f"derivative: order must be 1 or 2, got {order}")
    if method == "spectral":
        return _spectral_derivative(u, grid, axis, order)
    if method != "fd":
        raise ValueError(f"method must be 'fd' or 'spectral', got {method!r}")
    d = _dim(u, grid, axis)
    h = grid.spacing[axis]
    up = pad(u, grid, axis, normal=normal)
    n = u.shape[d]
    plus, minus = up.narrow(d, 2, n), up.narrow(d, 0, n)
    if order == 1:
        return (plus - minus) / (2 * h)
    return (plus - 2 * u + minus) / h**2


def gradient(u: Tensor, grid: Grid, method: Method = "fd") -> Tensor:
    """∇u: ``(..., *grid)`` → ``(..., D, *grid)`` with D = ``grid.ndim`` components."""
    parts = [derivative(u, grid, i, 1, method) for i in range(grid.ndim)]
    return torch.stack(parts, dim=u.ndim - grid.ndim)


def _components(v: Tensor, grid: Grid) -> list[Tensor]:
    c = v.ndim - grid.ndim - 1
    if c < 0 or v.shape[c] != grid.ndim:
        raise ValueError(
            f"vector field of shape {tuple(v.shape)} must have {grid.ndim} components "
            f"just before the grid axes {grid.shape}"
        )
    return list(v.unbind(c))


def divergence(
    v: Tensor, grid: Grid, method: Method = "fd", *, vector_bc: VectorBC = "gradient"
) -> Tensor:
    """∇·v = Σ_i ∂v_i/∂x_i: ``(..., D, *grid)`` → ``(..., *grid)``.

    The grid's boundary conditions are those of a scalar ``u``; ``vector_bc`` says how the
    component ``v_i`` normal to the walls of axis ``i`` extends across them (``fd`` only —
    periodic axes wrap either way):

    * ``"gradient"`` (default): ``v`` behaves like ``∇u`` — ``v_i`` reflects evenly on a
      Dirichlet axis and oddly on a Neumann axis (``v·n = 0`` at the wall), see ``pad`` with
      ``normal=True``. Then ``divergence(gradient(u)) = Δu + O(h²)`` at every point, walls
      included, for ``u`` whose reflection across the walls is smooth.
    * ``"scalar"``: every ``v_i`` reflects like ``u`` itself, for a vector whose
      components each obey the scalar boundary condition (e.g. ``v_i = 0`` on a Dirichlet
      wall). Applied to a gradient it is inconsistent at the walls: the error there is
      O(1/h) on Dirichlet cell grids and O(1) on Neumann grids.
    """
    if vector_bc not in ("gradient", "scalar"):
        raise ValueError(f"divergence: vector_bc must be 'gradient' or 'scalar', got {vector_bc!r}")
    parts = _components(v, grid)
    normal = vector_bc == "gradient"
    return sum(derivative(p, grid, i, 1, method, normal=normal) for i, p in enumerate(parts))


def laplacian(u: Tensor, grid: Grid, method: Method = "fd") -> Tensor:
    """Δu = Σ_i ∂²u/∂x_i²; ``fd`` is the (2D+1)-point stencil, ``spectral`` is ``-|k|² û``."""
    if method == "spectral":
        dims = [_dim(u, grid, i) for i in range(grid.ndim)]
        u_hat = torch.fft.rfftn(u, dim=dims)
        k2 = _k_squared(grid, u)
        return torch.fft.irfftn(-k2 * u_hat, s=grid.shape, dim=dims)
    return sum(derivative(u, grid, i, 2, method) for i in range(grid.ndim))


def _k_squared(grid: Grid, u: Tensor) -> Tensor:
    """|k|² on the ``rfftn`` half-grid, shaped to broadcast against ``(..., *half_grid)``."""
    dtype = u.dtype if u.is_floating_point() else torch.get_default_dtype()
    ks = [
        wavenumbers(grid, i, real=(i == grid.ndim - 1), device=u.device, dtype=dtype)
        for i in range(grid.ndim)
    ]
    mesh = torch.meshgrid(*ks, indexing="ij")
    return sum(k**2 for k in mesh)


def dealias_mask(grid: Grid, *, device=None, dtype=None) -> Tensor:
    """0/1 mask on the ``rfftn`` half-grid keeping modes with ``|k_i| < n_i / 3`` on every axis."""
    keeps = []
    for i, n in enumerate(grid.shape):
        if grid.bc[i] != "periodic":
            raise ValueError("dealias: every axis must be periodic")
        integer = (torch.fft.rfftfreq if i == grid.ndim - 1 else torch.fft.fftfreq)(
            n, d=1.0 / n, device=device, dtype=torch.float64
        )
        keeps.append(integer.abs() < n / 3)
    mesh = torch.meshgrid(*keeps, indexing="ij")
    mask = mesh[0]
    for m in mesh[1:]:
        mask = mask & m
    return mask.to(dtype or torch.get_default_dtype())


def dealias(u: Tensor, grid: Grid) -> Tensor:
    """Remove the modes outside the 2/3-rule box from ``u`` (periodic grids)."""
    dims = [_dim(u, grid, i) for i in range(grid.ndim)]
    mask = dealias_mask(grid, device=u.device, dtype=u.dtype)
    return torch.fft.irfftn(torch.fft.rfftn(u, dim=dims) * mask, s=grid.shape, dim=dims)


def curl(v: Tensor, grid: Grid, method: Method = "fd") -> Tensor:
    """2-D vorticity ω = ∂v_y/∂x − ∂v_x/∂y: ``(..., 2, nx, ny)`` → ``(..., nx, ny)``."""
    if grid.ndim != 2:
        raise ValueError(f"curl: defined here for 2-D grids, got {grid.ndim}-D")
    vx, vy = _components(v, grid)
    return derivative(vy, grid, 0, 1, method) - derivative(vx, grid, 1, 1, method)


def stream_function(w: Tensor, grid: Grid) -> Tensor:
    """ψ solving −Δψ = ω with zero mean on a periodic 2-D grid (spectral)."""
    if grid.ndim != 2 or not grid.periodic:
        raise ValueError("stream_function: needs a periodic 2-D grid")
    dims = [_dim(w, grid, 0), _dim(w, grid, 1)]
    k2 = _k_squared(grid, w)
    inverse = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, torch.ones_like(k2)), 0.0)
    return torch.fft.irfftn(torch.fft.rfftn(w, dim=dims) * inverse, s=grid.shape, dim=dims)


def velocity_from_vorticity(w: Tensor, grid: Grid) -> Tensor:
    """Velocity (u, v) = (∂ψ/∂y, −∂ψ/∂x) with −Δψ = ω: ``(..., nx, ny)`` → ``(..., 2, nx, ny)``.

    Spectral on a periodic 2-D grid; the mean flow is zero.
    """
    psi = stream_function(w, grid)
    vx = _spectral_derivative(psi, grid, 1, 1)
    vy = -_spectral_derivative(psi, grid, 0, 1)
    return torch.stack([vx, vy], dim=w.ndim - 2)


def advection(
    v: Tensor, u: Tensor, grid: Grid, method: Method = "fd", *, dealiased: bool = False
) -> Tensor:
    """Advection term (v·∇)u = Σ_i v_i ∂u/∂x_i for velocity ``(..., D, *grid)``, ``u (..., *grid)``.

    With ``dealiased=True`` the product is truncated by the 2/3 rule (as pseudo-spectral
    generators do).
    """
    parts = _components(v, grid)
    term = sum(p * derivative(u, grid, i, 1, method) for i, p in enumerate(parts))
    return dealias(term, grid) if dealiased else term


def flux_divergence(
    a: Tensor, u: Tensor, grid: Grid, *, mean: Literal["harmonic", "arithmetic"] = "harmonic"
) -> Tensor:
    """Conservative ∇·(a∇u) with face coefficients, the finite-volume Darcy/elliptic operator.

    ``(∇·(a∇u))_i = Σ_axes [a_{i+½}(u_{i+1} − u_i) − a_{i−½}(u_i − u_{i−1})] / h²`` with
    ``a_{i+½}`` the harmonic (flux-continuous for discontinuous ``a``) or arithmetic mean of
    the neighbours. Ghost ``u`` values come from the boundary condition; ``a`` is extended
    evenly, so a cell-centred Dirichlet wall face carries ``2 a_cell u_cell / h`` and a Neumann
    face carries no flux. ``a`` broadcasts against ``u``.
    """
    a, u = torch.broadcast_tensors(a, u)
    total = torch.zeros_like(u)
    for axis in range(grid.ndim):
        d = _dim(u, grid, axis)
        n, h = u.shape[d], grid.spacing[axis]
        up = pad(u, grid, axis)
        ap = pad(a, grid, axis, even=True)
        a_l, a_r = ap.narrow(d, 0, n + 1), ap.narrow(d, 1, n + 1)
        if mean == "harmonic":
            face = 2 * a_l * a_r / (a_l + a_r)
        elif mean == "arithmetic":
            face = 0.5 * (a_l + a_r)
        else:
            raise ValueError(f"flux_divergence: mean must be harmonic or arithmetic, got {mean!r}")
        flux = face * (up.narrow(d, 1, n + 1) - up.narrow(d, 0, n + 1)) / h  # n + 1 faces
        total = total + (flux.narrow(d, 1, n) - flux.narrow(d, 0, n)) / h
    return total


def vorticity_tendency(
    w: Tensor,
    grid: Grid,
    *,
    viscosity: float,
    drag: float = 0.0,
    forcing: Tensor | float = 0.0,
) -> Tensor:
    """Right-hand side of 2-D vorticity, ``−D(u·∇ω) + νΔω − μω + f``, spectral and periodic.

    u = (∂ψ/∂y, −∂ψ/∂x) with −Δψ = ω; D is the 2/3-rule truncation of the product, as in the
    pseudo-spectral generators (Li et al. 2021, FNO; Shu et al. 2023 for Kolmogorov flow).
    ``w``: ``(..., nx, ny)``; ``forcing`` broadcasts against it.
    """
    v = velocity_from_vorticity(w, grid)
    transport = advection(v, w, grid, "spectral", dealiased=True)
    return -transport + viscosity * laplacian(w, grid, "spectral") - drag * w + forcing


# Central-difference weights on offsets -2..2 (order 2 uses -1..1).
_TIME_STENCILS = {2: (0.0, -0.5, 0.0, 0.5, 0.0), 4: (1 / 12, -2 / 3, 0.0, 2 / 3, -1 / 12)}


def time_derivative(u: Tensor, dt: float, dim: int, order: int = 2) -> Tensor:
    """Central difference ∂u/∂t along tensor dimension ``dim`` with frame spacing ``dt``.

    ``order=2``: (u_{n+1} − u_{n−1}) / 2dt, drops one frame at each end; ``order=4``:
    (u_{n−2} − 8u_{n−1} + 8u_{n+1} − u_{n+2}) / 12dt, drops two. The error is O(dt^order), so
    a residual built on stored frames has a floor set by the frame spacing.
    """
    if order not in _TIME_STENCILS:
        raise ValueError(f"time_derivative: order must be 2 or 4, got {order}")
    half = order // 2
    n = u.shape[dim] - 2 * half
    if n < 1:
        raise ValueError(f"time_derivative: need more than {2 * half} frames, got {u.shape[dim]}")
    weights = _TIME_STENCILS[order][2 - half : 3 + half]
    out = sum(w * u.narrow(dim, j, n) for j, w in enumerate(weights) if w != 0.0)
    return out / dt
