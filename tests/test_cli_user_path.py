"""A scientist's own field file to samples and a report: split, train, sample, evaluate, infer.

Everything runs in-process through ``physgen.cli.main`` with tiny files and a few steps.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from physgen.cli import main
from physgen.data import compute_stats, open_fields, split_counts, write_fields
from physgen.training import read_checkpoint

N_SAMPLES, NX = 40, 8


def _fields(n: int, nx: int, seed: int = 0) -> xr.Dataset:
    """A permeability-like field ``a`` and a response ``u = 2 + a + noise`` on an nx × nx grid."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, nx, nx))
    u = 2.0 + a + 0.1 * rng.standard_normal((n, nx, nx))
    x = np.linspace(0.0, 1.0, nx)
    return xr.Dataset(
        {
            "a": (("sample", "x", "y"), a, {"units": "1"}),
            "u": (("sample", "x", "y"), u, {"units": "m"}),
        },
        coords={"sample": np.arange(100, 100 + n), "x": ("x", x), "y": ("y", x)},
    )


@pytest.fixture
def field_file(tmp_path: Path) -> Path:
    """40 samples of (a, u) on an 8 × 8 grid, in one physgen-field file."""
    return write_fields(_fields(N_SAMPLES, NX), tmp_path / "mine.nc")


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


def _train(data: Path | str, out: Path, *extra: str) -> int:
    argv = ["train", "--data", str(data), "--model", "vae", "--steps", "3"]
    return main([*argv, "--batch-size", "8", "--out", str(out), "--no-progress", *extra])


# -- data split ----------------------------------------------------------------------------------
def _sample_ids(path: Path) -> np.ndarray:
    with open_fields(path) as ds:
        return ds["sample"].values.copy()


