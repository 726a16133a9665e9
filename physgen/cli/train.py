"""``physgen train``: fit a registered model family to a field dataset (folder or recipe)."""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from physgen.cli._catalog import (
    FAMILIES,
    TRAIN_STEPS,
    ListingFormatter,
    check_family,
    check_recipe,
    family_listing,
)
from physgen.cli.data import add_split_options
from physgen.paths import data_root, read_toml, runs_root

if TYPE_CHECKING:  # the command imports torch and the data layer only when it runs
    from physgen.data import FieldDataset, FieldStats

__all__ = ["load_config", "register", "resolve_data"]

# fit() arguments the command sets itself; a config file may set every other one.
_RESERVED = {"model", "data", "valid_data", "checkpoint_dir", "resume", "log_file", "metadata"}
_DATA_KEYS = {"fields", "cond_fields", "time", "in_memory"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on a field dataset",
        formatter_class=ListingFormatter,
        epilog=family_listing(),
        description=(
            "Train a registered model family on the train split of a dataset folder (train.nc, "
            "optional valid.nc and stats.json, as written by 'physgen data make') or of a "
            "dataset recipe (generated under the data root on first use), or of a single "
            "physgen-field .nc file, which is split first (--split-fractions, --split-seed) "
            "into <run folder>/data with train.nc, valid.nc, test.nc and stats.json. Fields "
            "are z-scored with stats.json; a folder without one gets statistics computed on "
            "its train.nc. Checkpoints, log.jsonl and the final model go to --out. Under "
            "torchrun ('torchrun --nproc_per_node=N -m physgen train ...') the same command "
            "trains data-parallel."
        ),
    )
    parser.add_argument(
        "--data",
        required=True,
        help="recipe name or .toml, data-set folder, or one physgen-field .nc file (split "
        "into <run folder>/data)",
    )
    parser.add_argument("--model", required=True, help="model family (listed below)")
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML file with tables [model] (for_shape overrides), [fit] (fit() keyword "
        "arguments) and [data] (fields, cond_fields, time, in_memory)",
    )
    parser.add_argument(
        "--steps", type=int, help="optimizer steps (default: the family's, listed below)"
    )
    parser.add_argument("--batch-size", type=int, help="global batch size (default 64)")
    parser.add_argument("--lr", type=float, help="learning rate")
    parser.add_argument("--seed", type=int, help="seed for data order and random draws")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--out", type=Path, help="run folder (default runs/<model>-<data>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the run folder's checkpoint"
    )
    parser.add_argument(
        "--data-b",
        help="unpaired translation (cyclegan): domain B's data (as --data); the model makes "
        "B's --fields from domain A's --cond-fields in --data, never pairing their samples",
    )
    parser.add_argument("--fields", nargs="+", help="fields to model (default: all)")
    parser.add_argument("--cond-fields", nargs="+", help="conditioning fields or variables")
    parser.add_argument(
        "--time", choices=("channels", "frames"), help="how time-dependent fields become items"
    )
    parser.add_argument(
        "--flatten",
        action="store_true",
        help="model each sample's channels and grid as one vector (C*N,), for the families "
        "that take vectors (realnvp, maf, iaf, gan, ...); conditioning fields are flattened too",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--trust-data",
        action="store_true",
        help="skip the scan of train.nc and valid.nc for NaN/Inf, a full read of every value "
        "(with a progress bar beyond 1 GiB); for files you trust, such as those 'physgen data "
        "make' wrote",
    )
    parser.add_argument(
        "--problem",
        help="for physics-informed families (pivae): the problem, a registered name or your "
        "own Python file (default: the registered problem the data name; a file is never "
        "taken from the data)",
    )
    split = parser.add_argument_group("splitting a single .nc file given to --data")
    add_split_options(split, "--split-fractions", "--split-seed")
    parser.set_defaults(handler=_train)


