"""``physgen data ...``: inspect field files; import PDEBench, The Well and FNO files."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from physgen.cli._catalog import ListingFormatter, check_recipe, recipe_listing

if TYPE_CHECKING:  # the commands import numpy, xarray and the data layer only when they run
    import numpy as np
    import xarray as xr

__all__ = [
    "SPLIT_FRACTIONS",
    "SUBCOMMANDS",
    "add_import",
    "add_inspect",
    "add_make",
    "add_split",
    "register",
]

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
"""``physgen.data.DEFAULT_FRACTIONS``, repeated here so that ``--help`` needs no data layer
(a test keeps the two equal)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="inspect, import and make physgen-field/1 data files",
        description=(
            "Work with physgen-field/1 files: NetCDF4/HDF5 files with one float32 variable "
            "per field, dims (sample, [time], x[, y[, z]]), named coordinates and provenance."
        ),
    )
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)


# -- inspect ---------------------------------------------------------------------------------
def add_inspect(commands: argparse._SubParsersAction) -> None:
    """``physgen data inspect FILE``."""
    parser = commands.add_parser(
        "inspect",
        help="show dimensions, fields, value ranges and provenance of a field file",
        description=(
            "Validate a physgen-field/1 file and print its dimensions, coordinates, fields "
            "(channel order, dims, units, min/max/mean, NaN/Inf count), per-sample variables "
            "and provenance attributes. Exits with an error naming the defect if the file is "
            "not a valid physgen-field/1 file."
        ),
    )
    parser.add_argument("file", type=Path, help="the .nc file")
    parser.add_argument(
        "--no-values",
        action="store_true",
        help="skip the value ranges (they read the whole file)",
    )
    parser.set_defaults(handler=_inspect)


def _ranges(var: xr.DataArray) -> tuple[float, float, float, int]:
    """min, max and mean over the finite values (float64), and the count of NaN/Inf."""
    import numpy as np

    from physgen.data import iter_sample_blocks

    lo, hi, total, count, bad = np.inf, -np.inf, 0.0, 0, 0
    for _, block in iter_sample_blocks(var):
        values = block.astype(np.float64, copy=False)
        finite = np.isfinite(values)
        bad += int(values.size - finite.sum())
        good = values[finite]
        if good.size:
            lo, hi = min(lo, good.min()), max(hi, good.max())
            total, count = total + good.sum(), count + good.size
    return lo, hi, total / max(count, 1), bad


def _dims(var: xr.DataArray) -> str:
    return "(" + ", ".join(map(str, var.dims)) + ")"


def _format_value(value: np.generic) -> str:
    """Integers exactly (sample indices, 64-bit seeds), floats to 6 significant digits."""
    import numpy as np

    return str(int(value)) if np.issubdtype(type(value), np.integer) else f"{value:.6g}"


def _format_range(values: np.ndarray) -> str:
    """First and last value (coordinates are sorted), or min and max of other variables."""
    if values.size == 0:
        return "(empty)"
    if values.size == 1:
        return _format_value(values[0])
    return f"{_format_value(values[0])} .. {_format_value(values[-1])}"


def _inspect(args: argparse.Namespace) -> int:
    import numpy as np

    from physgen.data import FIELDS_ATTR, SCHEMA_ATTR, field_names, open_fields

    path: Path = args.file
    with open_fields(path, nonfinite="ignore") as ds:
        names = field_names(ds)
        size = path.stat().st_size / 2**20
        print(f"{path}  ({size:.2f} MiB, {ds.attrs[SCHEMA_ATTR]})")
        print("dimensions:  " + "  ".join(f"{d}={n}" for d, n in ds.sizes.items()))
        print("coordinates:")
        for name in ds.coords:
            c = ds[name]
            units = c.attrs.get("units", "")
            print(f"  {name!s:<10} {c.dtype!s:<8} {_format_range(c.values):<28} {units}")
        print(f"fields (channel order):  {', '.join(names)}")
        header = f"  {'name':<12} {'dims':<28} {'units':<10} {'min':>11} {'max':>11} {'mean':>11}"
        print(header + ("" if args.no_values else "  non-finite"))
        for name in names:
            var = ds[name]
            line = f"  {name:<12} {_dims(var):<28} {var.attrs.get('units', ''):<10}"
            if not args.no_values:
                lo, hi, mean, bad = _ranges(var)
                line += f" {lo:>11.4g} {hi:>11.4g} {mean:>11.4g}  {bad}"
            long_name = var.attrs.get("long_name", "")
            print(line + (f"  {long_name}" if long_name and long_name != name else ""))
        others = [str(v) for v in ds.data_vars if v not in names]
        if others:
            print("other variables:")
            for name in others:
                var = ds[name]
                values = np.asarray(var.values).ravel()
                extent = (
                    _format_range(np.array([values.min(), values.max()])) if values.size else ""
                )
                print(f"  {name:<12} {_dims(var):<28} {var.dtype!s:<8} {extent}")
        print("provenance:")
        for key, value in ds.attrs.items():
            if key not in (FIELDS_ATTR, SCHEMA_ATTR):
                text = str(value.tolist() if isinstance(value, np.ndarray) else value)
                print(f"  {key}: {text if len(text) <= 200 else text[:197] + '...'}")
    return 0


