"""The physics feature distance on Darcy fields: does it see a 1 % field shift that the
pointwise metrics miss, and does it rank a set of models as the field metrics do?

The feature encoder is the product's own: ``physgen data make darcy-32 --feature-encoder``
trains it on the training split and stores it beside the data; ``physgen evaluate`` then
reports the Fréchet distance of the encoder's pooled features beside its floor.

* **Shift.** Held-out fields (valid + test, 300) are evaluated against the training split
  by ``physgen evaluate`` (:func:`physgen.cli.evaluate.evaluate_files`), unchanged and with
  the pressure or the permeability scaled by 1 + s. Each metric is read against its floor:
  "sees" means above the floor by more than 2 floor sds.
* **Ranking.** A labelled set of "models": controlled degradations of 200 training fields
  (white noise, Gaussian blur, a scaled pressure, mode collapse onto a few fields) and the
  undegraded fields themselves, in the z-scores the Darcy benchmark uses. Each is scored
  against the 300 held-out fields by the benchmark's field metrics (W1, sliced W, MMD²,
  energy, spectrum LSD, mean- and std-field errors, each with its floor) pooled into one
  score (:func:`physgen.diagnostics.ranking.consensus_score`), and by the feature distance.
  The two rankings are compared by Spearman's ρ and Kendall's τ.

* **Trained families** (``--benchmark DIR ...``): the same ranking of the samples that the
  Darcy benchmark's trained families drew (``physgen run darcy_benchmark --quick
  --save-samples`` writes them to ``OUT/samples``).

Beside the Fréchet distance, ``evaluate`` reports the KID of the same features (unbiased,
floor ≈ 0) and the Fréchet distance and KID of the physics features (the features and the
log relative PDE residual of each field); all enter the shift table and the rankings.

Usage: ``physgen run feature_distance --quick [--benchmark DIR ...] [--parts ...]`` (CPU,
minutes). Results go to ``runs/feature_distance-quick/``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import Tensor

from physgen.cli.evaluate import evaluate_files
from physgen.data import open_fields
from physgen.data.atomic import atomic_output, write_json_atomic
from physgen.diagnostics import feature_distance, load_feature_encoder
from physgen.diagnostics.feature_encoder import (
    ENCODER_FILE,
    FeatureEncoder,
    train_feature_encoder,
)
from physgen.diagnostics.ranking import consensus_score, rank_correlation
from physgen.metrics import compare_to_floor
from physgen.metrics.report import distribution_report
from physgen.paths import runs_root
from physgen.problem import Problem, load, recorded_params
from physgen.recipes import make_dataset

__all__ = [
    "CONFIGS",
    "FIELD_METRICS",
    "PARTS",
    "Reference",
    "degradations",
    "load_reference",
    "main",
    "run_study",
    "score_models",
    "trained_models",
    "trained_ranking",
]

CONFIGS: dict[str, dict[str, Any]] = {
    "quick": {
        "dataset": "darcy-32", "seed": 0, "threads": 1, "encoder_steps": 2000,
        "shifts": [0.01, 0.05, 0.1, 0.2], "n_models": 200, "splits": 5,
    },
}  # fmt: skip

# The Darcy benchmark's distribution columns: the "field metrics" pooled for the ranking.
FIELD_METRICS = (
    "marginal_w1", "sliced_wasserstein", "mmd2", "energy_distance", "spectrum_lsd",
    "mean_error_std_units", "std_error",
)  # fmt: skip
SHIFT_METRICS = ("marginal_w1", "mmd2", "sliced_wasserstein", "frechet_pca")


def degradations(seed: int) -> dict[str, Callable[[Tensor], Tensor]]:
    """The labelled "models": maps of z-scored fields ``(N, 2, n, n)`` to degraded ones."""
    g = torch.Generator().manual_seed(seed)

    def noise(s: float) -> Callable[[Tensor], Tensor]:
        return lambda x: x + s * torch.randn(x.shape, generator=g, dtype=x.dtype)

    def blur(s: float) -> Callable[[Tensor], Tensor]:
        return lambda x: torch.from_numpy(gaussian_filter(x.numpy(), sigma=(0, 0, s, s)))

    def scale_u(s: float) -> Callable[[Tensor], Tensor]:
        return lambda x: torch.stack([x[:, 0], s * x[:, 1]], 1)

    def collapse(k: int) -> Callable[[Tensor], Tensor]:
        return lambda x: x[torch.arange(len(x)) % k]

    return {
        "data": lambda x: x,
        **{f"noise {s}": noise(s) for s in (0.05, 0.1, 0.2, 0.4)},
        **{f"blur {s}": blur(s) for s in (0.5, 1.0, 2.0)},
        **{f"u × {s}": scale_u(s) for s in (0.9, 1.2)},
        **{f"collapse {k}": collapse(k) for k in (50, 10, 2)},
    }


def _encoder(cfg: dict[str, Any]) -> tuple[dict[str, Path], Path]:
    """The data set and its feature encoder, made as ``data make --feature-encoder`` does."""
    files = make_dataset(cfg["dataset"], progress=False)
    target = files["train"].parent / ENCODER_FILE
    if not target.exists():
        train_feature_encoder(files["train"], target, steps=cfg["encoder_steps"])
    return files, target


def shift_table(files: dict[str, Path], encoder: Path, cfg: dict[str, Any], tmp: Path):
    """``evaluate``'s verdicts on held-out fields, unchanged and with a field scaled."""
    import xarray as xr

    with open_fields(files["valid"], load=True) as v, open_fields(files["test"], load=True) as t:
        held = xr.concat([v, t], dim="sample")
    held = held.assign_coords(sample=np.arange(held.sizes["sample"]))
    held.attrs = dict(t.attrs)
    cases = [("none", None, 0.0)] + [
        (f"{f} × {1 + s:g}", f, s) for f in "ua" for s in cfg["shifts"]
    ]
    rows = []
    for label, field, s in cases:
        ds = held.copy(deep=True)
        if field is not None:
            ds[field] = ds[field] * np.float32(1 + s)
            ds[field].attrs = held[field].attrs
        path = tmp / f"samples-{len(rows)}.nc"
        ds.to_netcdf(path, engine="h5netcdf")
        result = evaluate_files(
            path, files["train"], out=tmp / f"eval-{len(rows)}", permutations=0,
            splits=cfg["splits"], seed=cfg["seed"], figures=False, residual=True,
            feature_encoder=encoder,
        )  # fmt: skip
        row: dict[str, Any] = {"case": label}
        for f in ("a", "u"):
            for k in SHIFT_METRICS:
                row[f"{f}:{k}"] = result["fields"][f][k]
        features = result["feature_distance"]
        keys = ("value", "floor", "floor_std", "n")
        row["feature_frechet"] = {k: features[k] for k in keys}
        row["feature_kid"] = {k: features["kid"][k] for k in keys}
        row["physics_feature_frechet"] = {k: features["physics_frechet"][k] for k in keys}
        row["physics_feature_kid"] = {k: features["physics_kid"][k] for k in keys}
        rows.append(row)
        print(f"shift {label}: feature {row['feature_frechet']}", flush=True)
    return rows


