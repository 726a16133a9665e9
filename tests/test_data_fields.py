"""physgen-field/1 files: round trips through h5py, xarray and open_fields; atomic writes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import physgen
from physgen.data import (
    SCHEMA,
    FieldFileError,
    field_names,
    fields,
    open_fields,
    validate_fields,
    write_fields,
)


def make_dataset(n: int = 3, seed: int = 0) -> xr.Dataset:
    """A time-dependent and a steady field on a 5×6 grid, plus a per-sample parameter."""
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {
            "w": (("sample", "time", "x", "y"), rng.normal(size=(n, 4, 5, 6)), {"units": "s-1"}),
            "a": (("sample", "x", "y"), rng.normal(size=(n, 5, 6)), {"long_name": "permeability"}),
            "nu": (("sample",), rng.uniform(size=n)),
        },
        coords={
            "sample": np.arange(10, 10 + n),
            "time": ("time", np.linspace(0.0, 1.5, 4), {"units": "s"}),
            "x": ("x", (np.arange(5) + 0.5) / 5, {"units": "m"}),
            "y": ("y", np.linspace(0.0, 2.0, 6), {"units": "m"}),
        },
        attrs={"fields": ["w", "a"], "problem": "demo", "domain": [0.0, 1.0, 0.0, 2.0]},
    )


@pytest.fixture
def written(tmp_path):
    ds = make_dataset()
    path = write_fields(ds, tmp_path / "f.nc", provenance={"params": {"alpha": 2.0}, "seed": 7})
    return ds, path


def test_roundtrip_h5py(written):
    ds, path = written
    with h5py.File(path, "r") as f:
        assert list(f.attrs["fields"]) == ["w", "a"]
        assert f.attrs["physgen_schema"] == SCHEMA
        assert f.attrs["Conventions"] == "CF-1.8"
        assert f.attrs["indexing"] == "ij"
        assert f.attrs["problem"] == "demo"
        assert f.attrs["physgen_version"] == physgen.__version__
        assert json.loads(f.attrs["params"]) == {"alpha": 2.0}
        assert f["w"].dtype == np.float32 and f["a"].dtype == np.float32
        for c in ("time", "x", "y"):
            assert f[c].dtype == np.float64
            np.testing.assert_array_equal(f[c][:], ds[c].values)
        assert f["sample"].dtype == np.int64
        np.testing.assert_array_equal(f["sample"][:], ds["sample"].values)
        assert [list(d.keys()) for d in f["w"].dims] == [["sample"], ["time"], ["x"], ["y"]]
        assert [list(d.keys()) for d in f["a"].dims] == [["sample"], ["x"], ["y"]]
        assert f["w"].chunks == (1, 4, 5, 6) and f["a"].chunks == (1, 5, 6)
        assert "_FillValue" not in f["w"].attrs and "_FillValue" not in f["x"].attrs
        assert f["w"].attrs["units"] == "s-1" and f["w"].attrs["long_name"] == "w"
        assert f["a"].attrs["units"] == "1" and f["a"].attrs["long_name"] == "permeability"
        assert f["x"].attrs["axis"] == "X" and f["time"].attrs["axis"] == "T"
        np.testing.assert_array_equal(f["w"][:], ds["w"].values.astype(np.float32))
        np.testing.assert_array_equal(f["a"][1], ds["a"].values[1].astype(np.float32))
        np.testing.assert_array_equal(f["nu"][:], ds["nu"].values)


def test_roundtrip_xarray(written):
    ds, path = written
    with xr.open_dataset(path, engine="h5netcdf") as back:
        assert back["w"].dims == ("sample", "time", "x", "y")
        assert back["a"].dims == ("sample", "x", "y")
        assert back["w"].dtype == np.float32
        for c in ("sample", "time", "x", "y"):
            np.testing.assert_array_equal(back[c].values, ds[c].values)
        np.testing.assert_array_equal(back["w"].values, ds["w"].values.astype(np.float32))
        assert back.attrs["problem"] == "demo"
        np.testing.assert_array_equal(back.attrs["domain"], [0.0, 1.0, 0.0, 2.0])
        assert back["x"].attrs["units"] == "m" and back["y"].attrs["axis"] == "Y"


def test_roundtrip_open_fields(written):
    ds, path = written
    back = open_fields(path)
    try:
        assert field_names(back) == ["w", "a"] and back.attrs["fields"] == ["w", "a"]
        assert set(back.data_vars) == {"w", "a", "nu"}
        for name in ("w", "a"):
            assert back[name].dims == ds[name].dims
            np.testing.assert_array_equal(back[name].values, ds[name].values.astype(np.float32))
        for c in ("sample", "time", "x", "y"):
            np.testing.assert_array_equal(back[c].values, ds[c].values)
        assert back["time"].attrs["units"] == "s"
        assert back.attrs["seed"] == 7
        created = back.attrs["created"]
        assert created.endswith("+00:00") and created[:4].isdigit()
    finally:
        back.close()


def test_rewrite_of_opened_file_roundtrips(written, tmp_path):
    _, path = written
    first = open_fields(path, load=True)
    second = open_fields(write_fields(first, tmp_path / "g.nc"), load=True)
    xr.testing.assert_identical(first.drop_attrs(), second.drop_attrs())
    assert second.attrs["fields"] == ["w", "a"] and second.attrs["problem"] == "demo"


def test_single_field_and_default_fields(tmp_path):
    ds = make_dataset().drop_vars(["w", "time"])
    ds.attrs.pop("fields")
    back = open_fields(write_fields(ds, tmp_path / "one.nc"), load=True)
    assert back.attrs["fields"] == ["a"]
    assert "time" not in back.dims


def test_missing_sample_coordinate_is_filled(tmp_path):
    ds = make_dataset().drop_vars("sample")
    back = open_fields(write_fields(ds, tmp_path / "s.nc"), load=True)
    np.testing.assert_array_equal(back["sample"].values, [0, 1, 2])


def test_compression(tmp_path):
    path = write_fields(make_dataset(), tmp_path / "c.nc", compression_level=4)
    with h5py.File(path, "r") as f:
        assert f["w"].compression == "gzip" and f["w"].shuffle
        np.testing.assert_array_equal(f["w"][:], make_dataset()["w"].values.astype(np.float32))


def test_failed_write_leaves_no_file_and_keeps_old(tmp_path, monkeypatch):
    target = tmp_path / "out.nc"
    target.write_bytes(b"previous")

    def broken(ds, path, encoding, slabs):
        with open(path, "wb") as fh:
            fh.write(b"\x89HDF\r\n\x1a\n partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(fields, "write_netcdf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_fields(make_dataset(), target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nc"]
    with pytest.raises(RuntimeError):
        write_fields(make_dataset(), tmp_path / "new.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nc"]


def test_invalid_dataset_is_not_written(tmp_path):
    ds = make_dataset()
    ds["a"] = ds["a"].astype(np.int32)
    target = tmp_path / "bad.nc"
    with pytest.raises(FieldFileError, match=r"bad\.nc: field 'a' has dtype int32"):
        write_fields(ds, target)
    assert list(tmp_path.iterdir()) == []


def test_validate_in_memory_names_source():
    ds = make_dataset()
    with pytest.raises(FieldFileError, match=r"^my-source: missing schema"):
        validate_fields(ds, source="my-source")


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 3),
    grid=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    n_time=st.one_of(st.none(), st.integers(1, 3)),
    seed=st.integers(0, 2**16),
)
def test_roundtrip_any_layout(tmp_path, n, grid, n_time, seed):
    """Every layout (sample, [time], x[, y[, z]]) round-trips exactly through write/open."""
    rng = np.random.default_rng(seed)
    space = ("x", "y", "z")[: len(grid)]
    dims = ("sample", *(("time",) if n_time else ()), *space)
    shape = (n, *((n_time,) if n_time else ()), *grid)
    coords = {d: np.sort(rng.normal(size=m)) for d, m in zip(space, grid, strict=True)}
    if n_time:
        coords["time"] = np.arange(n_time) * rng.uniform(0.1, 1.0)
    ds = xr.Dataset(
        {
            "f": (dims, rng.normal(size=shape).astype(np.float32)),
            "g": (space, rng.normal(size=grid)),
        },
        coords=coords,
        attrs={"fields": ["f"]},
    )
    path = tmp_path / f"rt-{seed}-{n}-{len(grid)}-{n_time}.nc"
    back = open_fields(write_fields(ds, path), load=True)
    assert back["f"].dims == dims and back.attrs["fields"] == ["f"]
    np.testing.assert_array_equal(back["f"].values, ds["f"].values)
    np.testing.assert_array_equal(back["g"].values, ds["g"].values)
    for d, values in coords.items():
        np.testing.assert_array_equal(back[d].values, values)
