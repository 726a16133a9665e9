"""Field files are written and joined block by block: the same file as a whole write, in
memory bounded by a block; the NaN/Inf scan is chunked and ``train --trust-data`` skips it."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import xarray as xr

from physgen.data import fields, find_nonfinite, join_fields, open_fields, write_fields

MiB = 2**20


def _dataset(n: int, seed: int, dtype: str = "float64", start: int = 0) -> xr.Dataset:
    """A trajectory field, a per-sample parameter and a variable without ``sample``."""
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {
            "u": (("sample", "time", "x", "y"), rng.standard_normal((n, 3, 8, 6)).astype(dtype)),
            "nu": (("sample",), rng.random(n), {"long_name": "viscosity"}),
            "c": (("x",), np.arange(8.0)),
        },
        coords={
            "sample": np.arange(start, start + n),
            "x": np.linspace(0, 1, 8),
            "y": np.linspace(0, 1, 6),
            "time": [0.0, 0.5, 1.0],
        },
        attrs={"fields": ["u"], "flag": True, "problem": "demo"},
    )


def _whole_write(ds: xr.Dataset, path: Path, provenance: dict | None = None, level: int = 0):
    """The reference: every array written whole by ``xarray.Dataset.to_netcdf``."""
    out = fields._prepare(ds, provenance)
    out.to_netcdf(path, engine="h5netcdf", encoding=fields._encoding(out, level))


def _describe(path: Path) -> list[Any]:
    """Everything in the HDF5 file but the ``created`` time: objects in order, their
    attributes (dimension references by name), storage layout and raw bytes."""
    with h5py.File(path, "r") as f:

        def attr(key: str, value: Any) -> str:
            if key == "DIMENSION_LIST":
                return str([[f[ref].name for ref in refs] for refs in value])
            if key == "REFERENCE_LIST":
                return str([(f[ref].name, index) for ref, index in value])
            return repr(value)

        out: list[Any] = [sorted((k, attr(k, v)) for k, v in f.attrs.items() if k != "created")]
        for name, obj in f.items():
            layout = (obj.shape, obj.dtype.str, obj.chunks, obj.maxshape, obj.compression)
            layout += (obj.compression_opts, obj.shuffle, repr(obj.fillvalue))
            attrs = [(k, attr(k, v)) for k, v in obj.attrs.items()]
            out.append((name, layout, attrs, obj[()].tobytes()))
    return out


@pytest.mark.parametrize(("dtype", "level"), [("float64", 0), ("float32", 4)])
def test_a_streamed_write_is_the_whole_write(tmp_path: Path, dtype: str, level: int) -> None:
    ds = _dataset(7, seed=0, dtype=dtype)
    _whole_write(ds, tmp_path / "whole.nc", {"split": "train"}, level)
    sample_bytes = 3 * 8 * 6 * np.dtype(dtype).itemsize
    write_fields(  # two samples per block: four blocks, the last one short
        ds,
        tmp_path / "streamed.nc",
        provenance={"split": "train"},
        compression_level=level,
        block_bytes=2 * sample_bytes,
    )
    expected = _describe(tmp_path / "whole.nc")
    assert _describe(tmp_path / "streamed.nc") == expected
    ds["u"][-1, -1, -1, -1] += 1.0  # control: the comparison sees the last value of the last block
    write_fields(
        ds, tmp_path / "changed.nc", provenance={"split": "train"}, compression_level=level
    )
    assert _describe(tmp_path / "changed.nc") != expected


def _parts(folder: Path, sizes: list[int]) -> list[Path]:
    paths, start = [], 0
    for i, n in enumerate(sizes):
        paths.append(write_fields(_dataset(n, seed=i, start=start), folder / f"part{i}.nc"))
        start += n
    return paths


def test_a_streamed_join_is_the_in_memory_concatenation(tmp_path: Path) -> None:
    paths = _parts(tmp_path, [3, 3, 2])
    loaded = [open_fields(p, load=True) for p in paths]
    whole = xr.concat(loaded, dim="sample", data_vars="minimal")
    _whole_write(whole, tmp_path / "whole.nc", {"split": "train"})
    join_fields(paths, tmp_path / "joined.nc", provenance={"split": "train"}, block_bytes=200)
    expected = _describe(tmp_path / "whole.nc")
    assert _describe(tmp_path / "joined.nc") == expected
    join_fields(paths[::-1], tmp_path / "reversed.nc", provenance={"split": "train"})
    assert _describe(tmp_path / "reversed.nc") != expected  # control: order is seen


def test_a_join_refuses_disagreeing_or_nonfinite_parts(tmp_path: Path) -> None:
    paths = _parts(tmp_path, [3, 3])
    other = _dataset(3, seed=1, start=3).assign(c=("x", np.arange(8.0) + 1))
    write_fields(other, paths[1])
    with pytest.raises(fields.FieldFileError, match=r"part1\.nc: variable 'c' differs"):
        join_fields(paths, tmp_path / "joined.nc")
    bad = _dataset(3, seed=1, start=3)
    bad["u"][2, 0, 0, 0] = np.nan
    write_fields(bad, paths[1])
    with pytest.raises(fields.FieldFileError, match=r"part1\.nc: NaN/Inf values: 'u' .*\[2\]"):
        join_fields(paths, tmp_path / "joined.nc")
    assert not (tmp_path / "joined.nc").exists() and not list(tmp_path.glob(".*.tmp"))


def _traced_peak(work: Callable[[], object]) -> int:
    """Peak bytes allocated through Python and numpy while ``work`` runs."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _grf_parts(folder: Path, count: int, samples: int) -> list[Path]:
    """``count`` files of ``samples`` float32 fields 128² (64 KiB each)."""
    rng = np.random.default_rng(0)
    axis = np.linspace(0, 1, 128)
    paths = []
    for i in range(count):
        values = rng.standard_normal((samples, 128, 128), dtype=np.float32)
        ds = xr.Dataset(
            {"u": (("sample", "x", "y"), values)},
            coords={"sample": np.arange(i * samples, (i + 1) * samples), "x": axis, "y": axis},
            attrs={"fields": ["u"]},
        )
        paths.append(write_fields(ds, folder / f"block{i}.nc"))
    return paths


