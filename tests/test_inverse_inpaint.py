"""Inpainting: the mask operator, guided posterior sampling, classical fills and scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr
from test_inverse_solve import STEPS, M, _check_moments, _matrix, _prior

from physgen.grids import Grid
from physgen.inverse import (
    Mask,
    ScorePrior,
    box_mask,
    harmonic_fill,
    kriging,
    missing_region_scores,
    pair_tensors,
    parse_task,
    random_mask,
    solve,
)


def _poly(x, y):
    return 1 + 2 * x - 3 * y + x * y**2


def test_mask_reads_a_polynomial_at_the_observed_points_and_puts_it_back():
    grid = Grid((12, 10), domain=((0, 1), (0, 2)), bc="dirichlet")
    x, y = (torch.as_tensor(c) for c in grid.mesh())
    field = _poly(x, y)[None, None]  # (1, 1, 12, 10)
    observed = random_mask(grid.shape, 0.3, seed=4)
    op = Mask(observed)
    points = np.argwhere(observed.numpy())  # row-major, as the operator orders them
    xs, ys = grid.coords(0)[points[:, 0]], grid.coords(1)[points[:, 1]]
    expected = torch.as_tensor(_poly(xs, ys))
    torch.testing.assert_close(op(field)[0, 0], expected, atol=1e-14, rtol=0)
    # Negative control: the same points read with the axes swapped give other values.
    assert not torch.allclose(op(field)[0, 0], torch.as_tensor(_poly(ys, xs)))
    back = op.complete(op(field), torch.zeros_like(field))
    torch.testing.assert_close(back[0, 0][observed], field[0, 0][observed])
    assert float(back[0, 0][~observed].abs().max()) == 0.0
    lifted = op.lift(op(field), (1, *grid.shape))  # values, then the indicator
    assert lifted.shape == (1, 2, 12, 10)
    torch.testing.assert_close(lifted[0, 1], observed.double())
    a = _matrix(op, (1, *grid.shape))  # (m, D): a selection, so A Aᵀ = I
    torch.testing.assert_close(a @ a.T, torch.eye(a.shape[0], dtype=a.dtype))
    assert int(op.missing.sum()) == round(0.3 * 120) and op.gram == 1.0


def test_parse_inpaint_task_masks(tmp_path):
    grid = Grid((32, 32), bc="dirichlet")
    box = parse_task("inpaint:u:box", ["a", "u"], grid)
    assert box.fields == box.targets == ("u",)
    missing = box.operator.missing
    assert int(missing.sum()) == 256 and bool(missing[8:24, 8:24].all())
    rand = parse_task("inpaint:u:random0.3", ["a", "u"], grid, seed=5)
    assert int(rand.operator.missing.sum()) == round(0.3 * 1024)
    assert rand.fraction == pytest.approx(1 - 307 / 1024)
    again = parse_task("inpaint:u:random0.3", ["a", "u"], grid, seed=5)
    assert torch.equal(rand.operator.observed, again.operator.observed)
    path = tmp_path / "mask.nc"
    values = np.zeros((32, 32))
    values[:4] = 1.0  # 1 = missing
    xr.Dataset({"mask": (("x", "y"), values)}).to_netcdf(path)
    from_file = parse_task(f"inpaint:u:{path}", ["a", "u"], grid)
    assert (
        bool(from_file.operator.missing[:4].all()) and int(from_file.operator.missing.sum()) == 128
    )
    x = torch.randn(3, 1, 32, 32, dtype=torch.float64)
    target, cond = pair_tensors(x, box)  # conditional training: observed values + the mask
    torch.testing.assert_close(target, x)
    assert cond.shape == (3, 2, 32, 32)
    torch.testing.assert_close(cond[:, 0], torch.where(missing, 0.0, x[:, 0]))
    for bad in ("inpaint:u", "inpaint:p:box", "inpaint:u:random", "inpaint:u:random1.5"):
        with pytest.raises((KeyError, ValueError)):
            parse_task(bad, ["a", "u"], grid)
    with pytest.raises(FileNotFoundError, match=r"nomask\.nc"):
        parse_task(f"inpaint:u:{tmp_path / 'nomask.nc'}", ["a", "u"], grid)
    with pytest.raises(ValueError, match="shape"):
        parse_task(f"inpaint:u:{path}", ["a", "u"], Grid((16, 16)))


@pytest.mark.parametrize(("spec", "noise"), [("inpaint:u:box", 0.0), ("inpaint:u:random0.4", 0.1)])
def test_guided_inpainting_reproduces_the_gaussian_conditional_of_the_missing_pixels(spec, noise):
    task = parse_task(spec, ("u",), Grid((3, 3), bc="dirichlet"), noise_std=noise, seed=2)
    prior = _prior(task.sample_shape, seed=17)
    miss = task.operator.missing.flatten()
    obs = ~miss
    x_true = prior.sample(1, 0.0, torch.Generator().manual_seed(1))
    y = task.observe(x_true, torch.Generator().manual_seed(2))
    # The conditional of the missing block given the (noisy) observed block.
    s, mu = prior.cov, prior.mean
    s_oo = s[obs][:, obs] + noise**2 * torch.eye(int(obs.sum()), dtype=s.dtype)
    gain = s[miss][:, obs] @ torch.linalg.inv(s_oo)
    mean = mu[miss] + gain @ (y.flatten() - mu[obs])
    cov = s[miss][:, miss] - gain @ s[obs][:, miss]
    ens = solve(
        ScorePrior(prior.sde, prior.score), task, y, M, batch_size=M, covariance="exact",
        steps=STEPS, generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    _check_moments(ens[0].flatten(1)[:, miss], mean, cov)
    with pytest.raises(AssertionError):  # the unguided prior fails the same check
        draws = prior.sample(M, 0.0, torch.Generator().manual_seed(4)).flatten(1)
        _check_moments(draws[:, miss], mean, cov)


def test_harmonic_fill_is_exact_for_a_discrete_harmonic_function():
    # x² − y² (and xy) have zero 5-point Laplacian with weights 1/h², so the fill is exact up
    # to rounding; x² + y² (Laplacian 4) and wrong spacing ratios are not.
    grid = Grid((14, 11), domain=((0, 1), (0, 2)), bc="dirichlet")
    x, y = grid.mesh()
    missing = np.zeros(grid.shape, dtype=bool)
    missing[3:10, 2:8] = True
    missing[1:-1, 1:-1] |= ~random_mask((12, 9), 0.3, seed=1).numpy()
    fields = np.stack([x**2 - y**2, x * y, x**2 + y**2])
    filled = harmonic_fill(np.where(missing, 7.0, fields), missing, spacing=grid.spacing)
    err = np.abs(filled - fields)[:, missing].max(axis=1)
    assert err[0] < 1e-11 and err[1] < 1e-11, err
    assert err[2] > 1e-3, err
    wrong = harmonic_fill(fields[0], missing)  # unit spacing: the stencil is not harmonic
    assert np.abs(wrong - fields[0])[missing].max() > 1e-3
    np.testing.assert_array_equal(filled[:, ~missing], fields[:, ~missing])


def test_harmonic_fill_on_a_periodic_axis_interpolates_linearly_across_the_wrap():
    u = np.arange(10, dtype=np.float64) ** 2
    missing = np.isin(np.arange(10), [8, 9, 0, 1])
    filled = harmonic_fill(u, missing, periodic=True)
    # 1-D harmonic = linear in the index, from u[7] = 49 to u[2] = 4 over 5 steps.
    np.testing.assert_allclose(
        filled[[8, 9, 0, 1]], 49 + (4 - 49) * np.arange(1, 5) / 5, atol=1e-12
    )
    bounded = harmonic_fill(u, missing)  # zero flux at the ends instead: constants
    np.testing.assert_allclose(bounded[[8, 9, 0, 1]], [49, 49, 4, 4], atol=1e-12)


def _matern_draws(grid: Grid, length: float, n: int, seed: int) -> np.ndarray:
    pts = np.stack([c.ravel() for c in grid.mesh()], axis=-1)
    r = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    s = math.sqrt(5) * r / length
    cov = 4.0 * (1 + s + s * s / 3) * np.exp(-s) + 1e-10 * np.eye(len(pts))
    z = np.random.default_rng(seed).standard_normal((n, len(pts)))
    return (1.5 + z @ np.linalg.cholesky(cov).T).reshape(n, *grid.shape)


def test_kriging_recovers_the_length_scale_and_is_calibrated_on_gaussian_process_draws():
    grid = Grid((10, 10), bc="dirichlet")
    missing = ~random_mask(grid.shape, 0.3, seed=3).numpy()
    fields = _matern_draws(grid, 0.3, 60, seed=0)
    fits = [kriging(f, missing, grid.mesh()) for f in fields]
    lengths = np.array([f.length_scale for f in fits])
    assert abs(np.median(lengths) / 0.3 - 1) < 0.2, np.median(lengths)
    z2 = np.array(
        [np.mean(((f[missing] - k.mean) / k.std) ** 2) for f, k in zip(fields, fits, strict=True)]
    )
    assert abs(z2.mean() - 1) < 4 * z2.std() / math.sqrt(len(z2)) + 0.05, z2.mean()
    mse = np.mean([np.mean((f[missing] - k.mean) ** 2) for f, k in zip(fields, fits, strict=True)])
    short = [kriging(f, missing, grid.mesh(), length_scale=0.03) for f in fields]
    mse_short = np.mean(
        [np.mean((f[missing] - k.mean) ** 2) for f, k in zip(fields, short, strict=True)]
    )
    assert mse_short > 3 * mse, (mse, mse_short)  # a wrong length scale predicts worse
    const = kriging(np.full(grid.shape, 2.5), missing, grid.mesh(), length_scale=0.3)
    np.testing.assert_allclose(const.mean, 2.5, atol=1e-9)


def test_missing_region_scores_ignore_the_observed_points():
    truth = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    missing = box_mask((6, 6), 0.25)
    missing = ~missing  # box_mask returns the observed mask
    members = truth[:, None].repeat(1, 2, 1, 1, 1) + 100.0 * (~missing)  # wrong where observed
    members[:, 0] += 1.0 * missing  # members y + 1 and y + 3 on the missing points
    members[:, 1] += 3.0 * missing
    scores = missing_region_scores(members, truth, missing)
    # Fair CRPS of {y+1, y+3}: mean |X − y| = 2 minus |2|·2/(2·2·1) = 1.
    assert scores["crps"] == pytest.approx(1.0, abs=1e-12)
    # Spread √2, skill 2, corrected by √(3/2): √3/2.
    assert scores["spread_skill"] == pytest.approx(math.sqrt(3) / 2, abs=1e-12)
    norm = truth[..., missing].flatten(1).norm(dim=1)
    assert scores["rel_l2"] == pytest.approx(float((2 * math.sqrt(9) / norm).mean()), abs=1e-12)
    shifted = missing_region_scores(members + 5.0 * missing, truth, missing)
    assert shifted["crps"] > 5.0  # an error on the missing points counts
    with pytest.raises(ValueError, match="boolean"):
        missing_region_scores(members, truth, missing.double())
