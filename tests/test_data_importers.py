"""Importers on small files built in each upstream layout: dims, orientation, values, errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io

from physgen.data import FieldFileError, import_fields, open_fields, read_fno, read_well

N, NT, NX, NY = 3, 4, 5, 6


def coded(*shape: int) -> np.ndarray:
    """Values that encode their own index (digit k = index along axis k), so any transposed or
    shifted read shows up as a wrong value."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum(g * 10.0 ** (len(shape) - 1 - k) for k, g in enumerate(grids)).astype(np.float32)


def imported(kind, src, tmp_path, **options):
    dst = import_fields(kind, src, tmp_path / "out.nc", **options)
    return open_fields(dst, load=True)


# -- PDEBench -----------------------------------------------------------------------------------
def test_pdebench_1d_time_dependent(tmp_path):
    src = tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5"
    tensor = coded(N, NT, NX)
    x = (np.arange(NX) + 0.5) / NX
    t = np.arange(NT + 1) * 0.01  # PDEBench stores nt + 1 times for nt frames
    with h5py.File(src, "w") as f:
        f["tensor"], f["x-coordinate"], f["t-coordinate"] = tensor, x, t
        f.attrs["Nu"] = 0.01
    ds = imported("pdebench", src, tmp_path)
    assert ds.attrs["fields"] == ["u"] and ds["u"].dims == ("sample", "time", "x")
    np.testing.assert_array_equal(ds["u"].values, tensor)
    np.testing.assert_array_equal(ds["x"].values, x)
    np.testing.assert_array_equal(ds["time"].values, t[:NT])
    assert ds.attrs["Nu"] == 0.01 and ds.attrs["source"] == "PDEBench"
    assert '"Nu": 0.01' in ds.attrs["params_json"]


def test_pdebench_darcy_steady(tmp_path):
    src = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    nu, sol = coded(N, NX, NY), coded(N, 1, NX, NY) + 0.5
    with h5py.File(src, "w") as f:
        f["nu"], f["tensor"] = nu, sol
        f["x-coordinate"], f["y-coordinate"] = np.linspace(0, 1, NX), np.linspace(0, 2, NY)
        f.attrs["beta"] = 1.0
    ds = imported("pdebench", src, tmp_path)
    assert ds.attrs["fields"] == ["a", "u"]
    assert ds["a"].dims == ds["u"].dims == ("sample", "x", "y") and "time" not in ds.dims
    np.testing.assert_array_equal(ds["a"].values, nu)
    np.testing.assert_array_equal(ds["u"].values, sol[:, 0])
    assert ds["y"].values[-1] == 2.0 and ds.attrs["beta"] == 1.0


def test_pdebench_2d_cfd_multikey_and_sample_slice(tmp_path):
    src = tmp_path / "2D_CFD_Rand_M0.1_periodic_Train.hdf5"
    arrays = {
        k: coded(N, NT, NX, NY) + i for i, k in enumerate(["density", "pressure", "Vx", "Vy"])
    }
    with h5py.File(src, "w") as f:
        for k, v in arrays.items():
            f[k] = v
        f["x-coordinate"], f["y-coordinate"] = np.arange(NX) / NX, np.arange(NY) / NY
        f["t-coordinate"] = np.linspace(0, 1, NT + 1)
        f.attrs["M"] = 0.1
    ds = imported("pdebench", src, tmp_path, samples=slice(1, 3))
    assert ds.attrs["fields"] == ["rho", "p", "vx", "vy"]
    assert ds["vy"].dims == ("sample", "time", "x", "y")
    np.testing.assert_array_equal(ds["sample"].values, [1, 2])
    for key, name in (("density", "rho"), ("pressure", "p"), ("Vx", "vx"), ("Vy", "vy")):
        np.testing.assert_array_equal(ds[name].values, arrays[key][1:3])


def test_pdebench_seed_groups(tmp_path):
    src = tmp_path / "2D_diff-react_NA_NA.h5"
    data = {}
    with h5py.File(src, "w") as f:
        for seed in range(N):
            key = f"{seed:04d}"
            data[key] = coded(NT, NX, NY, 2) + 1000 * seed
            f[f"{key}/data"] = data[key]
            f[f"{key}/grid/x"], f[f"{key}/grid/y"] = np.arange(NX) / NX, np.arange(NY) / NY
            f[f"{key}/grid/t"] = np.linspace(0, 5, NT)
            f[key].attrs["config"] = "sim:\n  seed: 0\n"
    ds = imported("pdebench", src, tmp_path, samples=slice(1, None))
    assert ds.attrs["fields"] == ["u", "v"] and ds["u"].dims == ("sample", "time", "x", "y")
    np.testing.assert_array_equal(ds["seed"].values, [1, 2])
    np.testing.assert_array_equal(ds["sample"].values, [1, 2])
    np.testing.assert_array_equal(ds["u"].values[1], data["0002"][..., 0])
    np.testing.assert_array_equal(ds["v"].values[0], data["0001"][..., 1])
    np.testing.assert_array_equal(ds["time"].values, np.linspace(0, 5, NT))


