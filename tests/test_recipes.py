"""Dataset recipes: every recipe loads; shards concatenate to the unsharded data; runs resume."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import physgen.recipes as recipes
from physgen.cli import main as cli_main
from physgen.data import load_stats, open_fields
from physgen.data.lock import folder_lock
from physgen.recipes import available_recipes, load_recipe, make_dataset, shard_range

REQUIRED = {
    "grf1d",
    "grf2d-64",
    "sde1d-forward",
    "sde1d-mixed",
    "sde1d-inverse",
    "darcy-32",
    "darcy-64",
    "burgers-128",
    "heat-64",
    "ns-64",
    "kolmogorov-64",
    "kolmogorov-32",
    "allen-cahn",
}


def _recipe(tmp_path: Path, problem: str, params: str, splits=(8, 3, 3), block=3) -> Path:
    path = tmp_path / f"tiny-{problem}.toml"
    path.write_text(
        f'problem = "{problem}"\nseed = 4\nblock_size = {block}\n'
        f"[params]\n{params}\n"
        f"[splits]\ntrain = {splits[0]}\nvalid = {splits[1]}\ntest = {splits[2]}\n"
    )
    return path


def _values(path: Path) -> dict[str, np.ndarray]:
    ds = open_fields(path, load=True)
    return {name: ds[name].values for name in [*ds.attrs["fields"], "seed", "sample"]}


def test_every_required_recipe_exists_and_builds_its_problem() -> None:
    assert set(available_recipes()) >= REQUIRED
    for name in available_recipes():
        recipe = load_recipe(name)
        problem = recipe.build_problem()
        assert recipe.splits["train"] > 0 and recipe.description
        if recipe.observation:
            assert recipe.observation in problem.observations()


@pytest.mark.parametrize(
    ("problem", "params"),
    [("sde1d", "n = 33"), ("heat", "n = 16\nt_end = 0.05")],
)
def test_shards_concatenate_to_the_unsharded_dataset(tmp_path: Path, problem, params) -> None:
    recipe = _recipe(tmp_path, problem, params)
    whole = make_dataset(recipe, tmp_path / "whole", progress=False)
    assert set(whole) == {"train", "valid", "test", "stats"}
    for i in (3, 1, 2):  # any order; stats appear once every training shard exists
        parts = make_dataset(recipe, tmp_path / "sharded", shard=(i, 3), progress=False)
        assert ("stats" in parts) == (i == 2)
    for split in ("train", "valid", "test"):
        shards = sorted((tmp_path / "sharded").glob(f"{split}-*-of-003.nc"))
        assert len(shards) == 3
        joined = [_values(p) for p in shards]
        expected = _values(whole[split])
        for key, value in expected.items():
            np.testing.assert_array_equal(np.concatenate([j[key] for j in joined]), value)
    a = load_stats(tmp_path / "whole" / "stats.json")
    b = load_stats(tmp_path / "sharded" / "stats.json")
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].mean == pytest.approx(b[name].mean, rel=1e-12, abs=1e-15)
        assert a[name].count == b[name].count


def test_splits_are_disjoint_and_stats_come_from_train_only(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "sde1d", "n = 33")
    files = make_dataset(recipe, tmp_path / "out", progress=False)
    samples = [open_fields(files[s])["sample"].values for s in ("train", "valid", "test")]
    np.testing.assert_array_equal(np.concatenate(samples), np.arange(14))
    train = open_fields(files["train"], load=True)
    stats = load_stats(files["stats"])
    assert stats["u"].mean == pytest.approx(float(train["u"].values.astype(np.float64).mean()))
    assert stats["u"].count == train["u"].size
    assert json.loads(train.attrs["recipe_json"])["seed"] == 4 and train.attrs["split"] == "train"


def test_an_interrupted_run_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = _recipe(tmp_path, "sde1d", "n = 33")
    clean = make_dataset(recipe, tmp_path / "clean", progress=False)
    real = recipes._make_block
    calls = []

    def dying(*args, **kwargs):
        calls.append(args[1:4])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(recipes, "_make_block", dying)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        make_dataset(recipe, out, progress=False)
    # Nothing half-written: no split file yet, only complete blocks, no temporary files.
    assert not list(out.glob("*.nc")) and not list(out.rglob("*.tmp"))
    assert len(list((out / ".blocks").glob("*.nc"))) == 2
    monkeypatch.setattr(recipes, "_make_block", real)
    resumed = make_dataset(recipe, out, progress=False)
    for split in ("train", "valid", "test"):
        for key, value in _values(clean[split]).items():
            np.testing.assert_array_equal(_values(resumed[split])[key], value)
    assert not (out / ".blocks").exists()
    # A finished dataset is not redone.
    before = resumed["train"].stat().st_mtime_ns
    make_dataset(recipe, out, progress=False)
    assert resumed["train"].stat().st_mtime_ns == before


def test_an_edited_recipe_does_not_reuse_old_files(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "sde1d", "n = 33", splits=(4, 2, 2), block=2)
    out = tmp_path / "d"
    make_dataset(recipe, out, progress=False)
    before = _values(out / "train.nc")
    recipe.write_text(recipe.read_text().replace("seed = 4", "seed = 5"))
    with pytest.raises(ValueError, match=r"train\.nc: made by a different version.*seed"):
        make_dataset(recipe, out, progress=False)
    np.testing.assert_array_equal(_values(out / "train.nc")["u"], before["u"])


def _same_data(a: Path, b: Path) -> None:
    """The two files hold bit-identical variables and the same recipe provenance."""
    one, two = open_fields(a, load=True), open_fields(b, load=True)
    assert sorted(one.variables) == sorted(two.variables)
    for name in one.variables:
        assert one[name].dtype == two[name].dtype
        assert one[name].values.tobytes() == two[name].values.tobytes(), name
    assert one.attrs["recipe_json"] == two.attrs["recipe_json"]


def test_a_rerun_sweeps_stale_temporaries_and_blocks(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "sde1d", "n = 33", splits=(4, 2, 2), block=2)
    clean = make_dataset(recipe, tmp_path / "clean", progress=False)
    out, blocks = tmp_path / "d", tmp_path / "d" / ".blocks"
    blocks.mkdir(parents=True)
    # A block made by another version of the recipe (seed 5), named like a needed block.
    (tmp_path / "old").mkdir()
    old = _recipe(tmp_path / "old", "sde1d", "n = 33", splits=(2, 1, 1), block=2)
    old.write_text(old.read_text().replace("seed = 4", "seed = 5"))
    make_dataset(old, tmp_path / "old", progress=False)
    (tmp_path / "old" / "train.nc").rename(blocks / "train-000000000-000000002.nc")
    # A block of this recipe cut for another block size (4): never used by this run.
    (blocks / "train-000000000-000000004.nc").write_bytes(clean["train"].read_bytes())
    # Temporary files of killed writers: a block, a split file, stats.json.
    junk = [
        blocks / ".train-000000002-000000004.nc.k2j_9x0a.tmp",
        out / ".valid.nc.abcdefgh.tmp",
        out / ".stats.json.0a1b2c3d.tmp",
    ]
    for path in junk:
        path.write_bytes(b"half a file")
    others = [out / "notes.tmp", out / ".notes.nc.abcdefgh.tmp"]  # not this run's files
    for path in others:
        path.write_text("keep")
    made = make_dataset(recipe, out, progress=False)
    assert not any(path.exists() for path in junk) and not blocks.exists()
    assert all(path.read_text() == "keep" for path in others)
    for split in ("train", "valid", "test"):
        _same_data(made[split], clean[split])


def test_a_rerun_keeps_the_blocks_of_a_running_shard(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "sde1d", "n = 33", splits=(4, 2, 2), block=2)
    out, blocks = tmp_path / "d", tmp_path / "d" / ".blocks"
    blocks.mkdir(parents=True)
    theirs = blocks / ".train-000000002-000000004.nc.k2j_9x0a.tmp"  # shard 2's, being written
    theirs.write_bytes(b"half a file")
    with folder_lock(out, recipes.lock_name((2, 2))):
        made = make_dataset(recipe, out, shard=(1, 2), progress=False)
        assert theirs.exists() and set(made) == {"train", "valid", "test"}


def test_a_second_run_into_a_locked_folder_fails_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _recipe(tmp_path, "sde1d", "n = 33", splits=(4, 2, 2), block=2)
    out = tmp_path / "d"
    out.mkdir()
    lock = out / recipes.lock_name(None)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write(f"{os.getpid()}\n")
        held.flush()
        assert cli_main(["data", "make", str(recipe), "--out", str(out), "--quiet"]) == 1
        err = capsys.readouterr().err.strip()
        assert err == f"physgen data: error: {out} is being written by process {os.getpid()}"
        assert [p.name for p in out.iterdir()] == [lock.name]

    # Released on exit, also when the run fails.
    def failing(*args: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(recipes, "_make_block", failing)
    with pytest.raises(RuntimeError, match="boom"):
        make_dataset(recipe, out, progress=False)
    assert not lock.exists()
    monkeypatch.undo()
    assert cli_main(["data", "make", str(recipe), "--out", str(out), "--quiet"]) == 0
    assert not lock.exists()


def test_parallel_workers_give_the_same_data(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "sde1d", "n = 33", splits=(8, 2, 2), block=2)
    one = make_dataset(recipe, tmp_path / "one", progress=False)
    two = make_dataset(recipe, tmp_path / "two", workers=2, progress=False)
    for split in ("train", "valid", "test"):
        xr.testing.assert_equal(
            open_fields(one[split], load=True)[["u", "k", "f"]],
            open_fields(two[split], load=True)[["u", "k", "f"]],
        )


def _children(pid: int) -> set[int]:
    """Pids of the live (not zombie) processes whose parent is ``pid``, read from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it ended while we looked
            continue
        state, ppid = text[text.rindex(")") + 2 :].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def _start_with_workers(tmp_path: Path) -> tuple[subprocess.Popen, set[int]]:
    """Start ``data make --workers 2`` of a recipe of a few minutes' work; wait for its workers."""
    recipe = _recipe(tmp_path, "darcy", "n = 32", splits=(20000, 0, 0), block=50)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    command = [sys.executable, "-m", "physgen", "data", "make", str(recipe)]
    command += ["--out", str(tmp_path / "d"), "--workers", "2", "--quiet"]
    with open(tmp_path / "stderr.txt", "wb") as err:  # a file: survivors cannot block a reader
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
    workers: set[int] = set()
    while len(workers) < 2 and proc.poll() is None:
        time.sleep(0.1)
        workers = _children(proc.pid)
    assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
    return proc, workers


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    proc, workers = _start_with_workers(tmp_path)
    try:
        proc.kill()
        proc.wait()
        time.sleep(5)
        survivors = {pid for pid in workers if _alive(pid)}
    finally:
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert not survivors


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_sigterm_stops_the_workers_and_releases_the_folder(tmp_path: Path) -> None:
    proc, workers = _start_with_workers(tmp_path)
    try:
        proc.terminate()
        status = proc.wait(timeout=120)
        survivors = {pid for pid in workers if _alive(pid)}
    finally:
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert status == 128 + signal.SIGTERM, (tmp_path / "stderr.txt").read_text()
    assert not survivors
    out = tmp_path / "d"
    assert not (out / recipes.lock_name(None)).exists() and not list(out.rglob("*.tmp"))


