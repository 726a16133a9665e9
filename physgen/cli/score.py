"""``physgen score CHECKPOINT FILE``: per-sample anomaly scores of fields under a trained model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["detection_table", "register", "score_file"]

LABEL = "label"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="per-sample anomaly scores of fields under a trained checkpoint",
        description=(
            "Score every sample of a physgen-field/1 file under a checkpoint written by "
            "'physgen train' and write the scores (higher = more anomalous) to a netCDF file "
            "with dimension 'sample': the NLL in bits/dim (flows, CNF, flow matching, "
            "diffusion), the negative ELBO / IWAE bound in bits/dim and the reconstruction "
            "error (VAEs, autoencoders), the energy (EBMs); with --problem also the relative "
            "PDE residual, the physics baseline. With --labels the file's integer variable "
            "'label' (dims (sample,); 0 = normal, each positive value one kind of anomaly, "
            "named by its 'flag_meanings' attribute) gives AUROC and AUPRC per score and kind, "
            "printed as a table and stored as JSON in the output's attribute 'detection_json'."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint.pt from physgen train")
    parser.add_argument("file", type=Path, help="fields to score (physgen-field/1 file)")
    parser.add_argument("--out", type=Path, required=True, help="output .nc file of scores")
    parser.add_argument(
        "--scores", nargs="+", help="scores to compute (default: every score of the family)"
    )
    parser.add_argument(
        "--problem",
        metavar="NAME|PATH",
        help="add the relative PDE residual of this problem (a name or Python file), "
        "with the file's parameters when it names the same problem",
    )
    parser.add_argument(
        "--labels", action="store_true", help="AUROC / AUPRC against the file's 'label'"
    )
    parser.add_argument("--iwae-samples", type=int, default=64, help="K of the IWAE bound")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per model call")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bounds' latent draws")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--raw", action="store_true", help="use the raw, not the EMA, weights")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='option of the model\'s log_prob (repeatable; e.g. trace="hutchinson")',
    )
    parser.set_defaults(handler=_run)


def _labels(ds: Any, path: Path) -> tuple[Any, dict[int, str]]:
    """The integer labels ``(N,)`` of a file and the name of each positive value."""
    import numpy as np

    if LABEL not in ds.variables:
        raise KeyError(f"{path}: --labels needs a variable {LABEL!r} (0 = normal, k > 0 anomaly)")
    var = ds[LABEL]
    if var.dims != ("sample",):
        raise ValueError(f"{path}: variable {LABEL!r} must have dims ('sample',), got {var.dims}")
    values = np.asarray(var.values)
    if not np.issubdtype(values.dtype, np.integer) or (values < 0).any():
        raise ValueError(f"{path}: variable {LABEL!r} must hold integers ≥ 0 (0 = normal)")
    kinds = sorted(int(k) for k in np.unique(values) if k > 0)
    if not kinds or not (values == 0).any():
        raise ValueError(f"{path}: {LABEL!r} needs both normal (0) and anomalous (> 0) samples")
    names = {k: f"label {k}" for k in kinds}
    meanings = str(var.attrs.get("flag_meanings", "")).split()
    flags = np.atleast_1d(var.attrs.get("flag_values", []))
    for value, meaning in zip(flags, meanings, strict=False):
        if int(value) in names:
            names[int(value)] = meaning
    return values, names


def _detection(scores: dict[str, Any], labels: Any, names: dict[int, str]) -> dict[str, Any]:
    """AUROC and AUPRC (with standard errors) of every score, per kind and for all together."""
    from physgen.diagnostics import auprc, auroc

    out: dict[str, Any] = {}
    for name, s in scores.items():
        normal = s[labels == 0]
        groups = {names[k]: s[labels == k] for k in names}
        if len(names) > 1:
            groups["all"] = s[labels > 0]
        out[name] = {
            kind: {"auroc": auroc(normal, x)._asdict(), "auprc": auprc(normal, x)._asdict()}
            for kind, x in groups.items()
        }
    return out


def detection_table(detection: dict[str, Any]) -> str:
    """A plain-text table: score, anomaly kind, AUROC ± SE, AUPRC ± SE."""
    rows = [("score", "anomaly", "AUROC", "AUPRC")]
    for name, kinds in detection.items():
        for kind, m in kinds.items():
            roc, pr = m["auroc"], m["auprc"]
            rows.append(
                (
                    name,
                    kind,
                    f"{roc['value']:.3f} ± {roc['se']:.3f}",
                    f"{pr['value']:.3f} ± {pr['se']:.3f}",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def score_file(
    checkpoint: Path,
    path: Path,
    *,
    scores: list[str] | None = None,
    problem: str | None = None,
    iwae_samples: int = 64,
    batch_size: int = 256,
    seed: int = 0,
    device: str = "cpu",
    use_ema: bool = True,
    log_prob_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per-sample scores ``{name: (N,) float64 numpy}`` of the fields in ``path``.

    The fields are normalized with the checkpoint's training statistics (as the model saw its
    data); likelihood scores are bits/dim of the data in physical units. ``problem`` adds
    ``residual``, the relative PDE residual of the stored (physical) fields.
    """
    import numpy as np
    import torch

    from physgen.data import FieldDataset, open_fields
    from physgen.diagnostics import model_scores, residual_score
    from physgen.training import build_model, read_checkpoint
    from physgen.training.fields import stats_table

    contents = read_checkpoint(checkpoint)
    data = contents.get("metadata", {}).get("data")
    if data is None:
        raise ValueError(
            f"{checkpoint}: holds no description of its training fields (it was not written "
            "by 'physgen train'); score from Python with physgen.diagnostics.model_scores"
        )
    fields = FieldDataset(
        path,
        data["fields"],
        cond_fields=data["cond_fields"],
        stats=stats_table(data),
        time=data["time"],
    )
    if list(fields.sample_shape) != list(data["sample_shape"]):
        raise ValueError(
            f"{path}: fields of shape {fields.sample_shape}, the model was trained on "
            f"{tuple(data['sample_shape'])}"
        )
    items = [fields[i] for i in range(len(fields))]
    conditional = bool(data["cond_fields"])
    x = torch.stack([it[0] for it in items]) if conditional else torch.stack(items)
    cond = torch.stack([it[1] for it in items]) if conditional else None
    scale = None
    if data["scale"] is not None:
        # z = (y - m)/s per channel: the data scale of every dimension is 1/s of its channel.
        per_channel = 1.0 / torch.tensor(data["scale"], dtype=torch.float64)
        grid = (1,) * (x.ndim - 2)
        scale = per_channel.reshape(-1, *grid).expand(x.shape[1:]).flatten()
    if data.get("flatten"):
        x = x.flatten(1)
        cond = None if cond is None else cond.flatten(1)
    model = build_model(contents, use_ema=use_ema, device=device)
    model.eval()
    torch.manual_seed(seed)
    result = model_scores(
        model,
        x.to(device),
        None if cond is None else cond.to(device),
        scores=scores,
        data_scale=scale,
        iwae_samples=iwae_samples,
        batch_size=batch_size,
        log_prob_options=log_prob_options,
    )
    out = {name: v.numpy() for name, v in result.items()}
    if problem is not None:
        from physgen.cli.evaluate import _load_problem

        with open_fields(path) as ds:
            loaded = _load_problem(problem, ds, path)
            missing = [c for c in loaded.field_names if c not in ds.data_vars]
            if missing:
                raise KeyError(f"{path}: problem {loaded.name!r} needs fields {missing}")
            phys = np.stack([ds[c].values.astype(np.float64) for c in loaded.field_names], 1)
        out["residual"] = residual_score(loaded, phys).numpy()
    return out