def test_a_join_holds_about_one_block_whatever_the_number_of_blocks(tmp_path: Path) -> None:
    block = 16 * 128 * 128 * 4  # 1 MiB per block, 10 blocks
    paths = _grf_parts(tmp_path, 10, 16)
    bound = 3 * block  # a block as read (xarray may copy it once), its NaN/Inf mask, slack
    peak = _traced_peak(lambda: join_fields(paths, tmp_path / "joined.nc"))
    assert peak < bound, f"streamed join peaked at {peak / MiB:.1f} MiB"
    with open_fields(tmp_path / "joined.nc") as ds:
        assert ds.sizes["sample"] == 10 * 16

    def eager() -> None:  # control: the join as it was, all blocks in memory at once
        loaded = [open_fields(p, load=True) for p in paths]
        _whole_write(xr.concat(loaded, dim="sample"), tmp_path / "eager.nc")

    assert _traced_peak(eager) > 10 * block > bound


def test_write_fields_holds_one_block_of_a_large_array(tmp_path: Path) -> None:
    values = np.random.default_rng(1).standard_normal((64, 128, 128))  # float64, 8 MiB
    axis = np.linspace(0, 1, 128)
    ds = xr.Dataset({"u": (("sample", "x", "y"), values)}, coords={"x": axis, "y": axis})
    block = 2 * 128 * 128 * 8  # two samples in float64
    peak = _traced_peak(lambda: write_fields(ds, tmp_path / "big.nc", block_bytes=block))
    assert peak < 2 * block, f"write_fields peaked at {peak / MiB:.2f} MiB"
    with open_fields(tmp_path / "big.nc", load=True) as back:
        np.testing.assert_array_equal(back["u"].values, values.astype(np.float32))
    # Control: one block of the whole array makes the full float32 copy (4 MiB) the bound sees.
    whole = _traced_peak(lambda: write_fields(ds, tmp_path / "one.nc", block_bytes=values.nbytes))
    assert whole > values.nbytes // 2 > 2 * block


def test_the_nonfinite_scan_reads_blocks_and_finds_the_last_value(tmp_path, monkeypatch):
    ds = _dataset(9, seed=2)
    ds["u"][8, 2, 7, 5] = np.inf  # the very last value of the last block
    path = write_fields(ds, tmp_path / "bad.nc")
    seen: list[int] = []
    real = fields.iter_sample_blocks

    def spy(var, block_bytes):
        for start, block in real(var, block_bytes):
            seen.append(block.shape[0])
            yield start, block

    monkeypatch.setattr(fields, "iter_sample_blocks", spy)
    with open_fields(path, nonfinite="ignore") as lazy:
        bad = find_nonfinite(lazy, block_bytes=2 * 3 * 8 * 6 * 4)
        assert seen == [2, 2, 2, 2, 1]  # nine samples, two per block
        np.testing.assert_array_equal(bad["u"], [8])
        lazy["u"].load()
        lazy["u"][8, 2, 7, 5] = 0.0
        assert find_nonfinite(lazy, block_bytes=100) == {}  # control: a clean field passes


def test_a_variable_whose_encoding_changes_values_is_not_streamed(tmp_path: Path) -> None:
    from physgen.data.stream import placeholder, write_netcdf

    values = np.arange(12.0).reshape(3, 4)
    ds = xr.Dataset({"u": (("sample", "x"), placeholder((3, 4), np.float64))})
    slabs = {"u": lambda: [values]}
    write_netcdf(ds, tmp_path / "plain.nc", {"u": {"_FillValue": None}}, slabs)
    with h5py.File(tmp_path / "plain.nc", "r") as f:
        np.testing.assert_array_equal(f["u"][()], values)
    scaled = {"u": {"_FillValue": None, "scale_factor": 2.0}}
    with pytest.raises(ValueError, match="'u': its netCDF encoding transforms the values"):
        write_netcdf(ds, tmp_path / "scaled.nc", scaled, slabs)


def test_train_trust_data_opens_the_splits_without_the_scan(tmp_path, monkeypatch):
    from physgen.cli import build_parser
    from physgen.cli import train as train_cli

    path = write_fields(_dataset(4, seed=0), tmp_path / "train.nc")
    scans: list[int] = []
    real = fields.find_nonfinite

    def counting(*args, **kwargs):
        scans.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fields, "find_nonfinite", counting)
    args = build_parser().parse_args(["train", "--data", "d", "--model", "m", "--trust-data"])
    assert args.trust_data
    assert len(train_cli._dataset(path, {}, None)) == 4
    assert len(scans) == 1  # control: scanned by default
    assert len(train_cli._dataset(path, {"nonfinite": "ignore"}, None)) == 4  # --trust-data
    assert len(scans) == 1