def test_pdebench_unrecognized_and_short_time(tmp_path):
    src = tmp_path / "odd.hdf5"
    with h5py.File(src, "w") as f:
        f["solution"] = np.zeros((2, 3))
    with pytest.raises(FieldFileError, match=r"odd\.hdf5: no PDEBench layout.*'solution'"):
        import_fields("pdebench", src, tmp_path / "out.nc")
    with h5py.File(src, "w") as f:
        f["tensor"], f["x-coordinate"] = np.zeros((2, 3, 4), np.float32), np.arange(4.0)
        f["t-coordinate"] = np.arange(2.0)
    with pytest.raises(FieldFileError, match="'t-coordinate' has 2 values, the data need 3"):
        import_fields("pdebench", src, tmp_path / "out.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.hdf5"]


# -- The Well -----------------------------------------------------------------------------------
def make_well(path) -> dict[str, np.ndarray]:
    """A file in The Well's layout (as its dummy writer makes it: no time_varying on x)."""
    density = coded(N, NT, NX, NY)
    velocity = coded(N, NT, NX, NY, 2)
    stress = coded(N, NT, NX, NY, 4)
    porosity = coded(NX, NY)
    with h5py.File(path, "w") as f:
        f.attrs.update(
            dataset_name="demo_flow",
            grid_type="cartesian",
            n_spatial_dims=2,
            n_trajectories=N,
            simulation_parameters=["Re"],
            Re=100.0,
        )
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = ["x", "y"]
        dims["time"] = np.linspace(0, 1, NT).astype(np.float32)
        dims["time"].attrs["sample_varying"] = False
        dims["x"] = np.linspace(0, 1, NX).astype(np.float32)
        dims["x"].attrs["sample_varying"] = False  # time_varying deliberately missing
        dims["y"] = np.linspace(0, 2, NY).astype(np.float32)
        dims["y"].attrs.update(sample_varying=False, time_varying=False)
        bcs = f.create_group("boundary_conditions")
        xp = bcs.create_group("x_periodic")
        xp.attrs.update(associated_dims=["x"], bc_type="PERIODIC", sample_varying=False)
        xp["mask"] = np.array([True] + [False] * (NX - 2) + [True])
        yw = bcs.create_group("y_wall")
        yw.attrs.update(associated_dims=["y"], bc_type="WALL")
        scalars = f.create_group("scalars")
        scalars.attrs["field_names"] = ["Re", "inflow"]
        scalars["Re"] = np.float32(100.0)
        scalars["inflow"] = np.arange(N, dtype=np.float32) * 0.5
        t0 = f.create_group("t0_fields")
        t0.attrs["field_names"] = ["density", "porosity"]
        t0["density"] = density
        t0["density"].attrs.update(dim_varying=[True, True], sample_varying=True, time_varying=True)
        t0["porosity"] = porosity
        t0["porosity"].attrs.update(sample_varying=False, time_varying=False)
        t1 = f.create_group("t1_fields")
        t1.attrs["field_names"] = ["velocity"]
        t1["velocity"] = velocity
        t2 = f.create_group("t2_fields")
        t2.attrs["field_names"] = ["stress"]
        t2["stress"] = stress
    return {"density": density, "velocity": velocity, "stress": stress, "porosity": porosity}


def test_well(tmp_path):
    src = tmp_path / "demo_flow.hdf5"
    arrays = make_well(src)
    ds = imported("well", src, tmp_path)
    assert ds.attrs["fields"] == [
        "density",
        "porosity",
        "velocity_x",
        "velocity_y",
        "stress_xx",
        "stress_xy",
        "stress_yx",
        "stress_yy",
    ]
    assert ds["density"].dims == ("sample", "time", "x", "y")
    assert ds["porosity"].dims == ("sample", "x", "y")
    np.testing.assert_array_equal(ds["density"].values, arrays["density"])
    np.testing.assert_array_equal(ds["velocity_y"].values, arrays["velocity"][..., 1])
    np.testing.assert_array_equal(ds["stress_xy"].values, arrays["stress"][..., 1])
    np.testing.assert_array_equal(ds["stress_yx"].values, arrays["stress"][..., 2])
    for i in range(N):
        np.testing.assert_array_equal(ds["porosity"].values[i], arrays["porosity"])
    np.testing.assert_allclose(ds["y"].values, np.linspace(0, 2, NY), rtol=1e-7)
    np.testing.assert_array_equal(ds["inflow"].values, [0.0, 0.5, 1.0])
    assert ds.attrs["bc_x"] == "periodic" and ds.attrs["bc_y"] == "wall"
    assert ds.attrs["Re"] == 100.0 and ds.attrs["title"] == "demo_flow"


