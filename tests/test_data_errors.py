"""Every malformed field file gets a clear FieldFileError naming the file and the defect."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import xarray as xr

from physgen.data import FieldFileError, NonFiniteFieldWarning, open_fields, write_fields


def raw_dataset(n: int = 4) -> xr.Dataset:
    """A valid physgen-field/1 dataset in memory, to be broken one way per test."""
    rng = np.random.default_rng(1)
    return xr.Dataset(
        {"u": (("sample", "x", "y"), rng.normal(size=(n, 3, 4)).astype(np.float32))},
        coords={"sample": np.arange(n), "x": np.linspace(0, 1, 3), "y": np.linspace(0, 1, 4)},
        attrs={"physgen_schema": "physgen-field/1", "fields": ["u"]},
    )


def save_raw(ds: xr.Dataset, path) -> str:
    """Write with plain xarray, bypassing write_fields' validation."""
    encoding = {str(v): {"_FillValue": None} for v in ds.variables}
    ds.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return str(path)


def expect(path, defect: str) -> None:
    with pytest.raises(FieldFileError, match=re.escape(str(path)) + ": " + defect) as info:
        open_fields(path)
    assert info.value.source == str(path)


def test_valid_raw_file_opens(tmp_path):
    ds = open_fields(save_raw(raw_dataset(), tmp_path / "ok.nc"), load=True)
    assert ds["u"].shape == (4, 3, 4)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file: .*nope\.nc"):
        open_fields(tmp_path / "nope.nc")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.nc"
    path.write_text("sample,x,u\n0,0.0,1.0\n")
    expect(path, "not an HDF5 file")


