"""``physgen train`` and ``physgen sample`` end to end on tiny field files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from physgen.cli import main
from physgen.cli.train import load_config
from physgen.data import compute_stats, open_fields, save_stats, write_fields
from physgen.training import read_checkpoint

NX, NT = 16, 3


def _write_split(path: Path, n: int, seed: int) -> None:
    """Fields u(t, x) in m/s around 100 (a trajectory) and a(x), steady, in m2."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, NX)
    a = 2.0 + 0.1 * rng.standard_normal((n, NX))
    u = 100.0 + 5.0 * rng.standard_normal((n, NT, NX)) + a[:, None, :]
    ds = xr.Dataset(
        {
            "u": (("sample", "time", "x"), u, {"units": "m s-1", "long_name": "velocity"}),
            "a": (("sample", "x"), a, {"units": "m2", "long_name": "permeability"}),
        },
        coords={
            "sample": np.arange(seed * 1000, seed * 1000 + n),
            "time": ("time", np.array([0.0, 0.5, 1.0]), {"units": "s"}),
            "x": ("x", x, {"units": "m"}),
        },
    )
    write_fields(ds, path, provenance={"problem": "synthetic"})


def _train_argv(dataset: Path, run: Path, model: str, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(dataset),
        "--model",
        model,
        "--batch-size",
        "16",
        "--out",
        str(run),
        "--fields",
        "u",
        "--no-progress",
        *extra,
    ]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    _write_split(folder / "train.nc", 64, 1)
    _write_split(folder / "valid.nc", 16, 2)
    _write_split(folder / "test.nc", 5, 3)
    with open_fields(folder / "train.nc") as ds:
        save_stats(compute_stats(ds), folder / "stats.json", source="train.nc")
    return folder


def test_train_then_sample_writes_denormalized_fields(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = _train_argv(dataset, run, "vae", "--steps", "4")
    assert main(argv) == 0
    assert "checkpoint:" in capsys.readouterr().out
    contents = read_checkpoint(run / "checkpoint.pt")
    assert contents["step"] == 4 and contents["model_name"] == "vae"
    assert contents["metadata"]["data"]["channels"] == ["u[0]", "u[1]", "u[2]"]
    assert (run / "log.jsonl").is_file()

    # A second run into the same folder must not silently overwrite it.
    assert main(argv) == 1
    assert "--resume" in capsys.readouterr().err
    assert main([*argv, "--steps", "6", "--resume"]) == 0
    assert read_checkpoint(run / "checkpoint.pt")["step"] == 6

    out = tmp_path / "samples.nc"
    assert main(["sample", str(run / "checkpoint.pt"), "--n", "7", "--out", str(out)]) == 0
    with open_fields(out) as ds, open_fields(dataset / "train.nc") as ref:
        assert ds["u"].dims == ("sample", "time", "x") and ds["u"].shape == (7, NT, NX)
        assert ds["u"].attrs["units"] == "m s-1"
        np.testing.assert_array_equal(ds["x"].values, ref["x"].values)
        np.testing.assert_array_equal(ds["time"].values, ref["time"].values)
        # De-normalized: the samples live around the data's mean of ~102 m/s, not around 0.
        assert abs(float(ds["u"].mean()) - float(ref["u"].mean())) < 3 * float(ref["u"].std())
        assert float(ds["u"].mean()) > 50
        assert ds.attrs["model"] == "vae" and ds.attrs["checkpoint_step"] == 6
        assert str(run / "checkpoint.pt") in ds.attrs["checkpoint"]


def test_conditional_model_samples_members_per_condition(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = _train_argv(dataset, run, "cvae", "--steps", "3", "--cond-fields", "a")
    assert main([*argv, "--time", "frames"]) == 0
    out = tmp_path / "posterior.nc"
    assert main(["sample", str(run / "checkpoint.pt"), "--n", "4", "--out", str(out)]) == 1
    argv = [
        "sample",
        str(run / "checkpoint.pt"),
        "--n",
        "4",
        "--out",
        str(out),
        "--cond",
        str(dataset / "test.nc"),
        "--seed",
        "3",
    ]
    assert main(argv) == 0
    with open_fields(out) as ds:
        # Frames mode: every (sample, time) pair of test.nc is one condition with 4 members.
        assert ds["u"].dims == ("sample", "member", "x")
        assert ds["u"].shape == (5 * NT, 4, NX)
        assert "test.nc" in ds.attrs["conditions"]
        first = ds["u"].values.copy()
    assert main(argv) == 0  # the same seed draws the same samples
    with open_fields(out) as ds:
        np.testing.assert_array_equal(ds["u"].values, first)


def test_config_file_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[model]\nlatent_dim = 4\n[fit]\nlr = 1e-3\nema_decay = 0.99\n[data]\nfields = ["u"]\n'
    )
    assert load_config(good) == {
        "model": {"latent_dim": 4},
        "fit": {"lr": 1e-3, "ema_decay": 0.99},
        "data": {"fields": ["u"]},
    }
    bad = tmp_path / "bad.toml"
    bad.write_text("[fit]\nlearning_rate = 1e-3\n")
    with pytest.raises(ValueError, match="'learning_rate', not an argument of fit"):
        load_config(bad)
    bad.write_text("[optimizer]\nlr = 1\n")
    with pytest.raises(ValueError, match="unknown tables"):
        load_config(bad)


def test_bad_data_and_model_names_fail_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--data", str(tmp_path), "--model", "vae"]) == 1
    assert "no train.nc" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--model", "no-such-family"]) == 1
    assert "unknown model 'no-such-family'" in capsys.readouterr().err


def test_shipped_example_config_is_accepted(dataset: Path, tmp_path: Path) -> None:
    config = Path(__file__).parents[1] / "examples" / "train.toml"
    assert set(load_config(config)) == {"model", "fit", "data"}
    run = tmp_path / "run"
    argv = ["train", "--data", str(dataset), "--model", "cvae", "--config", str(config)]
    argv += ["--steps", "2", "--batch-size", "16", "--out", str(run), "--no-progress"]
    assert main(argv) == 0
    contents = read_checkpoint(run / "checkpoint.pt")
    assert contents["step"] == 2 and contents["model_name"] == "cvae"
    assert contents["model_config"]["latent_dim"] == 16  # [model] reached for_shape
