"""Dataset recipes (``datasets/*.toml``) and the runner that turns one into train/valid/test files.

A recipe names a problem, its parameters, the split sizes and a seed::

    problem = "darcy"          # a name in problems/, or a .py path relative to the recipe
    seed = 0
    description = "FNO Darcy flow on 32² cells"
    observation = "pressure_sensors"   # optional: the default inverse task's operator
    [params]
    n = 32
    [splits]
    train = 1000
    valid = 100
    test = 100

``make_dataset`` writes ``<out>/{train,valid,test}.nc`` (physgen-field/1) and ``stats.json``
(training split only). Samples are numbered globally across the splits (train first), and
sample ``i`` is drawn from its own generator seeded by ``(seed, i)``, so the data do not
depend on how the work is cut. Work proceeds in blocks of samples, each written atomically
under ``<out>/.blocks/``; an interrupted run leaves complete blocks behind, and running it
again generates only what is missing, then joins the blocks into the split file, streaming
them block by block so that memory does not grow with the split (also for the statistics). With
``shard=(i, n)`` a run makes shard ``i`` of ``n`` of every split (``train-001-of-004.nc``,
...): concatenated along ``sample`` the shards equal the unsharded files.

A run holds a lock in ``<out>`` (one per shard), so a second run of the same shard into the
same folder fails at once. Before it writes, a run removes what interrupted runs left behind:
temporary files of its own files, and blocks in its range that it cannot use (made by another
version of the recipe, holding the wrong number of samples, cut for another block size, or
left over from a split file that is already finished). When no other run holds a lock in the
folder, it also removes every temporary file there and the unusable blocks of other shards.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
from tqdm.auto import tqdm

from physgen.data import compute_stats, join_fields, save_stats, write_fields
from physgen.data.atomic import sweep_temporaries
from physgen.data.lock import folder_lock, is_locked
from physgen.paths import data_root, find_project_dir, read_toml
from physgen.problem import Problem, load
from physgen.workers import worker_pool

__all__ = [
    "SPLITS",
    "Recipe",
    "available_recipes",
    "load_recipe",
    "lock_name",
    "make_dataset",
    "shard_range",
    "split_path",
]

SPLITS = ("train", "valid", "test")
_BLOCKS = ".blocks"
_LOCK = ".make{}.lock"  # the lock of a run: ".make.lock", ".make-002-of-004.lock" for a shard
_SPLIT = "(?P<split>" + "|".join(SPLITS) + ")"
_BLOCK_NAME = re.compile(_SPLIT + r"-(?P<lo>\d{9})-(?P<hi>\d{9})\.nc")
_OUTPUT_NAME = re.compile(_SPLIT + r"(-\d{3}-of-\d{3})?\.nc|stats\.json")


@dataclass(frozen=True)
class Recipe:
    """A parsed dataset recipe (see the module docstring for the TOML keys)."""

    name: str
    problem: str
    seed: int
    splits: dict[str, int]
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    observation: str | None = None
    block_size: int | None = None  # samples per work block (default: about a minute of work)
    source: Path | None = None

    def build_problem(self) -> Problem:
        """The problem with the recipe's parameters (a path resolves beside the recipe file)."""
        target = self.problem
        if target.endswith(".py") and self.source is not None:
            target = str((self.source.parent / target).resolve())
        problem = load(target, **self.params)
        if self.observation is not None and self.observation not in problem.observations():
            raise ValueError(
                f"recipe {self.name!r}: observation {self.observation!r} is not one of "
                f"{sorted(problem.observations())}"
            )
        return problem

    def offsets(self) -> dict[str, int]:
        """Global index of each split's first sample (train, then valid, then test)."""
        out, start = {}, 0
        for split in SPLITS:
            out[split] = start
            start += self.splits.get(split, 0)
        return out

    def to_json(self) -> str:
        """The recipe as a JSON string (file provenance)."""
        doc = {
            "name": self.name,
            "problem": self.problem,
            "seed": self.seed,
            "splits": self.splits,
            "params": self.params,
            "observation": self.observation,
        }
        return json.dumps(doc, sort_keys=True)


def available_recipes() -> list[str]:
    """Names of the recipes in the ``datasets/`` folder."""
    return sorted(p.stem for p in find_project_dir("datasets").glob("*.toml"))