def _seen(entry: dict[str, Any]) -> bool:
    """Above the floor by more than 2 floor sds (a value below the floor detects nothing)."""
    z = compare_to_floor(entry["value"], entry["floor"], entry["floor_std"]).z
    return z is not None and z > 2.0


class Reference(NamedTuple):
    """What every ranking scores against: the encoder, the data's problem, the held-out
    fields (valid + test) as float64 z-scores (the physics features' residual needs the exact
    physical fields) and the physics feature map standardized over them."""

    encoder: FeatureEncoder
    problem: Problem
    fields: Tensor
    physics: Callable[[Tensor], Tensor]


def load_reference(files: dict[str, Path], encoder_path: Path) -> Reference:
    """The :class:`Reference` of the data set ``files`` and its encoder."""
    encoder = load_feature_encoder(encoder_path)
    with open_fields(files["train"]) as ds:
        problem = load(ds.attrs["problem"], **recorded_params(ds.attrs, files["train"]))
    refs = []
    for split in ("valid", "test"):
        with open_fields(files[split]) as ds:
            refs.append(encoder.stack(ds, 1000, files[split], torch.float64))
    ref = torch.cat(refs)
    return Reference(encoder, problem, ref, encoder.physics_features(problem, ref))


def score_models(
    models: dict[str, Tensor], reference: Reference, cfg: dict[str, Any]
) -> dict[str, Any]:
    """Field-metric consensus and feature distances (Fréchet, KID, and both on the physics
    features) of every model's z-scored fields ``(N, 2, n, n)`` against the reference's;
    the rank agreement of each distance with the consensus."""
    options = {"num_splits": cfg["splits"], "seed": cfg["seed"]}
    features, physics, ref = reference.encoder.features, reference.physics, reference.fields
    distances = {
        "feature": lambda x: feature_distance(features, x.float(), ref.float(), **options),
        "kid": lambda x: feature_distance(features, x, ref, metric="kid", **options),
        "physics frechet": lambda x: feature_distance(physics, x, ref, **options),
        "physics kid": lambda x: feature_distance(physics, x, ref, metric="kid", **options),
    }
    scored: dict[str, dict[str, Any]] = {}
    for name, x in models.items():
        report = distribution_report(
            x, ref, spatial_dims=2, periodic=False, seed=cfg["seed"], num_permutations=0,
            num_splits=cfg["splits"],
        )  # fmt: skip
        scored[name] = {"fields": {k: report[k] for k in FIELD_METRICS}, "n": len(x)}
        scored[name].update({k: distance(x) for k, distance in distances.items()})
        fd = scored[name]["feature"]
        print(f"{name}: feature {fd['value']:.3g} (floor {fd['floor']:.3g})", flush=True)
    floors = {k: float(np.mean([m["fields"][k]["floor"] for m in scored.values()]))
              for k in FIELD_METRICS}  # fmt: skip
    values = {n: {k: m["fields"][k]["value"] for k in FIELD_METRICS} for n, m in scored.items()}
    consensus = consensus_score(values, floors)
    names = list(scored)
    corr = {
        k: rank_correlation(
            [consensus[n] for n in names], [scored[n][k]["value"] for n in names]
        ).__dict__
        for k in distances
    }
    per_metric = {
        k: rank_correlation([values[n][k] for n in names], [consensus[n] for n in names]).__dict__
        for k in FIELD_METRICS
    }
    return {"models": scored, "consensus": consensus, "floors": floors,
            "correlation": corr, "per_metric_vs_consensus": per_metric}  # fmt: skip


