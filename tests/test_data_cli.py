"""``physgen data inspect`` and ``physgen data import``: output, errors and --help."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import xarray as xr

from physgen.cli import main
from physgen.data import open_fields, write_fields


@pytest.fixture
def field_file(tmp_path):
    u = np.linspace(-1.0, 3.0, 2 * 4 * 3).reshape(2, 4, 3)
    u[1, 0, 0] = np.nan
    ds = xr.Dataset(
        {
            "u": (("sample", "x", "y"), u, {"units": "m s-1", "long_name": "speed"}),
            "nu": (("sample",), [0.1, 0.2]),
            "seed": (("sample",), np.array([9217400000000000123, 17], dtype=np.int64)),
        },
        coords={"x": ("x", np.linspace(0, 1, 4), {"units": "m"}), "y": np.arange(3.0)},
    )
    return write_fields(ds, tmp_path / "f.nc", provenance={"problem": "demo", "seed": 5})


def test_inspect(field_file, capsys):
    assert main(["data", "inspect", str(field_file)]) == 0
    out = capsys.readouterr().out
    assert "physgen-field/1" in out
    assert "dimensions:  sample=2  x=4  y=3" in out
    assert "fields (channel order):  u" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("u "))
    assert "(sample, x, y)" in row and "m s-1" in row and "speed" in row
    # Ranges over the finite values; one NaN counted.
    mean = np.delete(np.linspace(-1.0, 3.0, 24), 12).mean()  # u[1, 0, 0] is the NaN
    assert row.split()[6:10] == ["-1", "3", f"{mean:.4g}", "1"]
    assert "problem: demo" in out and "seed: 5" in out and "physgen_version:" in out
    assert "nu " in out and "0.1 .. 0.2" in out
    # 64-bit integers (per-sample seeds) exactly, not rounded to 6 digits.
    assert "17 .. 9217400000000000123" in out


def test_inspect_no_values(field_file, capsys):
    assert main(["data", "inspect", "--no-values", str(field_file)]) == 0
    assert "non-finite" not in capsys.readouterr().out


def test_inspect_bad_file_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.nc"
    bad.write_text("not hdf5")
    assert main(["data", "inspect", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.nc: not an HDF5 file" in err


def test_import_fno_with_samples(tmp_path, capsys):
    rng = np.random.default_rng(0)
    scipy.io.savemat(
        tmp_path / "ns.mat",
        {"a": rng.normal(size=(4, 6, 6)), "u": rng.normal(size=(4, 6, 6, 3)), "t": [1, 2, 3]},
    )
    dst = tmp_path / "ns.nc"
    assert (
        main(["data", "import", "fno", str(tmp_path / "ns.mat"), str(dst), "--samples", "1:3"]) == 0
    )
    assert f"wrote {dst}: 2 samples, fields ['w', 'w0']" in capsys.readouterr().out
    ds = open_fields(dst, load=True)
    np.testing.assert_array_equal(ds["sample"].values, [1, 2])
    assert ds["w"].shape == (2, 3, 6, 6)


def test_output_path_under_a_file_is_one_line(tmp_path, capsys):
    scipy.io.savemat(tmp_path / "ns.mat", {"a": np.zeros((2, 4, 4)), "u": np.zeros((2, 4, 4, 2))})
    (tmp_path / "plain").write_text("a file, not a folder")
    dst = tmp_path / "plain" / "deeper" / "ns.nc"
    assert main(["data", "import", "fno", str(tmp_path / "ns.mat"), str(dst)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'plain'} is a file, not a folder" in err


def test_import_failure_leaves_nothing(tmp_path, capsys):
    src = tmp_path / "junk.hdf5"
    src.write_bytes(b"\x00" * 64)
    assert main(["data", "import", "pdebench", str(src), str(tmp_path / "out.nc")]) == 1
    assert "junk.hdf5: not an HDF5 file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.hdf5"]


def test_bad_samples_argument(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "import", "well", "a", "b", "--samples", "x:y"])
    assert info.value.code == 2
    assert "--samples expects N or START:STOP[:STEP]" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["data"],
        ["data", "inspect"],
        ["data", "import"],
        ["data", "import", "pdebench"],
        ["data", "import", "well"],
        ["data", "import", "fno"],
    ],
)
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: physgen " + " ".join(argv))
    assert len(out.splitlines()) > 5
