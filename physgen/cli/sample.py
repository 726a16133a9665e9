"""``physgen sample``: draw fields from a trained checkpoint and write them as physgen-field/1."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from physgen.cli._catalog import ListingFormatter, require_files, sampler_listing

if TYPE_CHECKING:  # the command imports torch and the models only when it runs
    import torch

__all__ = ["count_network_calls", "draw", "parse_options", "register", "sampler_settings"]

# ``sample`` arguments that are not sampler settings (or not plain data for provenance).
_NOT_SETTINGS = {"self", "n", "cond", "generator", "guidance"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="draw samples from a trained checkpoint",
        formatter_class=ListingFormatter,
        epilog=sampler_listing(),
        description=(
            "Draw N samples from a checkpoint written by 'physgen train' and write them, "
            "de-normalized, as a physgen-field/1 file with the training data's field names, "
            "units and coordinates, and provenance (model config, checkpoint, sampler "
            "options). Conditional models need --cond: a field file (e.g. the dataset's "
            "test.nc) holding the conditioning variables; each of its samples then gets N "
            "draws, stored along a 'member' dimension. Samples holding NaN/Inf are written "
            "as drawn, counted in the provenance and reported by a warning on stderr."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint.pt from physgen train")
    parser.add_argument("--n", type=int, required=True, help="samples (per condition)")
    parser.add_argument("--out", type=Path, required=True, help="output .nc file")
    parser.add_argument("--cond", type=Path, help="field file with the conditioning variables")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per model call")
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    parser.add_argument(
        "--problem",
        type=Path,
        help="the problem file a PI-VAE was trained with (its checkpoint names the file and "
        "its SHA-256, never loads it)",
    )
    add_draw_options(parser, "e.g. steps=200; the keys of each family are listed below")
    parser.set_defaults(handler=_sample)


def add_draw_options(parser: argparse.ArgumentParser, option_note: str) -> None:
    """The options of every command that draws from a checkpoint: seed, device, weights and
    the sampler's ``--option KEY=VALUE``."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--raw", action="store_true", help="use the raw, not the EMA, weights")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"sampler option passed to model.sample ({option_note}; repeatable; VALUE parsed "
        "as JSON if it can)",
    )


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["steps=100", "sampler=pc"]`` → ``{"steps": 100, "sampler": "pc"}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def draw(
    model: torch.nn.Module,
    n: int,
    cond: torch.Tensor | None,
    *,
    batch_size: int,
    options: dict[str, Any],
    progress: bool = False,
) -> torch.Tensor:
    """``n`` samples per row of ``cond`` (or ``n`` in all), drawn ``batch_size`` at a time.

    With conditions the result is ordered case by case: rows ``i*n ... i*n + n - 1`` are the
    draws for ``cond[i]``. ``progress`` shows a bar per batch on stderr.
    """
    import torch
    from tqdm import tqdm

    if cond is not None:
        cond = cond.repeat_interleave(n, dim=0)  # (cases * n, *cond_shape)
    total = n if cond is None else len(cond)
    parts = []
    starts = range(0, total, batch_size)
    bar = tqdm(starts, desc="sample", unit="batch", file=sys.stderr, disable=not progress)
    with torch.no_grad():
        for start in bar:
            size = min(batch_size, total - start)
            c = None if cond is None else cond[start : start + size].to(model.device)
            parts.append(model.sample(size, c, **options).cpu())
    return torch.cat(parts)


def sampler_settings(model: torch.nn.Module, options: dict[str, Any]) -> dict[str, Any]:
    """The sampler settings in effect: the family's defaults, then the options passed.

    Defaults are the keyword defaults of the model's ``sample`` (e.g. a diffusion model's
    ``sampler="ddim"``, ``steps=50``) and the sampling options a model stores (a continuous
    flow's ODE solver ``ode``, an EBM's ``sample_steps``). ``sampler`` names the method:
    the option or default of that name, else ``ode``, ``langevin`` or ``direct`` (one pass
    of the network, as in VAEs, GANs and flows); ``steps`` is the step count where there is
    one.
    """
    settings: dict[str, Any] = {}
    for name, param in inspect.signature(model.sample).parameters.items():
        plain = isinstance(param.default, (str, int, float, bool))
        if name not in _NOT_SETTINGS and param.default is not param.empty and plain:
            settings[name] = param.default
    ode = getattr(model, "ode", None)
    if isinstance(ode, dict):
        settings.update({k: v for k, v in ode.items() if v is not None})
    config = getattr(model, "config", None)
    if isinstance(config, dict) and "sample_steps" in config:
        settings["n_steps"] = config["sample_steps"]
    settings.update(options)
    if "sampler" not in settings:
        kind = "ode" if "method" in settings else "langevin" if "n_steps" in settings else None
        settings["sampler"] = kind or "direct"
    if "steps" not in settings and "n_steps" in settings:
        settings["steps"] = settings["n_steps"]
    return settings