def load_recipe(name_or_path: str | os.PathLike[str]) -> Recipe:
    """Read ``datasets/<name>.toml`` or a recipe file; errors name the file and the key."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith(".toml") or path.is_file()):
        folder = find_project_dir("datasets")
        path = folder / f"{text}.toml"
        if not path.is_file():
            raise FileNotFoundError(
                f"no recipe {text!r} in {folder} (known: {', '.join(available_recipes())})"
            )
    if not path.is_file():
        raise FileNotFoundError(f"no such recipe file: {path}")
    doc = read_toml(path)
    known = {"problem", "seed", "splits", "params", "description", "observation", "block_size"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    for key, kind in (("problem", str), ("seed", int), ("splits", dict)):
        if not isinstance(doc.get(key), kind):
            raise ValueError(f"{path}: key {key!r} must be a {kind.__name__}, got {doc.get(key)!r}")
    splits = doc["splits"]
    bad = {k: v for k, v in splits.items() if k not in SPLITS or not isinstance(v, int) or v < 0}
    if bad or not any(splits.values()):
        raise ValueError(
            f"{path}: [splits] must give non-negative sample counts for {SPLITS}, got {splits}"
        )
    if doc["seed"] < 0:
        raise ValueError(f"{path}: seed must be non-negative, got {doc['seed']}")
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise ValueError(f"{path}: [params] must be a table, got {params!r}")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    return Recipe(
        name=path.stem,
        problem=doc["problem"],
        seed=doc["seed"],
        splits={k: splits[k] for k in SPLITS if splits.get(k)},
        params=params,
        description=doc.get("description", ""),
        observation=doc.get("observation"),
        block_size=doc.get("block_size"),
        source=path.resolve(),
    )


def shard_range(count: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Offsets ``[lo, hi)`` of shard ``i`` of ``n`` (1-based) within ``count`` samples."""
    i, n = shard
    if not 1 <= i <= n:
        raise ValueError(f"shard must be i/n with 1 <= i <= n, got {i}/{n}")
    return count * (i - 1) // n, count * i // n


def split_path(out: Path, split: str, shard: tuple[int, int] | None) -> Path:
    """``train.nc``, or ``train-002-of-004.nc`` for shard 2 of 4."""
    if shard is None or shard == (1, 1):
        return out / f"{split}.nc"
    return out / f"{split}-{shard[0]:03d}-of-{shard[1]:03d}.nc"


def _block_path(out: Path, split: str, lo: int, hi: int) -> Path:
    return out / _BLOCKS / f"{split}-{lo:09d}-{hi:09d}.nc"