def test_truncated(tmp_path):
    path = tmp_path / "cut.nc"
    write_fields(raw_dataset(64), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect(path, r"cannot (be read as HDF5/netCDF|read the data) \(truncated")


def test_missing_schema(tmp_path):
    ds = raw_dataset()
    del ds.attrs["physgen_schema"]
    expect(save_raw(ds, tmp_path / "noschema.nc"), "missing schema")


def test_unknown_schema(tmp_path):
    ds = raw_dataset()
    ds.attrs["physgen_schema"] = "physgen-field/9"
    expect(save_raw(ds, tmp_path / "v9.nc"), "unknown schema 'physgen-field/9'")


def test_foreign_hdf5_without_schema(tmp_path):
    import h5py

    path = tmp_path / "pdebench.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = np.zeros((2, 3, 4), np.float32)
    expect(path, "missing schema.*physgen data import")


def test_missing_sample_dimension(tmp_path):
    ds = raw_dataset().isel(sample=0).drop_vars("sample")
    path = save_raw(ds, tmp_path / "nosample.nc")
    expect(path, "field 'u' has dims .*missing dimension 'sample'")


def test_missing_spatial_dimension(tmp_path):
    ds = raw_dataset().isel(x=0, y=0).drop_vars(["x", "y"])
    path = save_raw(ds, tmp_path / "nospace.nc")
    expect(path, r"field 'u' has dims \('sample',\): missing spatial dimension")


def test_grid_skipping_x(tmp_path):
    ds = raw_dataset().isel(x=0).drop_vars("x")
    path = save_raw(ds, tmp_path / "yonly.nc")
    expect(path, r"fields use spatial dims \('y',\): missing dimension 'x'")


def test_missing_coordinate(tmp_path):
    ds = raw_dataset().drop_vars("y")
    expect(save_raw(ds, tmp_path / "nocoord.nc"), "missing coordinate variable 'y'")


def test_wrong_field_dtype(tmp_path):
    ds = raw_dataset()
    ds["u"] = ds["u"].astype(np.float64)
    expect(save_raw(ds, tmp_path / "f64.nc"), "field 'u' has dtype float64, expected float32")


def test_wrong_coordinate_dtype(tmp_path):
    ds = raw_dataset().assign_coords(x=np.linspace(0, 1, 3).astype(np.float32))
    expect(save_raw(ds, tmp_path / "x32.nc"), "coordinate 'x' has dtype float32, expected float64")


def test_dims_disagree_with_layout(tmp_path):
    ds = raw_dataset()
    ds["u"] = ds["u"].transpose("sample", "y", "x")
    expect(save_raw(ds, tmp_path / "yx.nc"), r"field 'u' has dims \('sample', 'y', 'x'\)")


def test_fields_disagree_on_grid(tmp_path):
    ds = raw_dataset()
    ds["v"] = ds["u"].isel(y=0)
    ds.attrs["fields"] = ["u", "v"]
    expect(save_raw(ds, tmp_path / "grid.nc"), "field 'v' has dims .* disagree with the layout")


def test_fields_names_missing_variable(tmp_path):
    ds = raw_dataset()
    ds.attrs["fields"] = ["u", "p"]
    expect(save_raw(ds, tmp_path / "nop.nc"), "attribute 'fields' names 'p'")


def test_missing_fields_attribute(tmp_path):
    ds = raw_dataset()
    del ds.attrs["fields"]
    expect(save_raw(ds, tmp_path / "nofields.nc"), "global attribute 'fields' is missing")


def _with_nonfinite(tmp_path):
    ds = raw_dataset(6)
    u = ds["u"].values.copy()
    u[1, 0, 2] = np.nan
    u[4, 2, 3] = np.inf
    ds["u"] = (ds["u"].dims, u)
    return write_fields(ds, tmp_path / "nan.nc")


def test_nonfinite_raises_with_sample_positions(tmp_path):
    path = _with_nonfinite(tmp_path)
    expect(path, r"NaN/Inf values: 'u' in 2 sample\(s\) at positions \[1, 4\]")


def test_nonfinite_report(tmp_path):
    path = _with_nonfinite(tmp_path)
    with pytest.warns(NonFiniteFieldWarning, match=r"nan\.nc.*\[1, 4\]") as record:
        ds = open_fields(path, nonfinite="report")
    assert list(record[0].message.samples) == ["u"]
    np.testing.assert_array_equal(record[0].message.samples["u"], [1, 4])
    assert ds["u"].shape == (6, 3, 4)
    ds.close()


def test_nonfinite_ignore(tmp_path):
    path = _with_nonfinite(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = open_fields(path, nonfinite="ignore", load=True)
    assert np.isnan(ds["u"].values[1, 0, 2])


def test_bad_nonfinite_option(tmp_path):
    with pytest.raises(ValueError, match="nonfinite must be"):
        open_fields(tmp_path / "x.nc", nonfinite="drop")


def test_write_rejects_fields_naming_missing_variable(tmp_path):
    ds = raw_dataset()
    ds.attrs["fields"] = ["u", "p"]
    with pytest.raises(FieldFileError, match="names 'p'"):
        write_fields(ds, tmp_path / "w.nc")
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_zero_samples(tmp_path):
    with pytest.raises(FieldFileError, match="no samples"):
        write_fields(raw_dataset().isel(sample=slice(0, 0)), tmp_path / "empty.nc")
    assert list(tmp_path.iterdir()) == []


def test_nonfinite_floats_become_null_for_strict_json() -> None:
    from physgen.data.atomic import nonfinite_to_none

    value = {"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": 2}
    assert nonfinite_to_none(value) == {"a": None, "b": [1.0, None, {"c": None}], "d": 2}


def _declared_only(path, written_u: bool = False):
    """A physgen-field/1 file declaring 10⁷ samples whose data (but x) were never written."""
    import h5netcdf

    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"sample": 10**7, "x": 8}
        f.create_variable("sample", ("sample",), "i8")
        f.create_variable("u", ("sample", "x"), "f4")
        f.create_variable("x", ("x",), "f8")[:] = np.linspace(0.0, 1.0, 8)
        f.attrs["physgen_schema"] = "physgen-field/1"
        f.attrs["fields"] = "u"
    return path


def test_declared_but_never_written_data_is_refused(tmp_path):
    path = _declared_only(tmp_path / "big.nc")
    assert path.stat().st_size < 2**20
    message = r"big\.nc: variable 'sample' declares 10000000 int64 values .* only 0 bytes were"
    with pytest.raises(FieldFileError, match=message):
        open_fields(path)


def test_unwritten_chunks_are_refused(tmp_path):
    import h5py

    path = tmp_path / "chunked.nc"
    with h5py.File(path, "w") as f:
        data = f.create_dataset("u", shape=(10**6, 8), dtype="f4", chunks=(100, 8), compression=4)
        data[:100] = 1.0  # one chunk of 10⁴
    with pytest.raises(FieldFileError, match=r"'u' declares .* only 1 of its 10000 chunks"):
        open_fields(path)


def test_inspect_refuses_a_declared_only_file_in_one_line(tmp_path, capsys):
    from physgen.cli import main

    path = _declared_only(tmp_path / "big.nc")
    assert main(["data", "inspect", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "were ever written" in err


def test_nonfinite_scan_shows_progress(tmp_path, capsys):
    from physgen.data import find_nonfinite

    with open_fields(_with_nonfinite(tmp_path), nonfinite="ignore") as ds:
        bad = find_nonfinite(ds, progress=True)
    np.testing.assert_array_equal(bad["u"], [1, 4])
    assert "NaN/Inf scan" in capsys.readouterr().err