def ranking(files: dict[str, Path], reference: Reference, cfg: dict[str, Any]) -> dict[str, Any]:
    """:func:`score_models` of the labelled degradations of ``n_models`` training fields."""
    with open_fields(files["train"]) as ds:
        base = reference.encoder.stack(ds, cfg["n_models"], files["train"], torch.float64)
    models = {name: degrade(base.clone()) for name, degrade in degradations(cfg["seed"]).items()}
    return score_models(models, reference, cfg)


def trained_models(folders: list[Path], encoder: FeatureEncoder) -> dict[str, Tensor]:
    """The samples files (``*.nc``) in ``folders`` — the Darcy benchmark's ``--save-samples``
    output — as float64 z-scores, named ``family/seedS`` from their attributes (else the
    file name). Samples holding NaN or Inf are left out, as ``evaluate`` does; a file
    with none finite is refused by name."""
    paths = sorted(p for folder in folders for p in Path(folder).glob("*.nc"))
    if not paths:
        raise FileNotFoundError(f"no samples files (*.nc) in {[str(f) for f in folders]}")
    models: dict[str, Tensor] = {}
    for path in paths:
        with open_fields(path, nonfinite="ignore") as ds:  # broken samples: dropped below
            x = encoder.stack(ds, ds.sizes["sample"], path, torch.float64)
            family, seed = ds.attrs.get("family"), ds.attrs.get("seed")
        name = f"{family}/seed{seed}" if family is not None else path.stem
        if name in models:
            raise ValueError(f"{path}: a second samples file of {name}")
        finite = torch.isfinite(x.flatten(1)).all(1)
        if not bool(finite.any()):
            raise ValueError(f"{path}: no finite sample")
        models[name] = x[finite]
    return models


def trained_ranking(
    folders: list[Path], reference: Reference, cfg: dict[str, Any]
) -> dict[str, Any]:
    """:func:`score_models` of the trained families' samples in ``folders``."""
    return score_models(trained_models(folders, reference.encoder), reference, cfg)


def _cell(entry: dict[str, Any]) -> str:
    mark = "**seen**" if _seen(entry) else "missed"
    return f"{entry['value']:.3g} / {entry['floor']:.3g} ± {entry['floor_std']:.2g} ({mark})"