def test_well_dim_varying_broadcast_and_bad_shape(tmp_path):
    src = tmp_path / "w.hdf5"
    make_well(src)
    with h5py.File(src, "a") as f:
        profile = np.arange(NY, dtype=np.float32)
        f["t0_fields/inlet"] = np.broadcast_to(profile, (N, NY)).copy()
        f["t0_fields/inlet"].attrs.update(dim_varying=[False, True], time_varying=False)
        f["t0_fields"].attrs["field_names"] = ["density", "porosity", "inlet"]
    ds = read_well(src, samples=slice(0, 2))
    assert ds["inlet"].shape == (2, NX, NY)
    np.testing.assert_array_equal(ds["inlet"].values[1, 3], profile)
    with h5py.File(src, "a") as f:
        f["t0_fields/inlet"].attrs["time_varying"] = True
    with pytest.raises(FieldFileError, match=r"'/t0_fields/inlet' has shape .* disagrees with its"):
        read_well(src)


def test_well_spherical_refused(tmp_path):
    src = tmp_path / "sphere.hdf5"
    make_well(src)
    with h5py.File(src, "a") as f:
        f.attrs["grid_type"] = "spherical"
    with pytest.raises(FieldFileError, match=r"sphere\.hdf5: grid_type 'spherical'"):
        import_fields("well", src, tmp_path / "out.nc")
    assert not (tmp_path / "out.nc").exists()


# -- FNO .mat -----------------------------------------------------------------------------------
def write_mat73(path, arrays: dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 file: HDF5 after a 512-byte header, every array stored axis-reversed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, value in arrays.items():
            f[key] = np.transpose(value)
            f[key].attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116, b" "))


def fno_ns_arrays():
    a = coded(N, NX, NY).astype(np.float64)
    u = coded(N, NX, NY, NT).astype(np.float64)  # time is the last axis
    return {"a": a, "u": u, "t": np.linspace(0.1, 0.4, NT)}


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_fno_navier_stokes(tmp_path, version):
    arrays = fno_ns_arrays()
    src = tmp_path / "ns_data.mat"
    if version == "v5":
        scipy.io.savemat(src, arrays)
    else:
        write_mat73(src, arrays)
    ds = imported("fno", src, tmp_path)
    assert ds.attrs["fields"] == ["w", "w0"]
    assert ds["w"].dims == ("sample", "time", "x", "y") and ds["w"].shape == (N, NT, NX, NY)
    # w[n, t, i, j] = u[n, i, j, t]
    np.testing.assert_array_equal(ds["w"].values, np.moveaxis(arrays["u"], -1, 1))
    assert ds["w"].values[2, 3, 4, 5] == arrays["u"][2, 4, 5, 3] == 2453.0
    np.testing.assert_array_equal(ds["w0"].values, arrays["a"])
    np.testing.assert_allclose(ds["time"].values, arrays["t"])
    np.testing.assert_allclose(ds["x"].values, np.arange(NX) / NX)


def test_fno_darcy_subsample_and_burgers(tmp_path):
    s = 9
    coeff, sol = coded(N, s, s).astype(np.float64), coded(N, s, s).astype(np.float64) * 0.5
    scipy.io.savemat(tmp_path / "darcy.mat", {"coeff": coeff, "sol": sol, "Kcoeff": coeff})
    ds = read_fno(tmp_path / "darcy.mat", subsample=2, samples=slice(0, 2))
    assert ds["a"].shape == (2, 5, 5)
    np.testing.assert_array_equal(ds["u"].values, sol[:2, ::2, ::2])
    np.testing.assert_allclose(ds["x"].values, np.linspace(0, 1, s)[::2])
    write_mat73(tmp_path / "burgers.mat", {"a": coded(N, 8), "u": coded(N, 8) + 1})
    ds = imported("fno", tmp_path / "burgers.mat", tmp_path)
    assert ds["u"].dims == ("sample", "x")
    np.testing.assert_array_equal(ds["u"].values, coded(N, 8) + 1)
    assert ds.attrs["bc_x"] == "periodic"


def test_fno_errors(tmp_path):
    text = tmp_path / "notes.mat"
    text.write_text("not a mat file at all")
    with pytest.raises(FieldFileError, match=r"notes\.mat: not a MATLAB \.mat file"):
        import_fields("fno", text, tmp_path / "out.nc")
    scipy.io.savemat(tmp_path / "other.mat", {"b": np.zeros((2, 3))})
    with pytest.raises(FieldFileError, match=r"other\.mat: no FNO layout recognized.*\['b'\]"):
        import_fields("fno", tmp_path / "other.mat", tmp_path / "out.nc")
    arrays = fno_ns_arrays()
    arrays["a"] = arrays["a"][:, :, :-1]
    scipy.io.savemat(tmp_path / "ns.mat", arrays)
    with pytest.raises(FieldFileError, match="'a' has shape"):
        import_fields("fno", tmp_path / "ns.mat", tmp_path / "out.nc")
    assert not (tmp_path / "out.nc").exists()


def test_import_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown importer 'pdearena'"):
        import_fields("pdearena", tmp_path / "x", tmp_path / "y")
    src = tmp_path / "plain.txt"
    src.write_text("hello")
    with pytest.raises(FieldFileError, match=r"plain\.txt: not an HDF5 file"):
        import_fields("well", src, tmp_path / "out.nc")
    with pytest.raises(FileNotFoundError):
        import_fields("pdebench", tmp_path / "missing.hdf5", tmp_path / "out.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt"]