def test_cli_make(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = _recipe(tmp_path, "sde1d", "n = 33")
    argv = ["data", "make", str(recipe), "--out", str(tmp_path / "d"), "--shard", "2/2", "--quiet"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "train-002-of-002.nc" in printed and "stats" not in printed
    with pytest.raises(SystemExit):
        cli_main(["data", "make", str(recipe), "--shard", "3/2"])
    assert cli_main(["data", "make", "no-such-recipe"]) == 1
    assert "no recipe 'no-such-recipe'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('problem = "sde1d"\nseed = 0\n[splits]\ntrain = -1\n', "non-negative"),
        ('problem = "sde1d"\nseed = 0\nsplit = 3\n[splits]\ntrain = 1\n', "unknown key"),
        ("seed = 0\n[splits]\ntrain = 1\n", "'problem' must be a str"),
        ('problem = "sde1d"\nseed = 0\n[params]\nlenght = 1\n[splits]\ntrain = 1\n', "lenght"),
        ('problem = "sde1d"\nseed = 0\nobservation = "x"\n[splits]\ntrain = 1\n', "observation"),
        ("problem = [", "not valid TOML"),
    ],
)
def test_bad_recipes_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_recipe(path).build_problem()


def test_shard_ranges_partition_every_split() -> None:
    for count in (0, 1, 7, 100):
        for n in (1, 3, 8):
            ranges = [shard_range(count, (i, n)) for i in range(1, n + 1)]
            assert ranges[0][0] == 0 and ranges[-1][1] == count
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
