"""The figures read as a paper's would: labelled axes with units, explained bands, the right
titles, and a diverging colour map only for signed fields, on robust limits."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the figures never need a display; this only pins the default

import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from physgen.plotting import (
    colour_scale,
    loss_curves_figure,
    marginals_figure,
    mean_std_figure,
    rank_histogram_figure,
    sample_grid_figure,
    spectra_figure,
)


def field(values: np.ndarray, *, units: str = "s-1", long_name: str = "vorticity") -> xr.DataArray:
    """Samples ``(sample, x, y)`` or ``(sample, x)`` on [0, 1] with CF attributes."""
    coords = {
        d: (d, np.linspace(0, 1, n), {"units": "m", "long_name": f"{d} position"})
        for d, n in zip(("x", "y"), values.shape[1:], strict=False)
    }
    dims = ("sample", *coords)
    return xr.DataArray(
        values, dims=dims, coords=coords, name="w", attrs={"units": units, "long_name": long_name}
    )


def images(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.images]


def test_signed_field_gets_a_diverging_map_on_symmetric_percentile_limits() -> None:
    rng = np.random.default_rng(0)
    gen = rng.normal(0.2, 1.0, size=(3, 16, 12))
    ref = rng.normal(0.0, 1.0, size=(3, 16, 12))
    ref[0, 0, 0] = 1e6  # one outlier must not set the colour range
    fig = sample_grid_figure(field(gen), ref=field(ref), n=3, title="w")
    pooled = np.concatenate([gen.ravel(), ref.ravel()])
    p1, p99 = np.percentile(pooled, [1, 99])
    edge = max(abs(p1), abs(p99))
    for ax in images(fig):
        image = ax.images[0]
        assert image.get_cmap().name == "RdBu_r"
        assert image.get_clim() == pytest.approx((-edge, edge), rel=1e-12)
        assert ax.get_xlabel() == "x position [m]" and ax.get_ylabel() == "y position [m]"
    titles = [ax.get_title() for ax in images(fig)]
    assert titles == [*(f"generated {j}" for j in range(3)), *(f"reference {j}" for j in range(3))]
    colourbar = [ax for ax in fig.axes if not ax.images]
    assert [ax.get_ylabel() for ax in colourbar] == ["vorticity [s-1]"]


def test_positive_field_gets_a_sequential_map_even_with_round_off_below_zero() -> None:
    rng = np.random.default_rng(1)
    k = np.exp(rng.normal(size=(4, 10, 10)))
    k[:, 0, :3] = -1e-7  # round-off on 3% of the points: not a signed field
    fig = sample_grid_figure(
        field(k, units="m2", long_name="permeability"), n=4, label="training data"
    )
    p1, p99 = np.percentile(k, [1, 99])
    for ax in images(fig):
        assert ax.images[0].get_cmap().name == "viridis"
        assert ax.images[0].get_clim() == pytest.approx((p1, p99), rel=1e-12)
        assert ax.get_title().startswith("training data ")
    assert all("generated" not in ax.get_title() for ax in fig.axes)
    # Negative control: forcing the diverging map is possible and visible.
    assert colour_scale(k, diverging=True)[0] == "RdBu_r"
    assert colour_scale(k)[0] == "viridis"


def test_colour_scale_threshold_between_signed_and_positive() -> None:
    values = np.linspace(-1.0, 10.0, 100_001)  # tails: |p1| = 0.89 vs p99 = 9.89: 9%
    assert colour_scale(values)[0] == "viridis"
    values = np.linspace(-1.2, 10.0, 100_001)  # |p1| = 1.09 vs 9.89: 11%
    assert colour_scale(values)[0] == "RdBu_r"
    with pytest.raises(ValueError, match="no finite values"):
        colour_scale(np.full(4, np.nan))


def test_one_dimensional_samples_are_labelled_and_counted() -> None:
    rng = np.random.default_rng(2)
    fig = sample_grid_figure(field(rng.normal(size=(5, 30)), units="1", long_name="solution"))
    (ax,) = fig.axes
    assert ax.get_xlabel() == "x position [m]"
    assert ax.get_ylabel() == "solution (dimensionless)"
    assert ax.get_title() == "generated (4 samples)"


def test_mean_std_bands_are_explained_and_exact() -> None:
    rng = np.random.default_rng(3)
    x = np.linspace(-1, 1, 21)
    data = rng.normal(size=(32, 21)) + np.sin(x)
    model = rng.normal(size=(200, 21))
    fig = mean_std_figure(
        x,
        {"u": {"data": data, "model": model}},
        xlabel="x [m]",
        ylabels={"u": "solution [m]"},
    )
    (ax,) = fig.axes
    assert ax.get_xlabel() == "x [m]" and ax.get_ylabel() == "solution [m]"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [
        "data: mean ± 1 std over 32 samples",
        "model: mean ± 1 std over 200 samples",
    ]
    mean, std = data.mean(0), data.std(0, ddof=1)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), mean, rtol=1e-12)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx((mean + std).max(), rel=1e-12)
    assert band.min() == pytest.approx((mean - std).min(), rel=1e-12)
    with pytest.raises(ValueError, match="expected samples"):
        mean_std_figure(x, {"u": {"one": data[:1]}}, xlabel="x", ylabels={"u": "u"})


def test_marginals_spectra_ranks_and_losses_have_labelled_axes(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    sets = {"generated": rng.normal(size=500), "reference": rng.normal(size=800)}
    ax = marginals_figure(sets, xlabel="vorticity", units="s-1").axes[0]
    assert ax.get_xlabel() == "vorticity [s-1]"
    assert ax.get_ylabel() == "probability density [1/(s-1)]"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "generated (n = 500)",
        "reference (n = 800)",
    ]
    ax = marginals_figure(sets, xlabel="log10 relative residual").axes[0]
    assert ax.get_ylabel() == "probability density"

    k = np.arange(1.0, 9.0)
    ax = spectra_figure(k, {"generated": k**-2}, xlabel="wavenumber k [m-1]").axes[0]
    assert ax.get_xlabel() == "wavenumber k [m-1]" and ax.get_ylabel() == "power P(k)"

    ax = rank_histogram_figure(np.full(7, 1 / 7)).axes[0]
    assert ax.get_xlabel() == "rank of the truth among 6 members"
    assert ax.get_ylabel() == "relative frequency"

    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in range(1, 9)))
    ax = loss_curves_figure(log).axes[0]
    assert ax.get_xlabel() == "optimizer step" and ax.get_ylabel() == "loss (log scale)"


def test_evaluate_figures_carry_the_files_units(tmp_path: Path, monkeypatch) -> None:
    """``physgen evaluate`` labels its figures from the files' attributes."""
    import physgen.plotting
    from physgen.cli import main

    drawn: dict[str, Figure] = {}
    monkeypatch.setattr(
        physgen.plotting,
        "save_figure",
        lambda fig, path, **_: drawn.setdefault(Path(path).name, fig),
    )
    from test_metrics_evaluate_cli import grf_dataset, write

    ref = grf_dataset(40, seed=0, size=8)
    ref["a"].attrs.update(units="m2", long_name="permeability")
    gen = grf_dataset(20, seed=1, size=8)
    gen["a"].attrs.update(units="m2", long_name="permeability")
    argv = [
        "evaluate",
        str(write(gen, tmp_path / "g.nc")),
        "--ref",
        str(write(ref, tmp_path / "r.nc")),
    ]
    assert main([*argv, "--out", str(tmp_path / "e"), "--quiet", "--permutations", "0"]) == 0
    spectrum = drawn["a_spectrum.png"].axes[0]
    assert spectrum.get_xlabel() == "wavenumber k [m-1]"
    assert spectrum.get_ylabel() == "power P(k) [(m2)²]"
    marginals = drawn["a_marginals.png"].axes[0]
    assert marginals.get_xlabel() == "permeability [m2]"
    grid = drawn["a_samples.png"]
    titles = [ax.get_title() for ax in images(grid)]
    assert titles[0] == "generated 0" and titles[-1].startswith("reference ")
