"""``physgen rollout``: autoregressive ensemble forecasts from an emulator checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from physgen.cli.sample import add_draw_options

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollout",
        help="roll an emulator checkpoint out into ensemble trajectories",
        description=(
            "Advance the trajectories of a field file with an emulator checkpoint (a "
            "conditional model of the next frame trained on history → next-frame pairs, "
            "physgen.emulation.train_emulator): each sample's frames START .. START+k-1 are the "
            "initial history, and each of the M members draws T further frames, feeding its own "
            "draws back. The output has dims (sample, member, time, *grid) in physical units; "
            "its time coordinate continues the initial file's, and its problem attributes are "
            "the initial file's, so 'physgen evaluate' can score it."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="emulator checkpoint.pt")
    parser.add_argument("--init", type=Path, required=True, help="field file with trajectories")
    parser.add_argument("--steps", type=int, required=True, help="frames T to draw")
    parser.add_argument("--members", type=int, default=1, help="ensemble members M (default 1)")
    parser.add_argument("--out", type=Path, required=True, help="output .nc file")
    parser.add_argument(
        "--start", type=int, default=0, help="first frame of the initial history (default 0)"
    )
    parser.add_argument("--batch-size", type=int, help="histories per model call (default: all)")
    parser.add_argument(
        "--noise-refresh",
        type=int,
        default=1,
        metavar="N",
        help="draw fresh sampler noise every N steps and replay the last draws in between "
        "(default 1: fresh noise at every step; 0: one noise realization per member for the "
        "whole rollout)",
    )
    parser.add_argument(
        "--inflation",
        type=float,
        default=1.0,
        metavar="LAMBDA",
        help="move each step's member draws about their mean by this factor (< 1 narrows an "
        "over-dispersed ensemble; default 1: unchanged)",
    )
    add_draw_options(parser, "the checkpoint family's sampler options, see 'physgen sample -h'")
    parser.set_defaults(handler=_rollout)


def _rollout(args: argparse.Namespace) -> int:
    # torch is imported here, not at the top: listing the commands stays torch-free.
    import torch

    from physgen.cli.sample import parse_options
    from physgen.data import write_fields
    from physgen.emulation import Emulator, read_trajectories, rollout
    from physgen.training import build_model, read_checkpoint

    if args.steps < 1 or args.members < 1:
        raise ValueError(f"--steps and --members must be >= 1, got {args.steps}, {args.members}")
    contents = read_checkpoint(args.checkpoint)
    settings = contents.get("metadata", {}).get("emulation")
    if settings is None:
        raise ValueError(
            f"{args.checkpoint}: no 'emulation' metadata (it was not trained on trajectory "
            "pairs by physgen.emulation.train_emulator)"
        )
    if "residual" in contents.get("metadata", {}):
        raise ValueError(
            f"{args.checkpoint}: the residual model of a residual emulator; its mean model is "
            "not in the checkpoint (roll it out in Python as a physgen.emulation.ResidualModel)"
        )
    data, params, description = read_trajectories(
        args.init, settings.get("fields"), settings.get("param_fields") or ()
    )
    k = int(settings["history"])
    if tuple(data.shape[1:2] + data.shape[3:]) != tuple(settings["sample_shape"]):
        raise ValueError(
            f"{args.init}: frames of shape {(data.shape[1], *data.shape[3:])}, the emulator's "
            f"are {tuple(settings['sample_shape'])}"
        )
    if not 0 <= args.start <= data.shape[2] - k:
        raise ValueError(
            f"--start must lie in [0, {data.shape[2] - k}] ({args.init} has {data.shape[2]} "
            f"frames, the history {k}), got {args.start}"
        )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(contents, use_ema=not args.raw, device=device)
    emulator = Emulator(model, settings, parse_options(args.option))
    init = data[:, :, args.start : args.start + k].transpose(1, 2)  # (B, k, C, *grid)
    forecast = rollout(
        emulator,
        init,
        args.steps,
        args.members,
        params=params,
        seed=args.seed,
        batch_size=args.batch_size,
        noise_refresh=args.noise_refresh,
        inflation=args.inflation,
    )
    ds = _forecast_dataset(forecast, args, description, k)
    provenance = {
        "generator": "physgen rollout",
        "model": contents["model_name"],
        "model_config": contents["model_config"],
        "checkpoint": str(args.checkpoint.resolve()),
        "checkpoint_step": int(contents["step"]),
        "weights": "raw" if args.raw or contents.get("ema_state") is None else "ema",
        "initial_conditions": str(args.init.resolve()),
        "initial_frames": [args.start, args.start + k - 1],
        "history": k,
        "seed": args.seed,
        "noise_refresh": args.noise_refresh,
        "inflation": args.inflation,
        "sampler_options": emulator.options,
    }
    path = write_fields(ds, args.out, provenance=provenance)
    b = forecast.shape[0]
    print(f"wrote {path}: {b} trajectories × {args.members} members × {args.steps} frames")
    return 0


def _forecast_dataset(forecast: Any, args: argparse.Namespace, description: dict, k: int) -> Any:
    """The forecast ``(B, M, T, C, *grid)`` as a physgen-field/1 dataset with member/time dims."""
    import numpy as np
    import xarray as xr

    from physgen.data import open_fields
    from physgen.data.fields import MEMBER_DIM, SAMPLE_DIM, TIME_DIM

    times = np.asarray(description["time"], dtype=np.float64)
    last = args.start + k - 1
    if len(times) < 2:
        raise ValueError(f"{args.init}: one frame only; the frame spacing is unknown")
    dt = float(times[1] - times[0])
    grid = tuple(description["grid_dims"])
    dims = (SAMPLE_DIM, MEMBER_DIM, TIME_DIM, *grid)
    values = forecast.detach().cpu().numpy()
    data = {
        name: (dims, values[:, :, :, c], description["field_attrs"].get(name, {}))
        for c, name in enumerate(description["fields"])
    }
    with open_fields(args.init, nonfinite="ignore") as init:
        coords: dict[str, Any] = {d: init[d] for d in (SAMPLE_DIM, *grid) if d in init.coords}
        time_attrs = dict(init[TIME_DIM].attrs)
        attrs = {key: init.attrs[key] for key in ("problem", "params_json") if key in init.attrs}
    coords[MEMBER_DIM] = np.arange(values.shape[1], dtype=np.int64)
    lead = times[last] + dt * np.arange(1, values.shape[2] + 1)
    coords[TIME_DIM] = (TIME_DIM, lead, time_attrs)
    return xr.Dataset(data, coords=coords, attrs={**attrs, "fields": description["fields"]})