# -- import ----------------------------------------------------------------------------------
def _sample_slice(text: str) -> slice:
    """``N`` (the first N samples) or ``START:STOP[:STEP]``, as in Python slicing."""
    try:
        if ":" not in text:
            return slice(0, int(text))
        parts = [int(p) if p.strip() else None for p in text.split(":")]
        if len(parts) > 3:
            raise ValueError
        return slice(*parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--samples expects N or START:STOP[:STEP], got {text!r}"
        ) from None


_IMPORT_HELP = {
    "pdebench": (
        "PDEBench HDF5: 'tensor' (1-D/2-D time-dependent), Darcy 'tensor'+'nu', CFD "
        "'density'/'pressure'/'Vx'/'Vy'/'Vz', or per-seed groups '0000/data'. The layout is "
        "detected from the keys; PDEBench's nt+1 't-coordinate' is cut to the nt frames."
    ),
    "well": (
        "The Well HDF5: t0_fields (scalars), t1_fields (vectors → NAME_x, NAME_y), t2_fields "
        "(tensors → NAME_xy ...), coordinates from dimensions/, boundary conditions → bc_x, "
        "bc_y, constant scalars → attributes, per-sample scalars → variables."
    ),
    "fno": (
        "FNO .mat (MATLAB v5 or v7.3): Navier–Stokes 'a','u','t' with time last → w "
        "(sample, time, x, y) and w0; Darcy 'coeff','sol' → a, u; Burgers 'a','u' → a, u."
    ),
}


def add_import(commands: argparse._SubParsersAction) -> None:
    """``physgen data import {pdebench,well,fno} SRC DST``."""
    parser = commands.add_parser(
        "import",
        help="convert PDEBench, The Well or FNO .mat files to physgen-field/1",
        description=(
            "Convert a file in another benchmark's layout to physgen-field/1 with named "
            "dimensions and coordinates. The output is written atomically: if the import "
            "fails, nothing is left under DST."
        ),
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, text in _IMPORT_HELP.items():
        sub = kinds.add_parser(kind, help=text.split(":")[0], description=text)
        sub.add_argument("src", type=Path, help="the source file")
        sub.add_argument("dst", type=Path, help="the physgen-field/1 file to write (.nc)")
        sub.add_argument(
            "--samples",
            type=_sample_slice,
            default=None,
            help="import only these samples: N (the first N) or START:STOP[:STEP]",
        )
        if kind == "pdebench":
            sub.add_argument(
                "--channel-names",
                default=None,
                help="comma-separated names for the channels of seed-group files "
                "(default: u, or u,v for two channels)",
            )
        if kind == "fno":
            sub.add_argument(
                "--subsample",
                type=int,
                default=1,
                help="keep every R-th grid point (FNO's r; e.g. 2 turns 421 into 211)",
            )
        sub.set_defaults(handler=_import)


def _import(args: argparse.Namespace) -> int:
    from physgen.data import SAMPLE_DIM, field_names, import_fields, open_fields

    options: dict[str, object] = {"samples": args.samples}
    if getattr(args, "channel_names", None):
        options["channel_names"] = [n.strip() for n in args.channel_names.split(",")]
    if args.kind == "fno":
        options["subsample"] = args.subsample
    dst = import_fields(args.kind, args.src, args.dst, **options)
    with open_fields(dst, nonfinite="ignore") as ds:
        sizes = ", ".join(f"{d}={n}" for d, n in ds.sizes.items())
        print(f"wrote {dst}: {ds.sizes[SAMPLE_DIM]} samples, fields {field_names(ds)} ({sizes})")
    return 0


# -- make ------------------------------------------------------------------------------------
def add_make(commands: argparse._SubParsersAction) -> None:
    """``physgen data make RECIPE [--out DIR] [--shard I/N] [--workers N]``."""
    parser = commands.add_parser(
        "make",
        help="generate a dataset from a recipe in datasets/ (train/valid/test + stats.json)",
        formatter_class=ListingFormatter,
        epilog=recipe_listing(),
        description=(
            "Generate the train/valid/test physgen-field/1 files and stats.json (training "
            "split only) of a dataset recipe: a name in datasets/ or a .toml file. Deterministic "
            "per seed; an interrupted run resumes where it stopped. --shard I/N makes the I-th "
            "of N parts of every split (files train-00I-of-00N.nc ...), for cluster job arrays."
        ),
    )
    parser.add_argument("recipe", help="recipe name (listed below) or path to a .toml recipe")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--shard", type=_shard, default=None, help="I/N: make shard I of N")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--feature-encoder",
        action="store_true",
        help="also train the feature encoder of 'physgen evaluate's feature distance on the "
        "training split and save it beside the data as feature_encoder.pt (kept if present)",
    )
    parser.add_argument(
        "--feature-steps", type=int, default=2000, help="training steps of the feature encoder"
    )
    parser.set_defaults(handler=_make)


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like 2/8, got {text!r}") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"--shard needs 1 <= I <= N, got {text!r}")
    return i, n


