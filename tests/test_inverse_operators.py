"""Observation operators on analytic fields: block means, subsampling, interpolation, masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from physgen.grids import Grid
from physgen.inverse import (
    BlockAverage,
    ChannelMask,
    PairedDataset,
    Sensors,
    Subsample,
    interpolate,
    pair_tensors,
    parse_task,
)


def _mesh(grid: Grid) -> list[torch.Tensor]:
    return [torch.as_tensor(c) for c in grid.mesh()]


@pytest.mark.parametrize("s", [2, 3, 4])
def test_block_average_of_a_quadratic_is_the_centre_value_plus_the_variance(s):
    # Mean of (c + kh)² over k = -(s-1)/2 .. (s-1)/2 equals c² + h²(s²-1)/12 exactly.
    grid = Grid((12 * s,), centering="cell", bc="dirichlet")
    (x,) = _mesh(grid)
    h = grid.spacing[0]
    out = BlockAverage(s, 1)((3 * x**2 - 2 * x + 1)[None, None])
    coarse = Grid((12,), centering="cell", bc="dirichlet").coords(0)
    c = torch.as_tensor(coarse)
    expected = 3 * (c**2 + h**2 * (s**2 - 1) / 12) - 2 * c + 1
    torch.testing.assert_close(out[0, 0], expected, rtol=0, atol=1e-13)


def test_block_average_2d_of_a_bilinear_polynomial_is_its_value_at_the_block_centre():
    grid = Grid((16, 24), centering="cell", bc="dirichlet")
    x, y = _mesh(grid)
    field = 1 + 2 * x - 3 * y + 5 * x * y  # bilinear: block mean = value at the centre
    out = BlockAverage((4, 3), 2)(field[None, None])
    xc, yc = (torch.as_tensor(c) for c in Grid((4, 8), centering="cell", bc="dirichlet").mesh())
    torch.testing.assert_close(out[0, 0], 1 + 2 * xc - 3 * yc + 5 * xc * yc, atol=1e-13, rtol=0)


@pytest.mark.parametrize("offset", [1, 2, 3])
def test_periodic_block_average_wraps_its_windows(offset):
    # A wrapped window of s points centred at c averages e^{iωx} to
    # e^{iωc}·sin(sωh/2)/(s·sin(ωh/2)) (the Dirichlet kernel).
    n, s, k = 32, 4, 3
    grid = Grid((n,), bc="periodic", centering="node")
    (x,) = _mesh(grid)
    omega, h = 2 * math.pi * k, grid.spacing[0]
    out = BlockAverage(s, 1, periodic=True, offset=offset)(torch.sin(omega * x)[None, None])
    centre = (offset + s * torch.arange(n // s, dtype=torch.float64) + (s - 1) / 2) * h
    damping = math.sin(s * omega * h / 2) / (s * math.sin(omega * h / 2))
    torch.testing.assert_close(out[0, 0], damping * torch.sin(omega * centre), atol=1e-13, rtol=0)


def test_block_average_rejects_offsets_on_bounded_axes_and_indivisible_grids():
    with pytest.raises(ValueError, match="periodic"):
        BlockAverage(4, 1, offset=1)
    with pytest.raises(ValueError, match="divisible"):
        BlockAverage(4, 2)(torch.zeros(1, 1, 10, 8))


def test_subsampling_commutes_with_restriction_to_the_coarse_grid():
    # Sampling f on the fine grid then taking every s-th point = sampling f on the coarse grid.
    fine = Grid((64, 48), bc="periodic", centering="node")
    coarse = Grid((16, 12), bc="periodic", centering="node")
    f = lambda x, y: torch.sin(2 * math.pi * x) * torch.cos(4 * math.pi * y) + x * y  # noqa: E731
    out = Subsample(4, 2, periodic=True)(f(*_mesh(fine))[None, None])
    torch.testing.assert_close(out[0, 0], f(*_mesh(coarse)), atol=1e-14, rtol=0)
    # Restrictions compose: subsample by 2 twice = by 4; block means by 2 twice = by 4.
    u = torch.randn(3, 2, 64, 48, dtype=torch.float64)
    torch.testing.assert_close(Subsample(2, 2)(Subsample(2, 2)(u)), Subsample(4, 2)(u))
    torch.testing.assert_close(BlockAverage(2, 2)(BlockAverage(2, 2)(u)), BlockAverage(4, 2)(u))


def test_subsample_offset_on_a_cell_grid_hits_the_coarse_cell_centres():
    fine, coarse = Grid((27,), bc="dirichlet"), Grid((9,), bc="dirichlet")
    (x,) = _mesh(fine)
    out = Subsample(3, 1, offset=1)(torch.exp(x)[None, None])
    torch.testing.assert_close(out[0, 0], torch.exp(torch.as_tensor(coarse.coords(0))))


def test_gram_constants_match_a_a_transpose():
    for op, shape in ((BlockAverage((2, 4), 2), (1, 8, 8)), (Subsample(2, 1), (2, 10))):
        d = math.prod(shape)
        basis = torch.eye(d, dtype=torch.float64).reshape(d, *shape)
        a = op(basis).reshape(d, -1).T  # (m, D): the matrix of the operator
        torch.testing.assert_close(a @ a.T, op.gram * torch.eye(a.shape[0], dtype=a.dtype))


def test_cubic_interpolation_is_third_order_on_a_periodic_field():
    errors = []
    ns = (32, 64, 128)
    for n in ns:
        grid = Grid((n,), bc="periodic", centering="node")
        (x,) = _mesh(grid)
        u = torch.sin(2 * math.pi * x) + 0.5 * torch.cos(6 * math.pi * x)
        sub = Subsample(4, 1, periodic=True, offset=1)
        up = sub.lift(sub(u[None, None]), (1, n))
        errors.append(float((up[0, 0] - u).abs().max()))
    slopes = -np.diff(np.log(errors)) / np.log(2)
    assert np.all(slopes > 2.8), (errors, slopes)


def test_interpolation_reproduces_quadratics_away_from_bounded_edges():
    n, s = 40, 4
    (x,) = _mesh(Grid((n,), bc="dirichlet"))
    u = 2 * x**2 - x + 0.3
    sub = Subsample(s, 1, offset=1)
    cubic = sub.lift(sub(u[None, None]), (1, n))[0, 0]
    linear = sub.lift(sub(u[None, None]), (1, n), method="linear")[0, 0]
    inner = slice(s + 1, n - 2 * s)
    torch.testing.assert_close(cubic[inner], u[inner], atol=1e-13, rtol=0)
    assert float((linear[inner] - u[inner]).abs().max()) > 1e-4  # linear cannot
    # Interpolation hits the samples themselves.
    torch.testing.assert_close(cubic[1::s], u[1::s], atol=1e-13, rtol=0)
    with pytest.raises(ValueError, match="method"):
        interpolate(u[None], 2, (n,), method="spline")


def test_channel_mask_selects_by_name():
    x = torch.stack([torch.full((4, 4), float(c)) for c in range(3)])[None]  # (1, 3, 4, 4)
    mask = ChannelMask(["a", "u", "v"], observed=["v", "a"])
    assert mask.missing == ("u",) and mask.missing_index == (1,)
    torch.testing.assert_close(mask(x)[0, :, 0, 0], torch.tensor([2.0, 0.0]))
    assert mask.fraction((3, 4, 4)) == pytest.approx(2 / 3)
    with pytest.raises(KeyError, match="'p'"):
        ChannelMask(["a", "u"], observed=["p"])
    with pytest.raises(ValueError, match="channels"):
        mask(torch.zeros(1, 2, 4, 4))


def test_sensors_read_their_points_add_noise_and_lift_to_indicator_channels():
    names, grid = ("a", "u"), (8, 8)
    sensors = Sensors.random(names, grid, 10, fields=["u"], seed=3, noise_std=0.1)
    again = Sensors.random(names, grid, 10, fields=["u"], seed=3)
    assert sensors.sensor_set.points == again.sensor_set.points  # positions from the seed
    assert len({p for _, p in sensors.sensor_set.points}) == 10
    x = torch.randn(5, 2, *grid, dtype=torch.float64)
    clean = sensors(x)
    for j, (c, (i, k)) in enumerate(sensors.sensor_set.points):
        assert c == 1
        torch.testing.assert_close(clean[:, j], x[:, 1, i, k])
    noisy = sensors.observe(x[:1].expand(4000, -1, -1, -1), torch.Generator().manual_seed(0))
    assert abs(float((noisy - clean[:1]).std()) - 0.1) < 0.003
    lifted = sensors.lift(clean, (2, *grid))  # (B, 2, 8, 8): values of u, then its indicator
    assert lifted.shape == (5, 2, 8, 8) and float(lifted[:, 1].sum()) == 5 * 10
    torch.testing.assert_close(sensors(lifted[:, :1].expand(-1, 2, -1, -1)), clean)


def test_parse_task_and_pairs(tmp_path):
    grid = Grid((16, 16), bc="dirichlet")
    x = torch.randn(6, 2, 16, 16, dtype=torch.float64)
    sr = parse_task("sr4:u", ["a", "u"], grid)
    assert sr.fields == ("u",) and sr.fraction == pytest.approx(1 / 16)
    target, cond = pair_tensors(x[:, 1:], sr)
    torch.testing.assert_close(target, x[:, 1:])
    assert cond.shape == (6, 1, 16, 16)
    col = parse_task("colorize:a", ["a", "u"], grid)
    assert col.observed_fields == ("u",) and col.targets == ("a",)
    target, cond = col.pairs(x)
    torch.testing.assert_close(target, x[:, :1])
    torch.testing.assert_close(cond, x[:, 1:])
    members = target[:, None].expand(-1, 3, -1, -1, -1)  # (B, M, 1, H, W)
    torch.testing.assert_close(col.assemble(cond, members)[:, 2], x)
    sens = parse_task("sensors:20", ["a", "u"], grid, noise_std=0.5, seed=1)
    assert sens.fraction == pytest.approx(40 / 512)
    pairs = PairedDataset(list(x), sens, seed=2)
    _, c0 = pairs[0]
    _, c1 = pairs[0]
    _, c2 = pairs[1]
    torch.testing.assert_close(c0, c1)  # the same noise every time item 0 is read
    assert c0.shape == (4, 16, 16)
    observed = c2[2:] > 0  # indicator channels
    assert not torch.allclose(c0[:2][observed] - x[0][observed], c2[:2][observed] - x[1][observed])
    for bad in ("sr4:p", "colorize:a,u", "zoom2", "sensors:x"):
        with pytest.raises((KeyError, ValueError)):
            parse_task(bad, ["a", "u"], grid)