def test_data_split_is_disjoint_covers_the_file_and_follows_the_fractions(
    field_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "split"
    argv = ["data", "split", str(field_file), "--out", str(out), "--fractions", "0.6", "0.25"]
    assert main([*argv, "0.15", "--seed", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0 and str(out) in line and "train 24, valid 10, test 6" in line
    ids = {k: _sample_ids(out / f"{k}.nc") for k in ("train", "valid", "test")}
    assert [len(v) for v in ids.values()] == [24, 10, 6]
    union = np.concatenate(list(ids.values()))
    assert len(set(union)) == len(union)  # disjoint
    np.testing.assert_array_equal(np.sort(union), _sample_ids(field_file))  # the whole file
    stats = json.loads((out / "stats.json").read_text())["fields"]
    assert stats == {k: asdict(v) for k, v in compute_stats(out / "train.nc").items()}


def test_data_split_is_deterministic_per_seed(field_file: Path, tmp_path: Path) -> None:
    def split(name: str, seed: int) -> np.ndarray:
        out = tmp_path / name
        assert main(["data", "split", str(field_file), "--out", str(out), "--seed", str(seed)]) == 0
        return _sample_ids(out / "train.nc")

    first, again, other = split("a", 0), split("b", 0), split("c", 1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("n", [1, 7, 10, 40, 41, 99])
def test_split_counts_sum_to_the_file(n: int) -> None:
    counts = split_counts(n, (0.8, 0.1, 0.1))
    assert sum(counts) == n
    assert all(abs(c - f * n) < 1 for c, f in zip(counts, (0.8, 0.1, 0.1), strict=True))


def test_data_split_refuses_other_data_and_bad_fractions(
    field_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "split"
    assert main(["data", "split", str(field_file), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "split", str(field_file), "--out", str(out), "--seed", "5"]) == 1
    assert "already exists" in _one_error_line(capsys)
    bad = ["data", "split", str(field_file), "--out", str(tmp_path / "x"), "--fractions"]
    assert main([*bad, "0.5", "0.5", "0.5"]) == 1
    assert "summing to 1" in _one_error_line(capsys)
    assert not (tmp_path / "x").exists()


# -- train --data ----------------------------------------------------------------------------
def test_train_sample_evaluate_from_one_file(
    field_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert _train(field_file, run) == 0
    err = capsys.readouterr().err
    note = [line for line in err.splitlines() if "split in" in line]
    assert len(note) == 1 and str(run / "data") in note[0] and "stats.json" in note[0]
    assert "train 32, valid 4, test 4" in note[0]

    contents = read_checkpoint(run / "checkpoint.pt")
    meta = contents["metadata"]
    expected = compute_stats(run / "data" / "train.nc")
    assert meta["data"]["stats"] == {k: asdict(v) for k, v in expected.items()}
    assert meta["data"]["mean"] == [expected["a"].mean, expected["u"].mean]
    assert meta["data"]["scale"] == [expected["a"].std, expected["u"].std]
    assert meta["split"]["sizes"] == {"train": 32, "valid": 4, "test": 4}

    samples = tmp_path / "samples.nc"
    assert main(["sample", str(run / "checkpoint.pt"), "--n", "6", "--out", str(samples)]) == 0
    report = tmp_path / "report"
    argv = ["evaluate", str(samples), "--ref", str(run / "data" / "test.nc")]
    assert main([*argv, "--out", str(report), "--no-figures", "--permutations", "5"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["fields"]) == {"a", "u"}


def test_train_reuses_the_split_of_an_earlier_run(field_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _train(field_file, run) == 0
    before = _sample_ids(run / "data" / "train.nc")
    assert _train(field_file, run, "--resume", "--steps", "4") == 0
    np.testing.assert_array_equal(_sample_ids(run / "data" / "train.nc"), before)


@pytest.mark.parametrize(
    ("name", "content"),
    [("table.csv", b"a,b\n1,2\n"), ("blob.bin", b"\x89\x00\xff\x10" * 16)],
)
def test_train_refuses_a_file_that_is_neither_recipe_nor_field_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert _train(path, tmp_path / "run") == 1
    line = _one_error_line(capsys)
    assert str(path) in line
    assert "recipe name" in line and "folder" in line and "physgen-field .nc file" in line
    assert not (tmp_path / "run").exists()


def test_train_computes_missing_statistics_and_says_so(
    field_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    with open_fields(field_file) as ds:
        write_fields(ds.isel(sample=slice(0, 30)), folder / "train.nc")
    run = tmp_path / "run"
    assert _train(folder, run) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "stats.json" in line]
    assert len(notes) == 1 and "computed on" in notes[0] and str(folder) in notes[0]
    meta = read_checkpoint(run / "checkpoint.pt")["metadata"]
    assert meta["normalization"]["computed"] is True
    expected = compute_stats(folder / "train.nc")
    assert meta["data"]["stats"] == {k: asdict(v) for k, v in expected.items()}
    assert meta["data"]["mean"] == [expected["a"].mean, expected["u"].mean]
    assert not (folder / "stats.json").exists()  # the user's folder is left as it was


# -- refused, not guessed ------------------------------------------------------------------
@pytest.fixture
def colorizer(field_file: Path, tmp_path: Path) -> Path:
    """A conditional model of u given a (task colorize:u), trained for 2 steps on 8 × 8 data."""
    run = tmp_path / "cvae"
    argv = ["--data", str(field_file), "--model", "cvae", "--batch-size", "8", "--out", str(run)]
    options = ["--fields", "u", "--cond-fields", "a", "--steps", "2", "--no-progress"]
    assert main(["train", *argv, *options]) == 0
    return run / "checkpoint.pt"


def _infer(checkpoint: Path, obs: Path, out: Path) -> int:
    argv = ["infer", str(checkpoint), "--task", "colorize:u", "--obs", str(obs)]
    return main([*argv, "--n-samples", "2", "--out", str(out)])


def test_infer_refuses_observations_on_another_grid(
    colorizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    wrong = write_fields(_fields(3, 16), tmp_path / "obs16.nc")
    out = tmp_path / "ens.nc"
    assert _infer(colorizer, wrong, out) == 1
    line = _one_error_line(capsys)
    assert str(wrong) in line and str(colorizer) in line
    assert "16×16" in line and "8×8" in line
    assert not out.exists()
    right = write_fields(_fields(3, 8, seed=1), tmp_path / "obs8.nc")  # the control
    assert _infer(colorizer, right, out) == 0 and out.is_file()


def test_infer_refuses_other_coordinates_and_missing_fields(
    colorizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    stretched = _fields(3, 8).assign_coords(x=np.linspace(0.0, 2.0, 8))
    out = tmp_path / "ens.nc"
    assert _infer(colorizer, write_fields(stretched, tmp_path / "long.nc"), out) == 1
    line = _one_error_line(capsys)
    assert "coordinate 'x'" in line and str(colorizer) in line
    renamed = write_fields(_fields(3, 8).rename(a="b"), tmp_path / "renamed.nc")
    assert _infer(colorizer, renamed, out) == 1
    line = _one_error_line(capsys)
    assert "no field(s) ['a']" in line and str(renamed) in line and str(colorizer) in line
    assert not out.exists()


def test_evaluate_on_mismatched_grids_leaves_no_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = write_fields(_fields(10, 8), tmp_path / "s.nc")
    ref = write_fields(_fields(10, 16, seed=1), tmp_path / "ref.nc")
    report = tmp_path / "report"
    assert main(["evaluate", str(samples), "--ref", str(ref), "--out", str(report)]) == 1
    line = _one_error_line(capsys)
    assert str(samples) in line and str(ref) in line
    assert not report.exists()
    assert not (tmp_path / "s-evaluation").exists()


# -- progress on stderr, silenced by --quiet ---------------------------------------------------
def test_sample_and_evaluate_show_progress_on_stderr_unless_quiet(
    field_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert _train(field_file, run) == 0
    capsys.readouterr()
    samples = tmp_path / "s.nc"
    argv = ["sample", str(run / "checkpoint.pt"), "--n", "12", "--batch-size", "4"]
    assert main([*argv, "--out", str(samples)]) == 0
    out, err = capsys.readouterr()
    assert "sample" in err and "3/3" in err and "batch" in err
    assert "batch" not in out and "%|" not in out
    assert main([*argv, "--out", str(tmp_path / "q.nc"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "wrote" in out

    ref = run / "data" / "test.nc"
    argv = ["evaluate", str(samples), "--ref", str(ref), "--no-figures", "--permutations", "5"]
    assert main([*argv, "--out", str(tmp_path / "e1")]) == 0
    out, err = capsys.readouterr()
    assert "evaluate" in err and "group" in err and "%|" not in out
    assert main([*argv, "--out", str(tmp_path / "e2"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_infer_shows_progress_on_stderr_unless_quiet(
    colorizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    obs = write_fields(_fields(3, 8, seed=1), tmp_path / "obs.nc")
    capsys.readouterr()
    assert _infer(colorizer, obs, tmp_path / "a.nc") == 0
    out, err = capsys.readouterr()
    assert "infer" in err and "batch" in err and "%|" not in out
    argv = ["infer", str(colorizer), "--task", "colorize:u", "--obs", str(obs), "--quiet"]
    assert main([*argv, "--n-samples", "2", "--out", str(tmp_path / "b.nc")]) == 0
    assert capsys.readouterr().err == ""


# -- small defects -----------------------------------------------------------------------------
def test_import_into_a_folder_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import scipy.io

    scipy.io.savemat(tmp_path / "ns.mat", {"a": np.zeros((2, 4, 4)), "u": np.zeros((2, 4, 4, 2))})
    folder = tmp_path / "out"
    folder.mkdir()
    assert main(["data", "import", "fno", str(tmp_path / "ns.mat"), f"{folder}/"]) == 1
    line = _one_error_line(capsys)
    assert f"cannot write {folder}: it is a folder" in line
    assert ".tmp" not in line and "Errno" not in line
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "ns.mat",
        "out",
    ]


def test_sample_with_conditions_counts_conditions_and_members(
    colorizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cond = write_fields(_fields(3, 8, seed=1), tmp_path / "cond.nc")
    capsys.readouterr()
    out = tmp_path / "s.nc"
    argv = ["sample", str(colorizer), "--cond", str(cond), "--n", "5", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    assert (
        capsys.readouterr().out.strip() == f"wrote {out}: 3 conditions × 5 members of (1, 8, 8) (u)"
    )
    sampler = json.loads(open_fields(out).attrs["sampler"])
    assert sampler["family"] == "cvae" and sampler["sampler"] == "direct"
    assert sampler["mean"] is True and sampler["nfe"] >= 1


def test_sample_records_the_sampler_steps_and_evaluations_used(
    field_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    assert _train(field_file, run, "--model", "diffusion", "--steps", "1") == 0
    out = tmp_path / "s.nc"
    argv = ["sample", str(run / "checkpoint.pt"), "--n", "4", "--out", str(out), "--quiet"]
    assert main([*argv, "--option", "steps=3"]) == 0
    sampler = json.loads(open_fields(out).attrs["sampler"])
    assert sampler["family"] == "diffusion"
    assert (sampler["sampler"], sampler["steps"], sampler["nfe"]) == ("ddim", 3, 3)
    assert main([*argv[:-2], str(tmp_path / "t.nc"), "--option", "sampler=euler-maruyama",
                 "--option", "steps=4", "--batch-size", "2", "--quiet"]) == 0  # fmt: skip
    sampler = json.loads(open_fields(tmp_path / "t.nc").attrs["sampler"])
    assert (sampler["sampler"], sampler["steps"], sampler["nfe"]) == ("euler-maruyama", 4, 4)


# -- the problem follows the data ----------------------------------------------------------------
def test_pivae_trains_on_the_problem_its_data_names_and_reloads(tmp_path: Path) -> None:
    """``--model pivae`` on Darcy data: the data's problem and parameters, physical units.

    Without the data's problem the PI-VAE would assume the 1-D ``sde1d`` problem and refuse
    the 2-D fields; without the training statistics its physics loss would read z-scores
    as physical values. The checkpoint reloads by itself (``sample`` needs no flags).
    """
    from physgen.problem import load_registered

    darcy = load_registered("darcy", n=8, a_plus=10.0)
    data = write_fields(darcy.generate(24, seed=0), tmp_path / "darcy8.nc")
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--model", "pivae", "--steps", "2"]
    assert main([*argv, "--batch-size", "8", "--out", str(out), "--no-progress"]) == 0
    checkpoint = read_checkpoint(out / "checkpoint.pt")
    config = checkpoint["model_config"]
    assert config["problem"] == "darcy"
    assert config["problem_params"]["n"] == 8 and config["problem_params"]["a_plus"] == 10.0
    stats = json.loads((out / "data" / "stats.json").read_text())
    fields = checkpoint["metadata"]["data"]["fields"]
    for key, stat in (("channel_mean", "mean"), ("channel_std", "std")):
        expected = [stats["fields"][name][stat] for name in fields]
        np.testing.assert_allclose(config[key], expected, rtol=1e-6)
    assert (
        main(
            [
                "sample",
                str(out / "checkpoint.pt"),
                "--n",
                "4",
                "--out",
                str(tmp_path / "s.nc"),
                "--quiet",
            ]
        )
        == 0
    )
    with open_fields(tmp_path / "s.nc") as ds:
        assert ds["u"].shape == (4, 8, 8)


def test_train_refuses_a_data_file_naming_a_problem_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = _fields(24, 8).assign_attrs(problem="../evil.py")
    data = write_fields(ds, tmp_path / "evil.nc")
    argv = ["train", "--data", str(data), "--model", "pivae", "--steps", "1"]
    assert main([*argv, "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    message = capsys.readouterr().err.splitlines()[-1]  # after the line reporting the split
    assert "train.nc: refusing the 'problem' attribute" in message
    assert "[model] table of --config" in message


def test_pdebench_darcy_import_train_sample_evaluate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The chain a scientist runs on a PDEBench Darcy file: import → train (split and
    statistics made on the way) → sample → evaluate, with no file written by hand."""
    import h5py

    rng = np.random.default_rng(0)
    n, nx = 50, 8  # a test split of 5: enough for a floor from two halves
    nu = np.where(rng.standard_normal((n, nx, nx)) > 0, 12.0, 3.0).astype(np.float32)
    sol = (0.01 / nu[:, None] + 0.001 * rng.standard_normal((n, 1, nx, nx))).astype(np.float32)
    src = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    with h5py.File(src, "w") as f:
        f["nu"], f["tensor"] = nu, sol
        f["x-coordinate"] = f["y-coordinate"] = np.linspace(0.0, 1.0, nx)
    imported = tmp_path / "darcy.nc"
    assert main(["data", "import", "pdebench", str(src), str(imported)]) == 0
    run = tmp_path / "run"
    assert _train(imported, run) == 0
    stats = json.loads((run / "data" / "stats.json").read_text())["fields"]
    contents = read_checkpoint(run / "checkpoint.pt")
    assert contents["metadata"]["data"]["mean"] == [stats["a"]["mean"], stats["u"]["mean"]]
    with open_fields(run / "data" / "train.nc") as ds:  # the statistics are the train split's
        np.testing.assert_allclose(stats["u"]["mean"], ds["u"].values.astype(np.float64).mean())
    samples = tmp_path / "samples.nc"
    assert main(["sample", str(run / "checkpoint.pt"), "--n", "5", "--out", str(samples)]) == 0
    report = tmp_path / "report"
    argv = ["evaluate", str(samples), "--ref", str(run / "data" / "test.nc"), "--out"]
    assert main([*argv, str(report), "--no-figures", "--permutations", "5"]) == 0
    assert set(json.loads((report / "metrics.json").read_text())["fields"]) == {"a", "u"}


def test_pivae_on_a_problem_files_data_needs_the_file_passed_each_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Data from a user's problem file: train and sample take the file only from --problem
    (the data and the checkpoint name it and its hash, never load it); an edited file is
    refused."""
    from physgen.problem import file_sha256, find_project_dir, load

    mine = tmp_path / "mydarcy.py"
    source = (find_project_dir("problems") / "darcy.py").read_text()
    mine.write_text(source.replace('name = "darcy"', 'name = "mydarcy"'))
    data = write_fields(load(mine, n=8).generate(24, seed=0), tmp_path / "mine.nc")
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--model", "pivae", "--steps", "2", "--batch-size", "8"]
    assert main([*argv, "--out", str(run), "--no-progress"]) == 1
    assert "pass it with --problem PATH" in capsys.readouterr().err
    assert main([*argv, "--out", str(run), "--no-progress", "--problem", str(mine)]) == 0
    config = read_checkpoint(run / "checkpoint.pt")["model_config"]
    assert config["problem"] == "mydarcy" and config["problem_params"]["n"] == 8
    assert config["problem_file"] == str(mine.resolve())
    assert config["problem_sha256"] == file_sha256(mine)
    assert "problem_object" not in config

    sample = ["sample", str(run / "checkpoint.pt"), "--n", "3", "--quiet"]
    capsys.readouterr()
    assert main([*sample, "--out", str(tmp_path / "a.nc")]) == 1  # the config names no code
    assert "pass that file explicitly" in capsys.readouterr().err
    assert main([*sample, "--out", str(tmp_path / "b.nc"), "--problem", str(mine)]) == 0
    mine.write_text(mine.read_text() + "\n# edited\n")  # negative control: other bytes
    assert main([*sample, "--out", str(tmp_path / "c.nc"), "--problem", str(mine)]) == 1
    assert "the file the model was trained with" in capsys.readouterr().err