def load_config(path: Path | None) -> dict[str, dict[str, Any]]:
    """Read and check a training config: tables ``model``, ``fit`` and ``data``."""
    if path is None:
        return {"model": {}, "fit": {}, "data": {}}
    if not path.is_file():
        raise FileNotFoundError(f"no config file {path}")
    doc = read_toml(path)
    unknown = set(doc) - {"model", "fit", "data"}
    if unknown:
        raise ValueError(f"{path}: unknown tables {sorted(unknown)}; expected model, fit, data")
    config = {key: dict(doc.get(key, {})) for key in ("model", "fit", "data")}
    from physgen.training import fit  # only a config file needs fit's signature (torch)

    allowed = set(inspect.signature(fit).parameters) - _RESERVED
    for key in config["fit"]:
        if key not in allowed:
            raise ValueError(
                f"{path}: [fit] has {key!r}, not an argument of fit ({sorted(allowed)})"
            )
    for key in config["data"]:
        if key not in _DATA_KEYS:
            raise ValueError(f"{path}: [data] has {key!r}; expected one of {sorted(_DATA_KEYS)}")
    return config


_EXPECTED_DATA = (
    "expected a recipe name (datasets/<name>.toml), a recipe .toml file, a data-set folder "
    "(train.nc, valid.nc, stats.json) or a physgen-field .nc file"
)


def resolve_data(
    spec: str,
    split_dir: Path | None = None,
    *,
    fractions: Sequence[float] | None = None,
    seed: int = 0,
) -> tuple[Path, str]:
    """The dataset folder for ``spec`` and a short name.

    ``spec`` is a data-set folder, a recipe (name or ``.toml`` file; its data are made if
    missing) or a single physgen-field file, which is split into ``split_dir`` (default
    ``<file stem>-split`` beside the file) with :func:`~physgen.data.split_fields` by
    ``fractions`` (default ``physgen.data.DEFAULT_FRACTIONS``). Any other file is refused
    with one line naming it and what was expected.
    """
    from physgen.recipes import load_recipe, make_dataset

    path = Path(spec)
    if path.is_dir():
        if not (path / "train.nc").is_file():
            raise FileNotFoundError(
                f"{path}: no train.nc (expected a dataset folder with train.nc, and optionally "
                "valid.nc and stats.json, as 'physgen data make' writes)"
            )
        return path, path.resolve().name
    if path.is_file() and path.suffix != ".toml":
        return _split_file(path, split_dir, fractions, seed), path.stem
    if not path.exists() and (path.suffix in (".nc", ".h5", ".hdf5") or os.sep in spec):
        raise FileNotFoundError(f"--data {spec}: no such file or folder ({_EXPECTED_DATA})")
    recipe = load_recipe(spec)
    folder = data_root() / recipe.name
    if not (folder / "train.nc").is_file() or not (folder / "stats.json").is_file():
        if _world_size() > 1:
            raise FileNotFoundError(
                f"dataset {recipe.name!r} is not generated yet ({folder}); run "
                f"'physgen data make {recipe.name}' before launching several processes"
            )
        print(f"physgen train: generating dataset {recipe.name!r} in {folder}", file=sys.stderr)
        make_dataset(recipe, folder)
    return folder, recipe.name