def _ranking_lines(rank: dict[str, Any], title: str) -> list[str]:
    heads = {"feature": "feature Fréchet", "kid": "feature KID",
             "physics frechet": "physics Fréchet", "physics kid": "physics KID"}  # fmt: skip
    keys = list(rank["correlation"])
    lines = ["", title, "", "| model | field consensus | "
             + " | ".join(f"{heads.get(k, k)} (floor)" for k in keys) + " |",
             "|---" * (len(keys) + 2) + "|"]  # fmt: skip
    for name, m in rank["models"].items():
        cells = [f"{m[k]['value']:.3g} ({m[k]['floor']:.3g})" for k in keys]
        lines.append(f"| {name} | {rank['consensus'][name]:.3f} | " + " | ".join(cells) + " |")
    lines.append("")
    for k, c in rank["correlation"].items():
        lines.append(
            f"{k}: Spearman ρ = {c['spearman']:.3f} (p = {c['spearman_p']:.2g}), "
            f"Kendall τ = {c['kendall']:.3f} (p = {c['kendall_p']:.2g}), n = {c['n']}  "
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The shift table and the ranking tables of the parts that ran."""
    lines: list[str] = []
    if "shift" in result:
        cols = ["feature_frechet", "feature_kid", "physics_feature_frechet",
                "physics_feature_kid"]  # fmt: skip
        cols += [f"{f}:{k}" for f in ("a", "u") for k in SHIFT_METRICS]
        lines += ["Shift: value / floor ± floor sd (seen = above the floor by > 2 floor sds)",
                  "", "| case | " + " | ".join(cols) + " |",
                  "|---" * (len(cols) + 1) + "|"]  # fmt: skip
        for row in result["shift"]:
            lines.append(f"| {row['case']} | " + " | ".join(_cell(row[c]) for c in cols) + " |")
    if "ranking" in result:
        title = "Ranking of the degradations: pooled field metrics against the feature distances"
        lines += _ranking_lines(result["ranking"], title)
    if "trained_ranking" in result:
        title = "Ranking of the trained families: pooled field metrics against the distances"
        lines += _ranking_lines(result["trained_ranking"], title)
    return "\n".join(lines) + "\n"


PARTS = ("shift", "ranking", "trained")


def run_study(
    cfg: dict[str, Any],
    out: Path,
    *,
    benchmark: list[Path] | None = None,
    parts: tuple[str, ...] = ("shift", "ranking"),
) -> dict[str, Any]:
    """Make the data and encoder, run the chosen ``parts`` (``"trained"`` ranks the samples
    files in the ``benchmark`` folders), write results.json and results.md."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown parts {unknown}; known: {list(PARTS)}")
    if "trained" in parts and not benchmark:
        raise ValueError("the 'trained' part needs the benchmark's samples folders")
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    start = time.perf_counter()
    files, encoder = _encoder(cfg)
    result: dict[str, Any] = {"config": cfg, "encoder": str(encoder)}
    if "shift" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            result["shift"] = shift_table(files, encoder, cfg, Path(tmp))
    if "ranking" in parts or "trained" in parts:
        reference = load_reference(files, encoder)  # read once, shared by both rankings
    if "ranking" in parts:
        result["ranking"] = ranking(files, reference, cfg)
    if "trained" in parts:
        assert benchmark is not None
        result["benchmark"] = [str(p) for p in benchmark]
        result["trained_ranking"] = trained_ranking(benchmark, reference, cfg)
    result["total_s"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, out / "results.json")
    with atomic_output(out / "results.md") as tmp_md:
        tmp_md.write_text(markdown(result), encoding="utf-8")
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the study and print its tables."""
    parser = argparse.ArgumentParser(prog="physgen run feature_distance", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CPU configuration (the only one)")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument(
        "--benchmark", type=Path, nargs="+", metavar="DIR",
        help="folders of samples files written by 'physgen run darcy_benchmark --quick "
        "--save-samples' (OUT/samples): rank those trained families too",
    )  # fmt: skip
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS,
        help="parts to run (default: shift and ranking, and trained with --benchmark)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    parts = tuple(args.parts or ("shift", "ranking", *(("trained",) if args.benchmark else ())))
    if "trained" in parts and not args.benchmark:
        parser.error("--parts trained needs --benchmark DIR [DIR ...]")
    missing = [str(p) for p in args.benchmark or [] if not p.is_dir()]
    if missing:
        parser.error(f"--benchmark: no such folder(s) {missing}")
    empty = [str(p) for p in args.benchmark or [] if not any(p.glob("*.nc"))]
    if empty:
        parser.error(f"--benchmark: no samples files (*.nc) in {empty}")
    cfg = json.loads(json.dumps(CONFIGS["quick"]))
    out = args.out or runs_root() / "feature_distance-quick"
    result = run_study(cfg, out, benchmark=args.benchmark, parts=parts)
    print("\n" + markdown(result))
    print(f"total {result['total_s']:.0f} s; wrote {out / 'results.md'} and results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