_UNITS = {
    "nll": ("negative log-likelihood", "bits/dim"),
    "neg_elbo": ("negative ELBO (upper bound on the NLL)", "bits/dim"),
    "neg_iwae": ("negative IWAE bound (upper bound on the NLL)", "bits/dim"),
    "reconstruction": ("mean squared reconstruction error (normalized units)", "1"),
    "energy": ("energy E(x) (NLL up to the log-partition)", "1"),
    "residual": ("relative RMS of the PDE residual", "1"),
}


def _run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import xarray as xr

    from physgen.cli.sample import parse_options
    from physgen.data import open_fields
    from physgen.data.atomic import atomic_output

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    labels = names = None
    with open_fields(args.file) as ds:
        sample = np.asarray(ds["sample"].values)
        if args.labels:
            labels, names = _labels(ds, args.file)
    scores = score_file(
        args.checkpoint,
        args.file,
        scores=args.scores,
        problem=args.problem,
        iwae_samples=args.iwae_samples,
        batch_size=args.batch_size,
        seed=args.seed,
        device=device,
        use_ema=not args.raw,
        log_prob_options=parse_options(args.option),
    )
    variables: dict[str, Any] = {
        name: ("sample", v, {"long_name": _UNITS[name][0], "units": _UNITS[name][1]})
        for name, v in scores.items()
    }
    attrs: dict[str, Any] = {
        "generator": "physgen score",
        "checkpoint": str(args.checkpoint.resolve()),
        "input": str(args.file.resolve()),
        "orientation": "higher = more anomalous",
    }
    if labels is not None:
        variables[LABEL] = ("sample", labels, {"long_name": "0 = normal, k > 0 anomaly kind k"})
        detection = _detection(scores, labels, names)
        attrs["detection_json"] = json.dumps(detection)
    out = xr.Dataset(variables, coords={"sample": sample}, attrs=attrs)
    with atomic_output(args.out) as tmp:
        out.to_netcdf(tmp, engine="h5netcdf")
    if labels is not None:
        print(detection_table(detection))
    print(f"wrote {args.out}: {', '.join(scores)} for {len(sample)} samples", file=sys.stdout)
    return 0