def _world_size() -> int:
    """Processes of a torchrun launch (1 outside one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _split_file(
    path: Path, split_dir: Path | None, fractions: Sequence[float] | None, seed: int
) -> Path:
    """Split a single physgen-field file into a data-set folder; say where in one line."""
    import h5py

    from physgen.data import DEFAULT_FRACTIONS, split_fields

    if not h5py.is_hdf5(path):
        raise ValueError(
            f"--data {path}: not a physgen-field .nc file (no HDF5 signature); {_EXPECTED_DATA}"
        )
    folder = split_dir if split_dir is not None else path.with_name(f"{path.stem}-split")
    if _world_size() > 1 and not (folder / "split.json").is_file():
        raise FileNotFoundError(
            f"{path} is not split yet; run 'physgen data split {path} --out {folder}' and pass "
            f"--data {folder} before launching several processes"
        )
    fractions = DEFAULT_FRACTIONS if fractions is None else fractions
    result = split_fields(path, folder, fractions=fractions, seed=seed)
    print(f"physgen train: {path}: {result.summary()}", file=sys.stderr)
    return folder


def _dataset(
    path: Path, options: dict[str, Any], stats: Path | dict[str, FieldStats]
) -> FieldDataset:
    """The split file ``path`` as a dataset with the chosen fields, normalized by ``stats``."""
    from physgen.data import FieldDataset

    return FieldDataset(
        path,
        options.get("fields"),
        cond_fields=options.get("cond_fields") or (),
        stats=stats,
        time=options.get("time", "channels"),
        in_memory=options.get("in_memory"),
        nonfinite=options.get("nonfinite", "raise"),  # "ignore" with --trust-data
    )


def _flat(data: FieldDataset) -> Any:
    """``data`` with every sample (and condition) flattened to a vector ``(C*N,)``."""
    import torch

    class _Flat(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(data)

        def __getitem__(self, i: int) -> Any:
            item = data[i]
            if data.cond_fields:
                return item[0].flatten(), item[1].flatten()  # (C*N,), (C'*N,)
            return item.flatten()

    return _Flat()


def _tensors(data: FieldDataset, flatten: bool = False) -> Any:
    """In-memory datasets as stacked tensors: fit then indexes batches directly (fast).

    With ``flatten`` every sample becomes a vector ``(C*N,)`` (``(B, C*N)`` when stacked).
    """
    import torch

    if not data.in_memory:
        return _flat(data) if flatten else data
    items = [data[i] for i in range(len(data))]
    if data.cond_fields:
        x, c = torch.stack([x for x, _ in items]), torch.stack([c for _, c in items])
        return (x.flatten(1), c.flatten(1)) if flatten else (x, c)  # (B, C*N), (B, C'*N)
    x = torch.stack(items)
    return (x.flatten(1) if flatten else x,)


def _shapes(data: FieldDataset, flatten: bool) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """The model's sample and condition shapes: the dataset's, or their flattened lengths."""
    if not flatten:
        return data.sample_shape, data.cond_shape
    cond = None if data.cond_shape is None else (math.prod(data.cond_shape),)
    return (math.prod(data.sample_shape),), cond


def _number(values: list[Any]) -> str:
    """The last logged value for the summary: ``n/a`` when none was logged or it was not finite.

    The log writes a NaN as ``null`` (``None``), e.g. a last window whose steps were all
    skipped.
    """
    value = values[-1] if values else None
    return f"{value:.4g}" if isinstance(value, (int, float)) else "n/a"


def _run_folder(args: argparse.Namespace) -> Path:
    """The run folder: ``--out`` or ``runs/<model>-<data name>``; refuses to overwrite a run."""
    from physgen.training import CHECKPOINT_NAME

    spec = Path(args.data)
    name = spec.resolve().name if spec.is_dir() else spec.stem  # folder, file or recipe
    out = args.out or runs_root() / f"{args.model}-{name}"
    if (out / CHECKPOINT_NAME).is_file() and not args.resume:
        raise ValueError(
            f"{out / CHECKPOINT_NAME} exists; pass --resume to continue it or choose another --out"
        )
    return out


def _statistics(
    folder: Path, options: dict[str, Any]
) -> tuple[Path | dict[str, FieldStats], dict[str, Any]]:
    """The normalization statistics of ``folder`` and how they were obtained.

    ``stats.json`` when the folder has one; otherwise they are computed on ``train.nc`` (said
    in one line), never skipped: a model never trains on raw fields without a word.
    """
    from physgen.data import compute_stats, field_names, open_fields

    path = folder / "stats.json"
    if path.is_file():
        return path, {"stats": str(path), "computed": False}
    train = folder / "train.nc"
    with open_fields(train, nonfinite="ignore") as ds:
        names = field_names(ds) + [
            str(c) for c in options.get("cond_fields") or () if c not in field_names(ds)
        ]
    stats = compute_stats(train, names)
    print(
        f"physgen train: {folder} has no stats.json; normalizing with statistics computed on "
        f"{train} (stored in the checkpoint)",
        file=sys.stderr,
    )
    return stats, {"stats": None, "computed": True, "computed_on": str(train)}


def _model_options(
    model_class: type,
    data: FieldDataset | None,
    configured: dict[str, Any],
    problem: str | None = None,
) -> dict[str, Any]:
    """The ``[model]`` table of ``--config``, completed from the data for physics families.

    A family whose constructor takes ``problem`` (the PI-VAE) gets the registered problem
    the training file names, with the parameters it was generated with, and a family taking
    ``channel_mean``/``channel_std`` gets the training statistics, so that its physics loss
    sees physical units although it trains on z-scored fields. ``problem`` (``--problem``, the
    user's own argument: a registered name or a Python file) replaces the data's problem and
    takes the parameters the data were generated with. Options set in ``configured`` win (a
    problem set there is used without reading the data's attribute).
    """
    from physgen.problem import load, problem_named_by, recorded_params

    accepted = inspect.signature(model_class.__init__).parameters
    if problem is not None and "problem_object" not in accepted:
        raise ValueError(f"--problem: model {model_class.__name__} takes no problem")
    if data is None:
        return dict(configured)
    options: dict[str, Any] = {}
    if problem is not None:
        params = recorded_params(data.attrs, data.path)
        loaded = load(problem, **params)
        options.update(problem=loaded.name, problem_params=params, problem_object=loaded)
    elif "problem" in accepted and "problem" not in configured:
        remedy = "choose a registered problem with problem = NAME in the [model] table of --config"
        named = problem_named_by(data.attrs, data.path, remedy)
        if named is None and data.attrs.get("problem_file"):
            raise ValueError(
                f"{data.path}: the data were generated by the problem file "
                f"{data.attrs['problem_file']}; pass it with --problem PATH"
            )
        if named is not None:
            options["problem"] = named[0]
            if named[1]:  # else the family sizes the problem to the data's grid
                options["problem_params"] = named[1]
    norm = data.normalizer
    if norm is not None and {"channel_mean", "channel_std"} <= accepted.keys():
        options["channel_mean"] = norm.mean.flatten().tolist()
        options["channel_std"] = norm.scale.flatten().tolist()
    return {**options, **configured}


def _unpaired(
    args: argparse.Namespace,
    options: dict[str, Any],
    folder: Path,
    stats: Path | dict[str, FieldStats],
    out: Path,
) -> tuple[Any, Any, dict[str, Any]]:
    """Unpaired train/valid data of ``--data`` (domain A) and ``--data-b`` (domain B).

    Items are ``(b, a)`` from :class:`~physgen.data.unpaired.UnpairedDataset`: when the two
    splits have as many samples (two views of the same samples), A and B read disjoint halves
    of the sample indices. The description is B's, with A's fields as the conditions.
    """
    from physgen.data.unpaired import UnpairedDataset
    from physgen.training.fields import describe_fields

    if not options.get("cond_fields") or args.flatten:
        raise ValueError(
            "--data-b: name domain A's fields in --data with --cond-fields (and no --flatten)"
        )
    folder_b, _ = resolve_data(
        args.data_b, out / "data-b", fractions=args.split_fractions, seed=args.split_seed
    )
    stats_b, _ = _statistics(folder_b, {})
    a_options = {**options, "fields": list(options["cond_fields"]), "cond_fields": ()}
    b_options = {**options, "cond_fields": ()}
    seed = int(args.seed or 0)

    def split(name: str) -> tuple[UnpairedDataset | None, Any]:
        if not ((folder / name).is_file() and (folder_b / name).is_file()):
            return None, None
        a = _dataset(folder / name, a_options, stats)
        b = _dataset(folder_b / name, b_options, stats_b)
        return UnpairedDataset(a, b, shared=len(a) == len(b), seed=seed), (a, b)

    train, (a, b) = split("train.nc")
    valid, _ = split("valid.nc")
    description = describe_fields(b, stats_b)
    cond = describe_fields(a, stats)
    for name, value in cond["stats"].items():
        if description["stats"].get(name, value) != value:
            raise ValueError(
                f"--data-b: field {name!r} is in both domains with different statistics; "
                "rename it in one of the files"
            )
    description["stats"].update(cond["stats"])
    description.update(
        cond_fields=cond["fields"], cond_channels=cond["channels"],
        cond_shape=cond["sample_shape"], flatten=False,
        unpaired={"domain_a": cond["source"], "domain_b": description["source"]},
    )  # fmt: skip
    return train, valid, description


def _train(args: argparse.Namespace) -> int:
    check_family(args.model)  # before anything slow: a wrong name answers at once
    check_recipe(args.data)
    import torch

    from physgen.models import get_model_class
    from physgen.training import NonFiniteLossError, fit
    from physgen.training.fields import describe_fields

    config = load_config(args.config)
    model_class = get_model_class(args.model)
    out = _run_folder(args)
    folder, data_name = resolve_data(
        args.data, out / "data", fractions=args.split_fractions, seed=args.split_seed
    )
    options = config["data"]
    for key in ("fields", "cond_fields", "time"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.trust_data:
        options["nonfinite"] = "ignore"
    stats, normalization = _statistics(folder, options)
    if args.data_b is None:
        train = _dataset(folder / "train.nc", options, stats)
        valid = (
            _dataset(folder / "valid.nc", options, stats)
            if (folder / "valid.nc").is_file()
            else None
        )
        sample_shape, cond_shape = _shapes(train, args.flatten)
        description = {**describe_fields(train, stats), "flatten": args.flatten}
        train_data = _tensors(train, args.flatten)
        valid_data = None if valid is None else _tensors(valid, args.flatten)
    else:
        train_data, valid_data, description = _unpaired(args, options, folder, stats, out)
        sample_shape, cond_shape = (
            tuple(description["sample_shape"]),
            tuple(description["cond_shape"]),
        )

    family = FAMILIES.get(args.model)
    steps = TRAIN_STEPS if family is None else family.train_steps
    settings = {"steps": steps, "batch_size": 64, "valid_every": 200, "checkpoint_every": 500}
    settings.update(config["fit"])
    for key in ("steps", "batch_size", "lr", "seed", "device"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.no_progress:
        settings["progress"] = False
    torch.manual_seed(settings.get("seed", 0))  # the initial weights
    paired = train if args.data_b is None else None  # the data a physics family reads
    model_options = _model_options(model_class, paired, config["model"], args.problem)
    try:
        model = model_class.for_shape(sample_shape, cond_shape, **model_options)
    except ValueError as err:
        # Name the two layout options this command has, beside the family's own message.
        options = (
            []
            if args.flatten
            else [f"--flatten models them as vectors of length {math.prod(sample_shape)}"]
        )
        if cond_shape is None:
            options.append("--cond-fields NAME ... conditions on fields or per-sample variables")
        if not options:
            raise
        raise ValueError(
            f"{err} (the data's samples have shape {sample_shape}"
            f"{', no conditions' if cond_shape is None else ''}: {'; '.join(options)})"
        ) from None
    metadata = {
        "data": description,
        "recipe": data_name,
        "model": args.model,
        "normalization": normalization,
    }
    if (folder / "split.json").is_file():  # a single file split by this command or 'data split'
        metadata["split"] = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    try:
        result = fit(
            model,
            train_data,
            valid_data=valid_data,
            checkpoint_dir=out,
            resume=args.resume,
            metadata=metadata,
            **settings,
        )
    except NonFiniteLossError as err:
        raise ValueError(str(err)) from None
    if result.checkpoint is not None:  # rank 0
        losses = [r.get("loss") for r in result.history if "loss" in r][-1:]
        valid_loss = [r.get("valid_loss") for r in result.history if "valid_loss" in r][-1:]
        print(
            f"trained {args.model} ({sum(p.numel() for p in model.parameters())} parameters) "
            f"for {result.step} steps on {data_name}: loss {_number(losses)}"
            + (f", valid_loss {_number(valid_loss)}" if valid_loss else "")
            + (f"; {result.skipped} steps skipped (non-finite)" if result.skipped else "")
        )
        print(f"checkpoint: {result.checkpoint}")
        print(f"sample:     physgen sample {result.checkpoint} --n 16 --out samples.nc")
        _warn_if_still_falling(model, result.history, result.step)
    return 0


def _warn_if_still_falling(model: Any, history: list[dict[str, Any]], step: int) -> None:
    """Say on stderr when the loss was still falling steeply at the end (see
    :mod:`physgen.training.trend`); a two-player loss is no measure of progress, so GANs are
    not judged."""
    from physgen.models import TwoPlayerModel
    from physgen.training.trend import loss_trend

    if isinstance(model, TwoPlayerModel):
        return
    trend = loss_trend(history)  # validation records carry no "loss": left out
    if trend is not None and trend.steep:
        print(
            f"physgen train: note: {trend.describe()}; a longer run (--steps > {step}, or "
            "--resume with more --steps) would likely lower it further",
            file=sys.stderr,
        )
