"""Every registered family through ``physgen train`` → ``physgen sample`` on tiny field files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from physgen.cli import main
from physgen.data import (
    FieldDataset,
    compute_stats,
    load_stats,
    open_fields,
    save_stats,
    write_fields,
)
from physgen.models import available_models, get_model_class
from physgen.training import build_model, read_checkpoint

NX = 16
MEAN, SPREAD = 100.0, 5.0  # the physical scale of the field u: far from the z-scores' 0 ± 1
STEPS = 2

# [model] settings of families whose defaults cost minutes here: the adaptive dopri5 solves
# of an untrained CNF (tolerance 1e-5) take ~60 s per step even on 16 nodes.
MODEL_CONFIG = {"cnf": 'method = "rk4"\nsteps = 4\n'}


def _grf_split(path: Path, n: int, seed: int) -> None:
    """Smooth 1-D fields u(x) = 100 + 5 g(x) in m/s and a per-sample scalar a = mean of g."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, NX)
    modes = rng.standard_normal((n, 3))  # (B, 3) random Fourier amplitudes
    g = sum(modes[:, k, None] * np.sin((k + 1) * np.pi * x) for k in range(3)) / np.sqrt(3)
    ds = xr.Dataset(
        {
            "u": (("sample", "x"), MEAN + SPREAD * g, {"units": "m s-1", "long_name": "velocity"}),
            "a": (("sample",), g.mean(axis=1), {"units": "1"}),
        },
        coords={"sample": np.arange(n), "x": ("x", x, {"units": "m"})},
        attrs={"fields": ["u"]},
    )
    write_fields(ds, path, provenance={"problem": "synthetic"})


def _sde_split(path: Path, n: int, seed: int) -> None:
    """Fields k, u, f of the stochastic elliptic problem's layout on [-1, 1] (values only)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-1.0, 1.0, NX)
    k = np.exp(0.3 * rng.standard_normal((n, 1)) * np.cos(np.pi * x))  # (B, N)
    f = 0.5 + 0.1 * rng.standard_normal((n, 1)) * np.sin(np.pi * x)
    u = (1.0 - x**2) * (1.0 + 0.1 * rng.standard_normal((n, 1)))
    ds = xr.Dataset(
        {name: (("sample", "x"), v, {"units": "1"}) for name, v in (("k", k), ("u", u), ("f", f))},
        coords={"sample": np.arange(n), "x": ("x", x, {"units": "1"})},
        attrs={"fields": ["k", "u", "f"]},
    )
    write_fields(ds, path, provenance={"problem": "sde1d"})


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny dataset folders (train.nc, test.nc, stats.json) as 'physgen data make' writes."""
    out = {}
    for name, write in (("grf", _grf_split), ("sde", _sde_split)):
        folder = tmp_path_factory.mktemp(name)
        write(folder / "train.nc", 32, 1)
        write(folder / "test.nc", 3, 2)
        with open_fields(folder / "train.nc") as ds:
            names = [*ds.attrs["fields"], *(["a"] if "a" in ds else [])]
            save_stats(compute_stats(ds, names), folder / "stats.json", source="train.nc")
        out[name] = folder
    return out


# (dataset, train arguments, model sample shape, model condition shape), most natural first.
_LAYOUTS = (
    ("grf", (), (1, NX), None),
    ("grf", ("--flatten",), (NX,), None),
    ("grf", ("--cond-fields", "a"), (1, NX), (1,)),
    ("grf", ("--flatten", "--cond-fields", "a"), (NX,), (1,)),
    ("sde", (), (3, NX), None),
    ("sde", ("--fields", "u", "--cond-fields", "k"), (1, NX), (1, NX)),  # field to field
)


def _option(args: tuple[str, ...], flag: str) -> list[str]:
    """The values of ``flag`` in a layout's arguments (one value each here)."""
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def _layout(name: str) -> tuple[str, tuple[str, ...], bool]:
    """The first layout the family's ``for_shape`` takes: (dataset, arguments, conditional)."""
    cls = get_model_class(name)
    errors = []
    for data, args, shape, cond in _LAYOUTS:
        try:
            cls.for_shape(shape, cond)
        except ValueError as err:
            errors.append(str(err))
            continue
        return data, args, cond is not None
    pytest.fail(f"{name} takes none of the layouts {[x[2:] for x in _LAYOUTS]}: {errors}")


