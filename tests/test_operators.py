"""Differential operators: measured convergence orders, spectral accuracy, identities, autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from physgen import operators as ops
from physgen.grids import Grid

PI = math.pi
NS = (16, 32, 64, 128)


def _slope(ns: tuple[int, ...], errors: list[float]) -> float:
    """Least-squares order p in error ≈ C h^p."""
    return float(-np.polyfit(np.log(ns), np.log(errors), 1)[0])


def _maxerr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def _tensor(a: np.ndarray, dtype=torch.float64, device="cpu") -> torch.Tensor:
    return torch.as_tensor(a, dtype=dtype, device=device)


# Test functions whose odd (Dirichlet) or even (Neumann) extension across x=0 and x=1 is smooth,
# i.e. functions that satisfy the boundary condition the ghost values encode.
FUNCTIONS_1D = {
    "periodic": (
        lambda x: np.sin(2 * PI * x) + 0.5 * np.cos(4 * PI * x),
        lambda x: 2 * PI * np.cos(2 * PI * x) - 2 * PI * np.sin(4 * PI * x),
        lambda x: -4 * PI**2 * np.sin(2 * PI * x) - 8 * PI**2 * np.cos(4 * PI * x),
    ),
    "dirichlet": (
        lambda x: np.sin(PI * x) + 0.5 * np.sin(3 * PI * x),
        lambda x: PI * np.cos(PI * x) + 1.5 * PI * np.cos(3 * PI * x),
        lambda x: -(PI**2) * np.sin(PI * x) - 4.5 * PI**2 * np.sin(3 * PI * x),
    ),
    "neumann": (
        lambda x: np.cos(PI * x) + 0.5 * np.cos(2 * PI * x),
        lambda x: -PI * np.sin(PI * x) - PI * np.sin(2 * PI * x),
        lambda x: -(PI**2) * np.cos(PI * x) - 2 * PI**2 * np.cos(2 * PI * x),
    ),
}


@pytest.mark.parametrize("centering", ["node", "cell"])
@pytest.mark.parametrize("bc", ["periodic", "dirichlet", "neumann"])
def test_fd_derivatives_are_second_order_in_1d(bc: str, centering: str) -> None:
    f, df, d2f = FUNCTIONS_1D[bc]
    errors1, errors2 = [], []
    for n in NS:
        grid = Grid((n,), bc=bc, centering=centering)
        x = grid.coords(0)
        u = _tensor(f(x))[None, None]  # (B, C, nx)
        errors1.append(float((ops.derivative(u, grid, 0, 1)[0, 0] - _tensor(df(x))).abs().max()))
        errors2.append(float((ops.derivative(u, grid, 0, 2)[0, 0] - _tensor(d2f(x))).abs().max()))
    assert _slope(NS, errors1) == pytest.approx(2.0, abs=0.1)
    assert _slope(NS, errors2) == pytest.approx(2.0, abs=0.1)


def test_spectral_derivative_is_exact_to_rounding_on_periodic_axes() -> None:
    errors = []
    for n in (8, 16, 32):
        grid = Grid((n,), domain=((0.0, 2 * PI),), bc="periodic", centering="node")
        x = grid.coords(0)
        u = _tensor(np.exp(np.sin(x)))[None, None]
        exact = _tensor(np.cos(x) * np.exp(np.sin(x)))
        errors.append(_maxerr(ops.derivative(u, grid, 0, 1, method="spectral")[0, 0], exact))
        second = _tensor((np.cos(x) ** 2 - np.sin(x)) * np.exp(np.sin(x)))
        err2 = float((ops.derivative(u, grid, 0, 2, method="spectral")[0, 0] - second).abs().max())
    # Exponential convergence: each doubling gains many digits, and n=32 sits at rounding level.
    assert errors[1] < 1e-3 * errors[0]
    assert errors[2] < 1e-12
    assert err2 < 1e-11
    fd = Grid((32,), domain=((0.0, 2 * PI),), bc="periodic", centering="node")
    u32 = _tensor(np.exp(np.sin(fd.coords(0))))[None, None]
    exact32 = _tensor(np.cos(fd.coords(0)) * np.exp(np.sin(fd.coords(0))))
    assert float((ops.derivative(u32, fd, 0, 1)[0, 0] - exact32).abs().max()) > 1e-3


def test_spectral_first_derivative_drops_the_nyquist_mode() -> None:
    grid = Grid((8,), bc="periodic", centering="node")
    u = _tensor(np.cos(PI * 8 * grid.coords(0)))[None]  # the Nyquist mode (-1)^i
    assert float(ops.derivative(u, grid, 0, 1, method="spectral").abs().max()) < 1e-12


@pytest.mark.parametrize("centering", ["node", "cell"])
def test_2d_gradient_divergence_laplacian_converge_with_mixed_bcs(centering: str) -> None:
    # x Dirichlet, y Neumann: u = sin(πx) cos(πy) satisfies both.
    errs = {"grad": [], "div": [], "lap": [], "flux": []}
    for n in NS[:3]:
        grid = Grid((n, n + 3), bc=("dirichlet", "neumann"), centering=centering)
        x, y = grid.mesh()
        u = _tensor(np.sin(PI * x) * np.cos(PI * y))[None, None]
        ux = PI * np.cos(PI * x) * np.cos(PI * y)
        uy = -PI * np.sin(PI * x) * np.sin(PI * y)
        grad = ops.gradient(u, grid)
        assert grad.shape == (1, 1, 2, n, n + 3)
        errs["grad"].append(
            max(_maxerr(grad[0, 0, 0], _tensor(ux)), _maxerr(grad[0, 0, 1], _tensor(uy)))
        )
        errs["lap"].append(float((ops.laplacian(u, grid)[0, 0] + 2 * PI**2 * u[0, 0]).abs().max()))
        # A vector field whose components each satisfy the grid's (scalar) BC: the "scalar"
        # ghost rule is the consistent one for it.
        v = torch.stack([u[0, 0], u[0, 0]])[None]  # (1, 2, nx, ny)
        div_exact = ux + uy
        div = ops.divergence(v, grid, vector_bc="scalar")[0]
        errs["div"].append(float((div - _tensor(div_exact)).abs().max()))
        # ∇·(a∇u) with a smooth coefficient even about every wall.
        a = 1.0 + 0.5 * np.cos(PI * x) * np.cos(PI * y)
        ax = -0.5 * PI * np.sin(PI * x) * np.cos(PI * y)
        ay = -0.5 * PI * np.cos(PI * x) * np.sin(PI * y)
        exact = a * (-2 * PI**2 * np.sin(PI * x) * np.cos(PI * y)) + ax * ux + ay * uy
        got = ops.flux_divergence(_tensor(a)[None, None], u, grid)
        errs["flux"].append(float((got[0, 0] - _tensor(exact)).abs().max()))
    for name, e in errs.items():
        assert _slope(NS[:3], e) == pytest.approx(2.0, abs=0.15), name


# Resolutions for the div(grad u) = Δu order test per dimension (3-D starts where the
# modes of FUNCTIONS_1D are resolved well enough to be in the asymptotic range).
DIV_NS = {1: (32, 64, 128), 2: (32, 64, 128), 3: (24, 48, 96)}


def _div_grad_errors(
    bcs: tuple[str, ...], centering: str, vector_bc: str
) -> tuple[tuple[int, ...], list[float], list[float]]:
    """Max |div(grad u) − Δu| over all points and over the wall layers, per resolution.

    ``u = Π_i f_i(x_i)`` with ``f_i`` from ``FUNCTIONS_1D[bcs[i]]`` (its reflection across the
    walls is smooth), so ``Δu = Σ_i f_i″ Π_{j≠i} f_j``. The wall layers are the points whose
    stencil reaches a ghost value: ``div(grad u)`` is the wide stencil
    ``(u_{i+2} − 2u_i + u_{i−2}) / 4h²``, so the first two and last two indices along every
    non-periodic axis. The list is empty on a fully periodic grid.
    """
    ns = DIV_NS[len(bcs)]
    errors, walls = [], []
    for n in ns:
        # Unequal sizes and lengths per axis, so no axis is the mirror of another.
        shape = tuple(n + 2 * i for i in range(len(bcs)))
        domain = tuple((0.0, 1.0 + 0.25 * i) for i in range(len(bcs)))
        grid = Grid(shape, domain=domain, bc=bcs, centering=centering)
        mesh = grid.mesh()
        scaled = [x / length for x, length in zip(mesh, grid.lengths, strict=True)]
        values = [FUNCTIONS_1D[b][0](x) for b, x in zip(bcs, scaled, strict=True)]
        u = np.prod(values, axis=0)
        lap = sum(
            FUNCTIONS_1D[b][2](x) / length**2 * np.prod(values[:i] + values[i + 1 :], axis=0)
            for i, (b, x, length) in enumerate(zip(bcs, scaled, grid.lengths, strict=True))
        )
        got = ops.divergence(ops.gradient(_tensor(u)[None], grid), grid, vector_bc=vector_bc)[0]
        err = (got - _tensor(lap)).abs()
        errors.append(float(err.max()))
        wall = [
            float(err.narrow(axis, start, 2).max())
            for axis, b in enumerate(bcs)
            if b != "periodic"
            for start in (0, grid.shape[axis] - 2)
        ]
        if wall:
            walls.append(max(wall))
    return ns, errors, walls


DIV_CASES = [
    *((b,) * d for d in (1, 2, 3) for b in ("periodic", "dirichlet", "neumann")),
    ("neumann", "dirichlet"),
    ("dirichlet", "neumann", "periodic"),
]


@pytest.mark.parametrize("centering", ["node", "cell"])
@pytest.mark.parametrize("bcs", DIV_CASES, ids="-".join)
def test_divergence_of_gradient_is_the_laplacian_at_second_order(
    bcs: tuple[str, ...], centering: str
) -> None:
    """div(grad u) = Δu converges at second order everywhere, the wall points included.

    At the walls the order is at least 2: 2 next to a Neumann wall, 3 next to a Dirichlet
    wall (there Δu itself vanishes like the distance to the wall).
    """
    ns, errors, walls = _div_grad_errors(bcs, centering, "gradient")
    assert _slope(ns, errors) == pytest.approx(2.0, abs=0.15), errors
    if walls:
        assert _slope(ns, walls) > 1.85, walls


@pytest.mark.parametrize("centering", ["node", "cell"])
@pytest.mark.parametrize("bcs", [c for c in DIV_CASES if set(c) != {"periodic"}], ids="-".join)
def test_divergence_with_the_scalar_wall_rule_fails_the_order_test(
    bcs: tuple[str, ...], centering: str
) -> None:
    """Negative control: reflecting a gradient's normal component like the scalar breaks the
    order at the walls (O(1/h) on Dirichlet cell grids, O(1) on Neumann grids, O(h) on
    Dirichlet node grids)."""
    ns, errors, walls = _div_grad_errors(bcs, centering, "scalar")
    assert _slope(ns, errors) < 1.5, errors
    assert _slope(ns, walls) < 1.5, walls


@pytest.mark.parametrize("method", ["fd", "spectral"])
def test_3d_laplacian(method: str) -> None:
    ns = (16, 32, 64)
    errors = []
    for n in ns:
        grid = Grid((n, n, n), bc="periodic", centering="cell")
        x, y, z = grid.mesh()
        u = np.sin(2 * PI * x) * np.cos(2 * PI * y) * np.sin(4 * PI * z)
        lap = ops.laplacian(_tensor(u)[None, None], grid, method=method)[0, 0]
        errors.append(float((lap - _tensor(-24 * PI**2 * u)).abs().max()))
    if method == "fd":
        assert _slope(ns, errors) == pytest.approx(2.0, abs=0.1)
    else:
        assert max(errors) < 1e-9


def test_3d_laplacian_fd_converges_with_walls() -> None:
    ns = (8, 16, 32)
    errors = []
    for n in ns:
        grid = Grid((n, n, n), bc=("dirichlet", "neumann", "periodic"), centering="cell")
        x, y, z = grid.mesh()
        u = np.sin(PI * x) * np.cos(PI * y) * np.cos(2 * PI * z)
        lap = ops.laplacian(_tensor(u)[None, None], grid)[0, 0]
        errors.append(float((lap - _tensor(-6 * PI**2 * u)).abs().max()))
    assert _slope(ns, errors) == pytest.approx(2.0, abs=0.1)


def test_velocity_from_vorticity_recovers_the_flow_and_is_divergence_free() -> None:
    grid = Grid((32, 32), domain=((0, 2 * PI), (0, 2 * PI)), bc="periodic", centering="node")
    x, y = grid.mesh()
    psi = np.sin(x) * np.cos(2 * y) + 0.3 * np.cos(3 * x + y)
    vx = -2 * np.sin(x) * np.sin(2 * y) - 0.3 * np.sin(3 * x + y)  # ∂ψ/∂y
    vy = -np.cos(x) * np.cos(2 * y) + 0.9 * np.sin(3 * x + y)  # −∂ψ/∂x
    v = _tensor(np.stack([vx, vy]))[None]  # (1, 2, nx, ny)
    w = ops.curl(v, grid, method="spectral")  # (1, nx, ny)
    assert torch.allclose(w[0], _tensor(5 * np.sin(x) * np.cos(2 * y) + 3.0 * np.cos(3 * x + y)))
    back = ops.velocity_from_vorticity(w, grid)
    assert torch.allclose(back, v, atol=1e-12)
    assert float(ops.divergence(back, grid, method="spectral").abs().max()) < 1e-12
    assert torch.allclose(ops.stream_function(w, grid)[0], _tensor(psi), atol=1e-12)


def test_advection_and_dealiasing() -> None:
    grid = Grid((24, 24), domain=((0, 2 * PI), (0, 2 * PI)), bc="periodic", centering="node")
    x, y = grid.mesh()
    u = _tensor(np.sin(x) * np.sin(y))[None]
    v = _tensor(np.stack([np.ones_like(x), 2 * np.ones_like(x)]))[None]
    exact = _tensor(np.cos(x) * np.sin(y) + 2 * np.sin(x) * np.cos(y))
    assert torch.allclose(ops.advection(v, u, grid, method="spectral")[0], exact, atol=1e-12)
    # 2/3 rule on n=24: |k| < 8 survives, |k| = 8 and above is removed.
    low = _tensor(np.cos(7 * x) * np.sin(3 * y))
    high = _tensor(np.cos(8 * x) * np.sin(3 * y))
    assert torch.allclose(ops.dealias(low, grid), low, atol=1e-12)
    assert float(ops.dealias(high, grid).abs().max()) < 1e-12
    assert float(ops.dealias_mask(grid).sum()) == 15 * 8


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["fd", "spectral"])
def test_operators_keep_dtype_device_and_batch(dtype, method, device) -> None:
    grid = Grid((16, 12), bc="periodic")
    u = torch.randn(3, 2, 5, 16, 12, dtype=dtype, device=device)  # (B, C, T, nx, ny)
    for out in (
        ops.laplacian(u, grid, method),
        ops.divergence(ops.gradient(u, grid, method), grid, method),
        ops.curl(ops.gradient(u, grid, method), grid, method),
    ):
        assert out.shape == u.shape and out.dtype == dtype and out.device == u.device
    # Batch entries are independent.
    single = ops.laplacian(u[1:2], grid, method)
    torch.testing.assert_close(ops.laplacian(u, grid, method)[1:2], single)


def test_operators_are_differentiable() -> None:
    grid = Grid((6, 5), bc=("dirichlet", "neumann"), centering="cell")
    u = torch.randn(2, 1, 6, 5, dtype=torch.float64, requires_grad=True)
    a = (torch.rand(2, 1, 6, 5, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, u: ops.flux_divergence(a, u, grid), (a, u))
    assert torch.autograd.gradcheck(lambda u: ops.laplacian(u, grid), (u,))
    periodic = Grid((8, 6), bc="periodic")
    w = torch.randn(1, 8, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: ops.velocity_from_vorticity(w, periodic), (w,))


def test_bad_input_is_named() -> None:
    grid = Grid((8, 8), bc=("periodic", "dirichlet"))
    with pytest.raises(ValueError, match="grid shape"):
        ops.laplacian(torch.zeros(1, 7, 8), grid)
    with pytest.raises(ValueError, match="periodic"):
        ops.derivative(torch.zeros(1, 8, 8), grid, 1, method="spectral")
    with pytest.raises(ValueError, match="components"):
        ops.divergence(torch.zeros(1, 3, 8, 8), grid)
    with pytest.raises(ValueError, match="vector_bc"):
        ops.divergence(torch.zeros(1, 2, 8, 8), grid, vector_bc="normal")
    with pytest.raises(ValueError, match="exclusive"):
        ops.pad(torch.zeros(1, 8, 8), grid, 1, even=True, normal=True)


@pytest.mark.parametrize("order", [2, 4])
def test_time_derivative_order(order: int) -> None:
    errors, dts = [], (0.1, 0.05, 0.025)
    for dt in dts:
        t = torch.arange(0, 2 + dt / 2, dt, dtype=torch.float64)
        u = torch.sin(3 * t)[None, :, None].expand(2, -1, 4)  # (B, T, x)
        du = ops.time_derivative(u, dt, dim=1, order=order)
        h = order // 2
        assert du.shape == (2, len(t) - 2 * h, 4)
        errors.append(_maxerr(du[0, :, 0], 3 * torch.cos(3 * t[h:-h])))
    assert _slope(tuple(1 / d for d in dts), errors) == pytest.approx(order, abs=0.1)


def test_vorticity_tendency_of_a_steady_kolmogorov_state() -> None:
    # ω = −k cos(ky) is steady under forcing f = νk²ω... : advection of a shear flow vanishes.
    grid = Grid((32, 32), domain=((0, 2 * PI), (0, 2 * PI)), bc="periodic", centering="node")
    _, y = grid.mesh()
    w = _tensor(-4 * np.cos(4 * y))[None]
    nu, mu = 0.01, 0.1
    forcing = (nu * 16 + mu) * w
    rhs = ops.vorticity_tendency(w, grid, viscosity=nu, drag=mu, forcing=forcing)
    assert float(rhs.abs().max()) < 1e-12
    # A non-parallel flow is advected: the tendency is not zero.
    x, _ = grid.mesh()
    w2 = w + _tensor(np.cos(x + y))[None]
    assert (
        float(ops.vorticity_tendency(w2, grid, viscosity=nu, drag=mu, forcing=forcing).abs().max())
        > 0.1
    )


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(2, 7), min_size=1, max_size=3),
    bcs=st.lists(st.sampled_from(["periodic", "dirichlet", "neumann"]), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_cell_grid_diffusion_is_symmetric_and_dissipative(shape, bcs, seed) -> None:
    # Summation by parts: with the ghost rules the discrete ∇·(a∇·) is a symmetric,
    # negative semi-definite matrix — what makes the implicit solvers and energies behave.
    grid = Grid(tuple(shape), bc=tuple(bcs[: len(shape)]), centering="cell")
    g = torch.Generator().manual_seed(seed)
    u, v = torch.randn(2, *shape, generator=g, dtype=torch.float64)
    a = torch.rand(*shape, generator=g, dtype=torch.float64) + 0.1
    for op in (lambda w: ops.laplacian(w, grid), lambda w: ops.flux_divergence(a, w, grid)):
        assert float((v * op(u)).sum()) == pytest.approx(float((u * op(v)).sum()), abs=1e-9)
        assert float((u * op(u)).sum()) <= 1e-12
    if "dirichlet" in grid.bc:  # no constant null space: strictly negative
        assert float((u * ops.laplacian(u, grid)).sum()) < 0
