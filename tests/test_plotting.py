"""Plot functions write real PNGs without a display, labelled from the file's metadata."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import xarray as xr

from physgen.plotting import (
    plot_loss_curves,
    plot_marginals,
    plot_rank_histogram,
    plot_sample_grid,
    plot_spectra,
    read_training_log,
)


def assert_real_png(path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5_000
    pixels = matplotlib.image.imread(path)[..., :3]
    # Something was drawn: many distinct colours, not a blank canvas.
    assert pixels.std() > 0.05
    # 8-bit RGB packed into one integer per pixel: the same count as a row-wise unique, which
    # sorts rows lexicographically and takes seconds on a figure.
    rgb = np.rint(pixels * 255).astype(np.uint32)
    assert len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])) > 20
    assert not list(path.parent.glob(f".{path.name}.*"))  # no temporary file left behind


def field(dims: tuple[str, ...], shape: tuple[int, ...], seed: int) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    coords = {
        d: (d, np.linspace(0, 2, n), {"units": "m", "long_name": d})
        for d, n in zip(dims, shape, strict=True)
        if d in ("x", "y")
    }
    return xr.DataArray(
        rng.normal(size=shape).cumsum(axis=-1).astype(np.float32),
        dims=dims,
        coords=coords,
        name="w",
        attrs={"units": "s-1", "long_name": "vorticity"},
    )


def test_sample_grid_2d_with_reference(tmp_path: Path) -> None:
    gen = field(("sample", "x", "y"), (5, 16, 12), 0)
    ref = field(("sample", "x", "y"), (5, 16, 12), 1)
    out = plot_sample_grid(gen, tmp_path / "grid2d.png", ref=ref, n=3, title="test")
    assert_real_png(out)


def test_sample_grid_1d_time_dependent_and_ensemble(tmp_path: Path) -> None:
    traj = field(("sample", "time", "x"), (4, 3, 40), 2)
    assert_real_png(plot_sample_grid(traj, tmp_path / "grid1d.png"))
    ens = field(("sample", "member", "x", "y"), (2, 3, 8, 8), 3)
    assert_real_png(plot_sample_grid(ens, tmp_path / "ens.png"))


def test_sample_grid_rejects_fields_it_cannot_draw(tmp_path: Path) -> None:
    vol = field(("sample", "x", "y", "z"), (2, 4, 4, 4), 4)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        plot_sample_grid(vol, tmp_path / "vol.png")
    assert not (tmp_path / "vol.png").exists()


def test_spectra_marginals_and_rank_histogram(tmp_path: Path) -> None:
    k = np.arange(33.0)
    spectra = {"generated": (k + 1) ** -3.0, "reference": 1.2 * (k + 1) ** -3.0}
    assert_real_png(plot_spectra(k, spectra, tmp_path / "spec.png"))
    rng = np.random.default_rng(5)
    marg = {"generated": rng.normal(size=5000), "reference": rng.normal(0.3, size=5000)}
    assert_real_png(plot_marginals(marg, tmp_path / "marg.png", xlabel="w [s-1]"))
    freq = np.array([0.2, 0.1, 0.05, 0.05, 0.1, 0.2, 0.3])
    assert_real_png(plot_rank_histogram(freq / freq.sum(), tmp_path / "rank.png"))
    with pytest.raises(ValueError, match="spectrum 'bad'"):
        plot_spectra(k, {"bad": np.ones(5)}, tmp_path / "bad.png")


def test_loss_curves_from_json_lines(tmp_path: Path) -> None:
    log = tmp_path / "train.jsonl"
    lines = []
    for step in range(200):
        rec = {"step": step, "loss": float(np.exp(-step / 50) + 0.01), "lr": 1e-3}
        if step % 20 == 0:
            rec["valid_loss"] = float(np.exp(-step / 60) + 0.02)
        lines.append(json.dumps(rec))
    log.write_text("\n".join(lines) + "\n\n")
    assert len(read_training_log(log)) == 200
    assert_real_png(plot_loss_curves(log, tmp_path / "loss.png"))


def test_training_log_errors_name_the_line(tmp_path: Path) -> None:
    log = tmp_path / "bad.jsonl"
    log.write_text('{"step": 0, "loss": 1.0}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        read_training_log(log)
    log.write_text('{"step": 0, "lr": 1.0}\n')
    with pytest.raises(ValueError, match="no numeric key containing 'loss'"):
        plot_loss_curves(log, tmp_path / "x.png")


def test_loss_curves_from_the_training_log_writer(tmp_path: Path) -> None:
    from physgen.training.log import MetricsLog

    log = MetricsLog(tmp_path / "log.jsonl")
    for step in range(1, 60):
        record = {"step": step, "loss": 1.0 / step, "lr": 1e-3}
        if step % 10 == 0:
            record["valid_loss"] = 1.2 / step
        log.write(record)
    log.write({"step": 60, "loss": float("nan")})  # written as null, skipped when drawn
    log.close()
    assert_real_png(plot_loss_curves(tmp_path / "log.jsonl", tmp_path / "curves.png"))