def _redraw(checkpoint: Path, folder: Path, n: int, args: tuple[str, ...]) -> np.ndarray:
    """The normalized draws ``physgen sample --seed 3`` makes, as ``(cases * n, C, NX)``."""
    contents = read_checkpoint(checkpoint)
    model = build_model(contents, device="cpu")
    cond = None
    if _option(args, "--cond-fields"):
        test = FieldDataset(
            folder / "test.nc", _option(args, "--fields") or None,
            cond_fields=_option(args, "--cond-fields"), stats=folder / "stats.json",
        )  # fmt: skip
        cond = torch.stack([test[i][1] for i in range(len(test))]).repeat_interleave(n, dim=0)
    torch.manual_seed(3)
    with torch.no_grad():
        z = model.sample(n if cond is None else len(cond), cond)
    return z.double().numpy().reshape(len(z), -1, NX)


@pytest.mark.parametrize("name", sorted(m for m in available_models() if not m.startswith("_")))
def test_train_then_sample_every_family(
    name: str, datasets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, args, conditional = _layout(name)
    folder, run, out = datasets[data], tmp_path / "run", tmp_path / "samples.nc"
    train = ["train", "--data", str(folder), "--model", name, "--steps", str(STEPS)]
    train += ["--batch-size", "8", "--device", "cpu", "--out", str(run), "--no-progress", *args]
    if name in MODEL_CONFIG:
        config = tmp_path / "config.toml"
        config.write_text(f"[model]\n{MODEL_CONFIG[name]}", encoding="utf-8")
        train += ["--config", str(config)]
    assert main(train) == 0
    assert "checkpoint:" in capsys.readouterr().out

    n = 4
    sample = ["sample", str(run / "checkpoint.pt"), "--n", str(n), "--out", str(out)]
    sample += ["--device", "cpu", "--seed", "3"]
    if conditional:
        sample += ["--cond", str(folder / "test.nc")]
    assert main(sample) == 0

    with open_fields(folder / "train.nc") as ref, open_fields(out) as ds:
        fields = _option(args, "--fields") or list(ref.attrs["fields"])
        assert list(ds.attrs["fields"]) == fields
        lead = (3, n) if conditional else (n,)  # three test cases, n members each
        for field in fields:
            assert ds[field].shape == (*lead, NX)
            assert ds[field].dims[-1] == "x"
            assert ds[field].attrs["units"] == ref[field].attrs["units"]
        np.testing.assert_array_equal(ds["x"].values, ref["x"].values)
        # The file holds the model's normalized draws mapped back with the training stats:
        # redraw them with the same seed and de-normalize independently, x = mean + scale z.
        z = _redraw(run / "checkpoint.pt", folder, n, args)  # (cases * n, C, NX)
        stats = load_stats(folder / "stats.json")
        for c, field in enumerate(fields):
            expected = stats[field].mean + stats[field].scale * z[:, c]
            values = ds[field].values.reshape(len(z), NX)
            assert np.isfinite(values).all()
            np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5 * stats[field].scale)
        attrs = ds.attrs
        assert attrs["generator"] == "physgen sample"
        assert attrs["model"] == name
        assert int(attrs["checkpoint_step"]) == STEPS
        assert Path(attrs["checkpoint"]) == (run / "checkpoint.pt").resolve()
        assert Path(attrs["training_data"]).resolve() == (folder / "train.nc").resolve()
        assert int(attrs["seed"]) == 3
        if conditional:
            assert Path(attrs["conditions"]) == (folder / "test.nc").resolve()


def test_vector_family_on_fields_names_flatten(
    datasets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A vector-only family given fields fails with one line that names --flatten."""
    argv = ["train", "--data", str(datasets["grf"]), "--model", "maf", "--steps", "1"]
    assert main([*argv, "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "models vectors" in err
    assert f"--flatten models them as vectors of length {NX}" in err