def _blocks(lo: int, hi: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(lo, hi, size):
        yield start, min(hi, start + size)


# Problems built in this process, by recipe: set-up work (eigendecompositions of covariance
# matrices, spectra) is done once per process, not once per block.
_PROBLEMS: dict[str, Problem] = {}


def _problem(recipe: Recipe) -> Problem:
    key = f"{recipe.source}:{recipe.to_json()}"
    if key not in _PROBLEMS:
        _PROBLEMS[key] = recipe.build_problem()
    return _PROBLEMS[key]


def _make_block(recipe: Recipe, split: str, lo: int, hi: int, out: Path) -> int:
    """Generate global samples ``[lo, hi)`` and write them atomically as one block file."""
    problem = _problem(recipe)
    ds = problem.generate(hi - lo, recipe.seed, start=lo)
    write_fields(ds, _block_path(out, split, lo, hi), provenance=_provenance(recipe, split))
    return hi - lo


def _provenance(recipe: Recipe, split: str) -> dict[str, Any]:
    out = {"split": split, "dataset": recipe.name, "recipe_json": recipe.to_json()}
    if recipe.observation:
        out["observation"] = recipe.observation
    return out


# The recipe keys that decide the data: a file made with other values cannot be reused.
_DATA_KEYS = ("problem", "seed", "splits", "params")


def _read_made(path: Path) -> tuple[dict[str, Any], int]:
    """The recipe (JSON attribute) a finished file or block was made by, and its sample count.

    Raises:
        OSError: the file cannot be read as HDF5.
        ValueError: its ``recipe_json`` attribute is not JSON.
    """
    with h5py.File(path, "r") as f:
        raw = f.attrs.get("recipe_json")
        count = f["sample"].shape[0] if "sample" in f else -1
    return json.loads(raw.decode() if isinstance(raw, bytes) else str(raw or "{}")), count


def _changed(stored: dict[str, Any], recipe: Recipe) -> list[str]:
    """The data keys in which ``stored`` (a file's recipe) differs from ``recipe``."""
    wanted = json.loads(recipe.to_json())
    return [k for k in _DATA_KEYS if stored.get(k) != wanted.get(k)]


def _check_reusable(path: Path, recipe: Recipe) -> None:
    """Refuse a finished file that another version of the recipe made.

    Files are reused on a rerun (resume, "never redone"), so a recipe edited between runs
    with the same output folder would otherwise mix old and new data without a word.
    """
    try:
        stored, _ = _read_made(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot be read ({err}); delete it and run again") from err
    changed = _changed(stored, recipe)
    if changed:
        raise ValueError(
            f"{path}: made by a different version of recipe {recipe.name!r} "
            f"({', '.join(changed)} differ); delete the folder or choose another --out"
        )


def _block_is_stale(path: Path, recipe: Recipe, lo: int, hi: int) -> bool:
    """Whether the block ``path`` of samples ``[lo, hi)`` cannot be used by ``recipe``.

    It cannot when it is unreadable, was made by another version of the recipe, or holds
    another number of samples than its name says.
    """
    try:
        stored, count = _read_made(path)
    except (OSError, ValueError):
        return True
    return bool(_changed(stored, recipe)) or count != hi - lo


def lock_name(shard: tuple[int, int] | None) -> str:
    """The lock file a run of ``shard`` holds in its output folder (one lock per shard)."""
    if shard is None or shard == (1, 1):
        return _LOCK.format("")
    return _LOCK.format(f"-{shard[0]:03d}-of-{shard[1]:03d}")


def _others_running(out: Path, own: str) -> bool:
    """Whether a run other than the holder of the lock ``own`` holds a lock in ``out``."""
    return any(is_locked(p) for p in out.glob(_LOCK.format("*")) if p.name != own)


def _in_ranges(name: str, ranges: dict[str, tuple[int, int]]) -> bool:
    """Whether ``name`` is a block of samples within ``ranges`` (split -> global range)."""
    found = _BLOCK_NAME.fullmatch(name)
    if found is None or found["split"] not in ranges:
        return False
    lo, hi = ranges[found["split"]]
    return int(found["lo"]) < hi and int(found["hi"]) > lo


def _sweep(
    out: Path,
    recipe: Recipe,
    shard: tuple[int, int] | None,
    ranges: dict[str, tuple[int, int]],
    planned: set[str],
    alone: bool,
) -> None:
    """Remove the temporary files and unusable blocks that interrupted runs left in ``out``.

    Always: temporary files of this run's split files and blocks, and blocks in this run's
    ranges that are not planned (another block size, a finished split) or are stale (see
    :func:`_block_is_stale`). When ``alone`` (no other run holds a lock in ``out``), also
    every temporary file of a split file, block or ``stats.json``, and stale blocks of other
    shards.
    """
    own = {split_path(out, split, shard).name for split in ranges}

    def owns_output(name: str) -> bool:
        return name in own or (alone and _OUTPUT_NAME.fullmatch(name) is not None)

    def owns_block(name: str) -> bool:
        return _in_ranges(name, ranges) or (alone and _BLOCK_NAME.fullmatch(name) is not None)

    blocks = out / _BLOCKS
    sweep_temporaries(out, owns_output)
    sweep_temporaries(blocks, owns_block)
    if not blocks.is_dir():
        return
    for path in blocks.iterdir():
        found = _BLOCK_NAME.fullmatch(path.name)
        if found is None:
            continue
        ours = _in_ranges(path.name, ranges)
        unplanned = ours and path.name not in planned  # another block size, a finished split
        lo, hi = int(found["lo"]), int(found["hi"])
        if unplanned or ((ours or alone) and _block_is_stale(path, recipe, lo, hi)):
            path.unlink(missing_ok=True)


def _default_block_size(problem: Problem) -> int:
    """Blocks of about 8 MB of float32 fields (at least one sample, at most 512)."""
    per_sample = 4 * math.prod(problem.sample_shape())
    return max(1, min(512, 8 * 2**20 // per_sample))


def _join(paths: list[Path], target: Path, recipe: Recipe, split: str) -> Path:
    """Concatenate block files along ``sample`` into ``target`` (atomically); remove them."""
    if len(paths) == 1:
        os.replace(paths[0], target)  # one block is already the whole file
        return target
    # Streamed block by block: memory stays at about one block, whatever the split's size.
    join_fields(paths, target, provenance=_provenance(recipe, split))
    for p in paths:
        p.unlink()
    return target


def make_dataset(
    recipe: Recipe | str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    shard: tuple[int, int] | None = None,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate a recipe's splits (or one shard of them) and ``stats.json``.

    Args:
        recipe: a :class:`Recipe`, a recipe name in ``datasets/`` or a ``.toml`` path.
        out: output folder (default ``physgen.paths.data_root() / recipe.name``).
        shard: ``(i, n)``: make only the i-th (1-based) of n contiguous parts of each split.
        workers: processes generating blocks in parallel; they die with this process, and an
            error or interruption kills them at once (:func:`physgen.workers.worker_pool`).
        progress: show a tqdm progress bar over samples.

    Returns:
        The written files by key (``train``, ``valid``, ``test``, ``stats``); ``stats`` only
        once every training shard exists.
    """
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    out = Path(out) if out is not None else data_root() / recipe.name
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    problem = _problem(recipe)
    with folder_lock(out, lock_name(shard)):
        return _make_locked(recipe, problem, out, shard, workers, progress)


def _make_locked(
    recipe: Recipe,
    problem: Problem,
    out: Path,
    shard: tuple[int, int] | None,
    workers: int,
    progress: bool,
) -> dict[str, Path]:
    """The body of :func:`make_dataset`, run while holding the lock of ``out``."""
    size = recipe.block_size or _default_block_size(problem)
    offsets = recipe.offsets()
    ranges: dict[str, tuple[int, int]] = {}
    plan: dict[str, tuple[Path, list[tuple[int, int]]]] = {}
    for split, count in recipe.splits.items():
        lo, hi = shard_range(count, shard or (1, 1))
        ranges[split] = (offsets[split] + lo, offsets[split] + hi)
        target = split_path(out, split, shard)
        if target.exists():
            _check_reusable(target, recipe)
        if hi > lo and not target.exists():  # a finished split file is never redone
            plan[split] = (target, list(_blocks(*ranges[split], size)))
    planned = {_block_path(out, s, lo, hi).name for s, (_, bs) in plan.items() for lo, hi in bs}
    alone = not _others_running(out, lock_name(shard))
    _sweep(out, recipe, shard, ranges, planned, alone)
    todo = [
        (split, lo, hi)
        for split, (_, blocks) in plan.items()
        for lo, hi in blocks
        if not _block_path(out, split, lo, hi).exists()
    ]
    total = sum(hi - lo for _, lo, hi in todo)
    with tqdm(total=total, unit="sample", desc=recipe.name, disable=not progress) as bar:
        if workers == 1 or len(todo) <= 1:
            for split, lo, hi in todo:
                bar.update(_make_block(recipe, split, lo, hi, out))
        else:
            with worker_pool(workers) as pool:
                futures = [pool.submit(_make_block, recipe, s, lo, hi, out) for s, lo, hi in todo]
                for future in futures:
                    bar.update(future.result())
    written: dict[str, Path] = {}
    for split, (target, blocks) in plan.items():
        _join([_block_path(out, split, lo, hi) for lo, hi in blocks], target, recipe, split)
    blocks_dir = out / _BLOCKS
    if blocks_dir.is_dir() and not any(blocks_dir.iterdir()):
        with contextlib.suppress(OSError):  # another shard's run may be writing into it
            blocks_dir.rmdir()
    for split, count in recipe.splits.items():
        if _nonempty(count, shard or (1, 1)):
            written[split] = split_path(out, split, shard)
    stats = _write_stats(recipe, out, shard)
    if stats is not None:
        written["stats"] = stats
    return written


def _train_files(recipe: Recipe, out: Path, shard: tuple[int, int] | None) -> list[Path] | None:
    """The training split's files if all exist (every shard of a sharded run), else None."""
    count = recipe.splits.get("train", 0)
    n = 1 if shard is None else shard[1]
    files = [
        split_path(out, "train", None if n == 1 else (i, n))
        for i in range(1, n + 1)
        if _nonempty(count, (i, n))
    ]
    return files if files and all(f.exists() for f in files) else None


def _nonempty(count: int, shard: tuple[int, int]) -> bool:
    lo, hi = shard_range(count, shard)
    return hi > lo


def _write_stats(recipe: Recipe, out: Path, shard: tuple[int, int] | None) -> Path | None:
    files = _train_files(recipe, out, shard)
    target = out / "stats.json"
    if files is None:
        return None
    if target.exists() and target.stat().st_mtime >= max(f.stat().st_mtime for f in files):
        return target
    stats = compute_stats(files)  # the shards block by block, as if concatenated
    return save_stats(stats, target, source=", ".join(f.name for f in files))