def _make(args: argparse.Namespace) -> int:
    check_recipe(args.recipe)  # a wrong name answers before the data layer is imported
    from physgen.recipes import make_dataset
    from physgen.workers import sigterm_exits

    with sigterm_exits():  # SIGTERM ends the workers and releases the folder, like Ctrl-C
        written = make_dataset(
            args.recipe, args.out, shard=args.shard, workers=args.workers, progress=not args.quiet
        )
    if args.feature_encoder and "train" in written and args.shard is None:
        from physgen.diagnostics.feature_encoder import ENCODER_FILE, train_feature_encoder

        target = written["train"].parent / ENCODER_FILE
        if not target.exists() or target.stat().st_mtime < written["train"].stat().st_mtime:
            train_feature_encoder(
                written["train"], target, steps=args.feature_steps, progress=not args.quiet
            )
        written["encoder"] = target
    elif args.feature_encoder:
        print("--feature-encoder: skipped (the whole training split is needed, not a shard)")
    for key, path in written.items():
        print(f"{key:<7} {path}")
    return 0


# -- split -----------------------------------------------------------------------------------
def add_split(commands: argparse._SubParsersAction) -> None:
    """``physgen data split FILE --out DIR [--fractions F F F] [--seed S]``."""
    parser = commands.add_parser(
        "split",
        help="split one field file into train/valid/test files and stats.json",
        description=(
            "Shuffle the samples of a physgen-field/1 file with a seed and cut them into "
            "DIR/train.nc, valid.nc and test.nc by fractions (a split with no samples is left "
            "out), with stats.json computed on the training split and split.json recording "
            "the source, fractions, seed and sizes. Deterministic per seed; the folder appears "
            "complete or not at all. 'physgen train --data FILE.nc' does the same on its own."
        ),
    )
    parser.add_argument("file", type=Path, help="the physgen-field/1 .nc file")
    parser.add_argument("--out", type=Path, required=True, help="the data-set folder to create")
    add_split_options(parser, "--fractions", "--seed")
    parser.set_defaults(handler=_split)


def add_split_options(parser: argparse.ArgumentParser, fractions: str, seed: str) -> None:
    """The split's fraction and seed options, under the given flag names."""
    parser.add_argument(
        fractions,
        type=float,
        nargs=3,
        default=list(SPLIT_FRACTIONS),
        metavar=("TRAIN", "VALID", "TEST"),
        help="fractions of the samples per split, summing to 1 (default 0.8 0.1 0.1)",
    )
    parser.add_argument(seed, type=int, default=0, help="seed of the shuffle (default 0)")


def _split(args: argparse.Namespace) -> int:
    from physgen.data import split_fields

    result = split_fields(args.file, args.out, fractions=args.fractions, seed=args.seed)
    print(f"{args.file}: {result.summary()}")
    return 0


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_inspect,
    add_import,
    add_split,
    add_make,
]