@contextlib.contextmanager
def count_network_calls(model: torch.nn.Module) -> Iterator[dict[str, int]]:
    """Count the outermost calls of each of ``model``'s parametrized submodules.

    A call is counted when no other counted module is running, so a network's inner layers
    do not add to it. The largest count over modules is the number of network evaluations
    (NFE): a diffusion sampler's score-network calls, a flow's one pass through each layer.
    """
    counts: dict[str, int] = {}
    depth = [0]

    def enter(name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            if depth[0] == 0:
                counts[name] = counts.get(name, 0) + 1
            depth[0] += 1

        return hook

    def leave(*_: Any) -> None:
        depth[0] -= 1

    handles = []
    for name, module in model.named_modules():
        if name and any(True for _ in module.parameters()):
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave))
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def _conditions(path: Path, data: dict[str, Any]) -> tuple[torch.Tensor, Any]:
    """The normalized conditioning tensor of every sample in ``path``, and their indices."""
    import torch

    from physgen.data import FieldDataset
    from physgen.training.fields import stats_table

    # An unpaired model's conditions are domain-A fields, in a file without domain B's.
    unpaired = bool(data.get("unpaired"))
    cond_file = FieldDataset(
        path,
        data["cond_fields"] if unpaired else data["fields"],
        cond_fields=() if unpaired else data["cond_fields"],
        stats=stats_table(data),
        time=data["time"],
        nonfinite="report",
    )
    shape = cond_file.sample_shape if unpaired else cond_file.cond_shape
    if list(shape or ()) != list(data["cond_shape"] or ()):
        raise ValueError(
            f"{path}: conditions of shape {shape}, the model was trained on "
            f"{tuple(data['cond_shape'])}"
        )
    items = [cond_file[i] for i in range(len(cond_file))]
    cond = torch.stack(items if unpaired else [c for _, c in items])
    index = cond_file.coords.get("sample") if data["time"] == "channels" else None
    return cond, index


def _sample(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ValueError(f"--n must be positive, got {args.n}")
    require_files(
        (args.checkpoint, f"no checkpoint file at {args.checkpoint}"),
        (args.cond, f"no such file: {args.cond}"),
    )
    import torch

    from physgen.data import write_fields
    from physgen.training import build_model, read_checkpoint
    from physgen.training.fields import samples_to_fields

    contents = read_checkpoint(args.checkpoint)
    data = contents.get("metadata", {}).get("data")
    if data is None:
        raise ValueError(
            f"{args.checkpoint}: holds no description of its training fields (it was not "
            "written by 'physgen train'); sample it from Python with load_checkpoint()"
        )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    objects = {}
    if args.problem is not None:  # the user's own file, as the checkpoint's config recorded
        from physgen.problem import load

        config = contents["model_config"]
        objects["problem_object"] = load(args.problem, **(config.get("problem_params") or {}))
    model = build_model(contents, use_ema=not args.raw, device=device, objects=objects)
    options = parse_options(args.option)
    conditional = bool(data["cond_fields"])
    if conditional and args.cond is None:
        raise ValueError(
            f"the model is conditional on {data['cond_fields']}; pass --cond FILE with them"
        )
    if args.cond is not None and not conditional:
        raise ValueError("--cond given, but the model was trained without conditioning fields")
    cond, index = _conditions(args.cond, data) if args.cond is not None else (None, None)
    flat = bool(data.get("flatten"))  # trained with --flatten: vectors (C*N,)
    if flat and cond is not None:
        cond = cond.flatten(1)  # (cases, C'*N)
    torch.manual_seed(args.seed)
    with count_network_calls(model) as calls:
        quiet = args.quiet
        x = draw(
            model, args.n, cond, batch_size=args.batch_size, options=options, progress=not quiet
        )
    batches = math.ceil(len(x) / args.batch_size)
    sampler = sampler_settings(model, options)
    sampler["nfe"] = max(calls.values(), default=0) / batches  # network evaluations per batch
    if float(sampler["nfe"]).is_integer():
        sampler["nfe"] = int(sampler["nfe"])
    if flat:
        x = x.reshape(len(x), *data["sample_shape"])  # (B, C, *grid)
    nonfinite = int((~torch.isfinite(x.flatten(1))).any(1).sum())
    ds = samples_to_fields(x, data, members=args.n if conditional else None, sample_coord=index)
    provenance = {
        "generator": "physgen sample",
        "model": contents["model_name"],
        "model_config": contents["model_config"],
        "checkpoint": str(args.checkpoint.resolve()),
        "checkpoint_step": int(contents["step"]),
        "weights": "raw" if args.raw or contents.get("ema_state") is None else "ema",
        "sampler": {"family": contents["model_name"], **sampler},
        "seed": args.seed,
        "training_data": data["source"],
    }
    if args.cond is not None:
        provenance["conditions"] = str(args.cond.resolve())
    provenance["nonfinite_samples"] = nonfinite
    path = write_fields(ds, args.out, provenance=provenance)
    if nonfinite:  # shown even with --quiet: the file is written, but these fields are broken
        print(
            f"physgen sample: warning: {nonfinite} of {len(x)} samples in {path} hold NaN/Inf "
            "(written as drawn; 'physgen evaluate' scores only the finite ones)",
            file=sys.stderr,
        )
    shape = tuple(data["sample_shape"])
    drawn = f"{args.n} samples" if cond is None else f"{len(cond)} conditions × {args.n} members"
    print(f"wrote {path}: {drawn} of {shape} ({', '.join(data['fields'])})")
    return 0
