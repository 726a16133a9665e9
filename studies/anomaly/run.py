"""Anomaly benchmark: do generative models flag Darcy fields that are unphysical, from another
regime or corrupted, and where do they beat the PDE residual alone?

In-distribution fields are the ``darcy-32`` test split (−∇·(a∇u) = 1, u = 0 on the walls,
a ∈ {3, 12}). Each anomaly type transforms held-out test fields (or draws new ones):

* physics-violating — ``source``: u solved with a 1 % larger source term (u·1.01);
  ``boundary``: u with a wrong wall value (u + c, the solution for u = c on the walls);
  ``smoothed``: u blurred by a Gaussian filter;
* out-of-regime (still exact solutions) — ``length``: permeability from a GRF of half the
  length scale (τ = 6 instead of 3); ``contrast``: permeability contrast 24/3 instead of 12/3;
* corrupted — ``spikes``: 1 % of the pressure sensors read ±3 std off; ``tiles``: one 8×8 tile
  of the pressure lost (read as 0).

Detectors (every score oriented higher = more anomalous; :mod:`physgen.diagnostics`): the
relative PDE residual alone (the physics baseline, no model); a conv VAE's negative ELBO,
IWAE bound and reconstruction error; a Glow's NLL in bits/dim, the typicality score
|NLL − Ĥ| (Ĥ from the validation split), and the likelihood ratio to a background Glow
trained on inputs perturbed as in Ren et al. (2019). Each is reported as AUROC ± its
Hanley–McNeil standard error per anomaly type. Feature-space detectors: the Mahalanobis
distance (Lee et al. 2018) on the VAE's latent, on the feature encoder's code and on its
pooled multi-stage features, and on log power spectra. Batch detectors score groups of M
fields drawn together (the typicality test's setting), M chosen on validation sets only.

How well any per-field detector can do on ``length`` is bounded: a is the sign of a
Gaussian field ψ, so a and u depend on ψ only through its direction ψ/|ψ|, whose exact
likelihood ratio between the two length scales (:func:`scale_free_log_ratio`) has the
highest AUROC of all (Neyman–Pearson); :func:`length_ceiling` estimates it by Monte Carlo.

A second benchmark (``--benchmark flow``) asks the out-of-regime question of a flow:
Kolmogorov flow (``kolmogorov-32``: Re = 100, statistically stationary) against the same
flow at Re = 200, exact solver output stored as float32. Detectors see single vorticity
snapshots ω(t) or two-frame pairs (ω(t), ω(t + Δt)); only a pair has a residual, the
one-step defect under the nominal Reynolds number (:func:`pair_residual`).

Usage: ``physgen run anomaly --quick [--benchmark flow]`` (CPU, one thread, minutes) or
without ``--quick`` (wider nets, longer training on one GPU, same data). Results go to
``runs/anomaly[-flow][-quick]/``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import Tensor

from physgen.data import FieldDataset, load_stats
from physgen.data.atomic import atomic_output, write_json_atomic
from physgen.diagnostics import (
    auroc,
    batch_means,
    encoder_features,
    entropy_estimate,
    log_likelihood_ratio,
    model_scores,
    perturb,
    residual_score,
    typicality_statistic,
)
from physgen.diagnostics.feature_encoder import FeatureEncoder, fit_feature_encoder
from physgen.diagnostics.feature_scores import MahalanobisFit, spectrum_features
from physgen.models.base import GenerativeModel, get_model_class
from physgen.paths import runs_root
from physgen.problem import Problem, load
from physgen.recipes import load_recipe, make_dataset
from physgen.training import fit

__all__ = [
    "ANOMALIES",
    "CONFIGS",
    "FLOW_ANOMALIES",
    "FLOW_CONFIGS",
    "FLOW_FIELDS",
    "Data",
    "FlowData",
    "anomaly_sets",
    "batch_table",
    "detection_table",
    "flow_data",
    "flow_fields",
    "flow_scores",
    "flow_table",
    "learned_scores",
    "length_ceiling",
    "load_flow",
    "main",
    "markdown",
    "pair_residual",
    "regime_fields",
    "run_flow",
    "run_study",
    "scale_free_log_ratio",
]

Anomalies = tuple[tuple[str, str, str], ...]

# (key, group, description) in table order.
ANOMALIES: Anomalies = (
    ("source", "physics", "1 % source-term error (u·1.01)"),
    ("boundary", "physics", "wrong wall value (u + c)"),
    ("smoothed", "physics", "smoothed pressure (Gaussian, σ = 1 cell)"),
    ("length", "regime", "GRF length scale halved (τ = 6)"),
    ("contrast", "regime", "permeability contrast 24/3"),
    ("spikes", "corruption", "1 % sensor spikes (±3 std of u)"),
    ("tiles", "corruption", "one 8×8 tile of u missing (0)"),
)

CONFIGS: dict[str, dict[str, Any]] = {
    "quick": {
        "dataset": "darcy-32", "seed": 0, "threads": 1, "device": "cpu", "lr": 2e-3,
        "vae": {"latent_dim": 32, "channels": [16, 32], "hidden": [256], "steps": 6000,
                "batch_size": 32},
        "glow": {"levels": 3, "steps": 2, "checker_steps": 2, "hidden": 32, "fit_steps": 1500,
                 "batch_size": 16},
        "iwae_samples": 16, "background_rate": 0.2, "boundary_shift": 0.1, "spike_std": 3.0,
        "spike_fraction": 0.01, "tile": 8, "smooth_sigma": 1.0, "feature_steps": 2000,
        "batch_sizes": [2, 3, 4, 5, 6, 8, 10], "ceiling_draws": 4000,
    },
    "full": {
        "dataset": "darcy-32", "seed": 0, "threads": None, "device": "cuda", "lr": 1e-3,
        "vae": {"latent_dim": 64, "channels": [32, 64], "hidden": [512], "steps": 10000,
                "batch_size": 64},
        "glow": {"levels": 3, "steps": 4, "checker_steps": 4, "hidden": 64, "fit_steps": 6000,
                 "batch_size": 64},
        "iwae_samples": 64, "background_rate": 0.2, "boundary_shift": 0.1, "spike_std": 3.0,
        "spike_fraction": 0.01, "tile": 8, "smooth_sigma": 1.0, "feature_steps": 5000,
        "batch_sizes": [2, 3, 4, 5, 6, 8, 10], "ceiling_draws": 4000,
    },
}  # fmt: skip


@dataclass
class Data:
    """Physical fields ``(N, 2, n, n)`` float64 of each split, the problem and the z-score."""

    train: Tensor
    valid: Tensor
    test: Tensor
    mean: Tensor  # (2,)
    scale: Tensor  # (2,)
    problem: Problem

    def normalized(self, x: Tensor) -> Tensor:
        """Physical fields → the z-scores the models see, float32."""
        return ((x - self.mean.reshape(1, -1, 1, 1)) / self.scale.reshape(1, -1, 1, 1)).float()


def load_data(dataset: str) -> Data:
    """A recipe's three splits (``physgen data make`` builds them once) in physical units."""
    recipe = load_recipe(dataset)
    files = make_dataset(recipe, progress=True)
    stats = load_stats(files["stats"])
    problem = load(recipe.problem, **recipe.params)
    names = list(problem.field_names)
    splits = []
    for split in ("train", "valid", "test"):
        ds = FieldDataset(files[split], names)
        splits.append(torch.stack([ds[i] for i in range(len(ds))]).double())
    mean = torch.tensor([stats[f].mean for f in names], dtype=torch.float64)
    scale = torch.tensor([stats[f].std for f in names], dtype=torch.float64)
    return Data(*splits, mean, scale, problem)


def anomaly_sets(data: Data, cfg: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
    """The in-distribution set (first half of the test split) and each anomaly set (built
    from the second half, or drawn anew for the out-of-regime types), physical units."""
    half = len(data.test) // 2
    normal, base = data.test[:half], data.test[half:]
    n = len(base)
    g = torch.Generator().manual_seed(cfg["seed"])
    u_std = float(data.scale[1])
    sets: dict[str, Tensor] = {}

    def with_u(u: Tensor) -> Tensor:
        out = base.clone()
        out[:, 1] = u
        return out

    sets["source"] = with_u(1.01 * base[:, 1])
    sets["boundary"] = with_u(base[:, 1] + cfg["boundary_shift"] * u_std)
    blurred = gaussian_filter(
        base[:, 1].numpy(), sigma=(0, cfg["smooth_sigma"], cfg["smooth_sigma"])
    )
    sets["smoothed"] = with_u(torch.from_numpy(blurred))
    n_grid = data.problem.params.n
    for key, params in (("length", {"tau": 6.0}), ("contrast", {"a_plus": 24.0})):
        sets[key] = regime_fields(data.problem, params, n, seed=1000 + len(sets))
    spikes = torch.rand(base[:, 1].shape, generator=g) < cfg["spike_fraction"]
    signs = torch.randint(0, 2, base[:, 1].shape, generator=g) * 2 - 1
    sets["spikes"] = with_u(base[:, 1] + spikes * signs * cfg["spike_std"] * u_std)
    u = base[:, 1].clone()
    t = cfg["tile"]
    corners = torch.randint(0, n_grid - t + 1, (n, 2), generator=g)
    for i, (r, c) in enumerate(corners.tolist()):
        u[i, r : r + t, c : c + t] = 0.0
    sets["tiles"] = with_u(u)
    return normal, sets


def _variant(problem: Problem, params: dict[str, float]) -> Problem:
    """``problem`` with ``params`` changed and every other parameter kept (grid size, contrast,
    forcing, ...), so a regime differs from the data's in ``params`` alone."""
    return load(problem.name, **{**asdict(problem.params), **params})


def regime_fields(problem: Problem, params: dict[str, float], n: int, seed: int) -> Tensor:
    """``n`` exact fields of ``problem`` with other ``params``, rounded to float32 as the
    stored splits are (so the residual floor is the same)."""
    other = _variant(problem, params)
    return other.to_tensor(other.generate(n, seed=seed)).float().double()


def validation_sets(data: Data) -> dict[str, Tensor]:
    """The sets batch sizes are chosen on, disjoint from every test set: the validation split
    (``valid``) and a fresh draw of the halved length scale (``valid length``, other seeds)."""
    length = regime_fields(data.problem, {"tau": 6.0}, len(data.valid), 2003)
    return {"valid": data.valid, "valid length": length}


def _train(
    model: GenerativeModel, x: Tensor, steps: int, batch_size: int, cfg: dict[str, Any]
) -> GenerativeModel:
    result = fit(
        model, x, steps=steps, batch_size=batch_size, lr=cfg["lr"], grad_clip=1.0,
        device=cfg["device"], seed=cfg["seed"], progress=False, nonfinite="skip",
    )  # fmt: skip
    # Scoring runs on the CPU in float64-friendly batches; the model comes back for it.
    return result.model.cpu().eval()


def train_detectors(data: Data, cfg: dict[str, Any]) -> tuple[dict[str, GenerativeModel], dict]:
    """The VAE, the Glow and the background Glow (trained on perturbed inputs), with times."""
    z = data.normalized(data.train)
    shape = tuple(z.shape[1:])
    times: dict[str, float] = {}
    models: dict[str, GenerativeModel] = {}
    vae_cfg = {k: v for k, v in cfg["vae"].items() if k not in ("steps", "batch_size")}
    glow_cfg = {k: v for k, v in cfg["glow"].items() if k not in ("fit_steps", "batch_size")}
    # Ren et al. (2019): the background model sees inputs whose entries are replaced, with
    # probability μ, by uniform values over each channel's training range.
    lo = z.amin(dim=(0, 2, 3)).reshape(-1, 1, 1)
    hi = z.amax(dim=(0, 2, 3)).reshape(-1, 1, 1)
    g = torch.Generator().manual_seed(cfg["seed"] + 1)
    perturbed = perturb(z, cfg["background_rate"], lo, hi, generator=g)
    glow = lambda: get_model_class("glow")(shape=list(shape), **glow_cfg)  # noqa: E731
    plan = (
        ("vae", lambda: get_model_class("vae")(shape, arch="conv", **vae_cfg), z, cfg["vae"]),
        ("glow", glow, z, cfg["glow"]),
        ("background", glow, perturbed, cfg["glow"]),
    )
    for name, make, x, own in plan:
        torch.manual_seed(cfg["seed"])
        start = time.perf_counter()
        steps = own.get("steps") if name == "vae" else own["fit_steps"]
        models[name] = _train(make(), x, steps, own["batch_size"], cfg)
        times[name] = time.perf_counter() - start
        print(f"trained {name} in {times[name]:.0f} s", flush=True)
    return models, times


def detector_scores(
    models: dict[str, GenerativeModel],
    encoder: FeatureEncoder,
    data: Data,
    sets: dict[str, Tensor],
    cfg: dict[str, Any],
) -> dict[str, dict[str, np.ndarray]]:
    """``{detector: {set: (N,) scores}}`` for the normal set (key ``normal``) and each anomaly;
    ``encoder`` is the data set's feature encoder (:func:`fit_feature_encoder`)."""
    # Feature-space detectors (Lee et al. 2018): Mahalanobis distance to a Gaussian fit of
    # the training fields' features: the VAE's posterior means, the data set's feature
    # encoder's codes, and the log power spectra of both fields.
    vae_codes = encoder_features(models["vae"])
    feature_codes = encoder_features(encoder.model)
    maps = {
        "vae latent Mahalanobis": lambda x: vae_codes(data.normalized(x)),
        "feature-encoder code Mahalanobis": lambda x: feature_codes(encoder.zscore(x)),
        # Every conv stage's pooled activations and the code (Lee et al. use all layers).
        "feature-encoder pooled Mahalanobis": lambda x: encoder.features(encoder.zscore(x)),
        "spectrum Mahalanobis": lambda x: spectrum_features(data.normalized(x), spatial_dims=2),
    }
    residual = lambda x: residual_score(data.problem, x)  # noqa: E731
    return learned_scores(models, data, sets, cfg, maps, residual)


def learned_scores(
    models: dict[str, GenerativeModel],
    data: Data,
    sets: dict[str, Tensor],
    cfg: dict[str, Any],
    maps: dict[str, Callable[[Tensor], Tensor]],
    residual: Callable[[Tensor], Tensor] | None,
) -> dict[str, dict[str, np.ndarray]]:
    """``{detector: {set: (N,) scores}}`` of every set in ``sets`` (physical fields): the
    ``residual`` baseline (row left out when ``None``: the fields state no residual), the
    VAE's and the Glows' scores (:func:`train_detectors`), and the Mahalanobis distance of
    each feature map in ``maps`` to a Gaussian fit of the training fields' features."""
    scale = (1.0 / data.scale).reshape(-1, 1, 1).expand(sets["normal"].shape[1:]).flatten()
    torch.manual_seed(cfg["seed"])
    glow_valid = model_scores(models["glow"], data.normalized(data.valid), data_scale=scale)["nll"]
    entropy = entropy_estimate(glow_valid)
    fits = {name: (f, MahalanobisFit(f(data.train))) for name, f in maps.items()}
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, fields in sets.items():
        z = data.normalized(fields)
        vae = model_scores(models["vae"], z, iwae_samples=cfg["iwae_samples"], data_scale=scale)
        glow = model_scores(models["glow"], z, data_scale=scale)["nll"]
        background = model_scores(models["background"], z, data_scale=scale)["nll"]
        # bits/dim are −log p/(D ln 2) + const, so −LLR ∝ nll_model − nll_background.
        llr = log_likelihood_ratio(-glow, -background)
        row = {
            **({} if residual is None else {"residual": residual(fields)}),
            "vae neg. ELBO": vae["neg_elbo"],
            "vae neg. IWAE": vae["neg_iwae"],
            "vae reconstruction": vae["reconstruction"],
            "glow NLL": glow,
            "glow typicality": typicality_statistic(glow, entropy),
            "glow likelihood ratio": -llr,
            **{name: fit(features(fields)) for name, (features, fit) in fits.items()},
        }
        for name, v in row.items():
            out.setdefault(name, {})[key] = v.numpy()
    return out


def detection_table(
    scores: dict[str, dict[str, np.ndarray]], anomalies: Anomalies = ANOMALIES
) -> dict[str, dict[str, Any]]:
    """AUROC ± SE of every detector on every anomaly type against the normal set."""
    result: dict[str, dict[str, Any]] = {}
    for detector, by_set in scores.items():
        result[detector] = {}
        for key, _, _ in anomalies:
            a = auroc(by_set["normal"], by_set[key])
            result[detector][key] = {"auroc": a.value, "se": a.se}
    return result


def batch_table(
    scores: dict[str, dict[str, np.ndarray]],
    sizes: list[int],
    anomalies: Anomalies = ANOMALIES,
    choose_on: str = "valid length",
) -> dict[str, dict[str, Any]]:
    """AUROC ± SE of batch detectors on every anomaly type, over batches of M fields, each
    M chosen on the validation sets (``valid`` vs ``choose_on``), never on a test set:
    the batch means of the Glow's NLL and of its likelihood ratio, and the typicality test's
    |mean NLL − Ĥ| (Nalisnick et al. 2019; Ĥ the mean NLL of the validation split)."""
    entropy = float(np.mean(scores["glow NLL"]["valid"]))
    plan = (
        ("glow NLL", "glow NLL", lambda s: s),
        ("glow likelihood ratio", "glow likelihood ratio", lambda s: s),
        ("glow typicality", "glow NLL", lambda s: np.abs(s - entropy)),
    )
    result: dict[str, dict[str, Any]] = {}
    for name, source, read in plan:
        by_set = scores[source]

        def batch(key: str, m: int, by_set=by_set, read=read) -> np.ndarray:
            return read(batch_means(by_set[key], m))

        # The choice sees the validation scores only (read as the row reads them).
        m = sizes[-1]
        for size in sizes:
            if auroc(batch("valid", size), batch(choose_on, size)).value >= 0.95:
                m = size
                break
        valid = auroc(batch("valid", m), batch(choose_on, m)).value
        row: dict[str, Any] = {"batch_size": m, "valid_auroc": valid}
        for key, _, _ in anomalies:
            a = auroc(batch("normal", m), batch(key, m))
            row[key] = {"auroc": a.value, "se": a.se}
        result[f"{name}, batches of {m}"] = row
    return result


def scale_free_log_ratio(eta: np.ndarray, var_null: np.ndarray, var_alt: np.ndarray) -> np.ndarray:
    r"""Log-likelihood ratio of the direction :math:`\eta/|\eta|` of zero-mean Gaussian
    vectors with independent coordinates of variances ``var_alt`` against ``var_null``.

    The direction of :math:`\eta \sim \mathcal N(0, \Sigma)` has the angular central
    Gaussian density :math:`p(v) \propto |\Sigma|^{-1/2} (v^\top\Sigma^{-1}v)^{-D/2}`
    (Tyler 1987, Biometrika 74), so with diagonal :math:`\Sigma`

    .. math:: \log\frac{p_1(v)}{p_0(v)} = \tfrac12\sum_k\log\frac{\sigma_{0k}^2}
              {\sigma_{1k}^2} - \frac D2\log\frac{\sum_k \eta_k^2/\sigma_{1k}^2}
              {\sum_k \eta_k^2/\sigma_{0k}^2},

    unchanged when :math:`\eta` is rescaled. ``eta`` is ``(N, D)``; returns ``(N,)``.
    """
    v0, v1 = np.asarray(var_null, dtype=np.float64), np.asarray(var_alt, dtype=np.float64)
    e2 = np.asarray(eta, dtype=np.float64) ** 2
    d = e2.shape[1]
    return 0.5 * np.log(v0 / v1).sum() - 0.5 * d * np.log((e2 / v1).sum(1) / (e2 / v0).sum(1))


def length_ceiling(data: Data, params: dict[str, float], draws: int, seed: int) -> dict:
    """Monte Carlo AUROC of the best possible per-field detector of the regime ``params``.

    The Darcy permeability is the sign of ψ = DCT⁻¹(c ⊙ ξ), ξ white: a and u are functions
    of the direction of the coefficients η = c ⊙ ξ, so the exact likelihood ratio of that
    direction (:func:`scale_free_log_ratio`) has the highest AUROC any score of the fields
    can reach (Neyman–Pearson). ``draws`` coefficient vectors per regime."""
    spectra = [_variant(data.problem, p)._spectrum.ravel() for p in ({}, params)]
    keep = spectra[0] > 0
    var0, var1 = spectra[0][keep] ** 2, spectra[1][keep] ** 2
    rng = np.random.default_rng(seed)
    normal = np.sqrt(var0) * rng.standard_normal((draws, keep.sum()))
    other = np.sqrt(var1) * rng.standard_normal((draws, keep.sum()))
    a = auroc(scale_free_log_ratio(normal, var0, var1), scale_free_log_ratio(other, var0, var1))
    return {"auroc": a.value, "se": a.se, "draws": draws}


def _cell(cell: dict[str, Any]) -> str:
    """``AUROC ± SE``, with the batch size where the cell holds one."""
    text = f"{cell['auroc']:.3f} ± {cell['se']:.3f}"
    return text + (f" (M = {cell['batch_size']})" if "batch_size" in cell else "")


def markdown(table: dict[str, dict[str, Any]], columns: Anomalies = ANOMALIES) -> str:
    """The AUROC table: one row per detector, one column per anomaly type (``n/a`` where a
    detector has no score for the column)."""
    head = "| detector | " + " | ".join(f"{k} ({g})" for k, g, _ in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for detector, row in table.items():
        cells = [_cell(row[k]) if k in row else "n/a" for k, _, _ in columns]
        lines.append(f"| {detector} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write(out: Path, result: dict[str, Any], table: str) -> None:
    """``results.json`` and the markdown table ``results.md`` under ``out``, atomically."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, out / "results.json")
    with atomic_output(out / "results.md") as tmp:
        tmp.write_text(table + "\n", encoding="utf-8")


def run_study(cfg: dict[str, Any], out: Path, data: Data | None = None) -> dict[str, Any]:
    """Build the sets, train the detectors, score and tabulate; write results.json/.md.

    ``data`` replaces the configuration's dataset (tests pass small in-memory fields).
    """
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    start = time.perf_counter()
    data = load_data(cfg["dataset"]) if data is None else data
    normal, sets = anomaly_sets(data, cfg)
    models, train_s = train_detectors(data, cfg)
    begin = time.perf_counter()
    encoder = fit_feature_encoder(
        data.train, list(data.problem.field_names), seed=cfg["seed"], steps=cfg["feature_steps"]
    )
    train_s["feature encoder"] = time.perf_counter() - begin
    sets_all = {"normal": normal, **sets, **validation_sets(data)}
    scores = detector_scores(models, encoder, data, sets_all, cfg)
    table = detection_table(scores)
    batches = batch_table(scores, cfg["batch_sizes"])
    ceiling = length_ceiling(data, {"tau": 6.0}, cfg["ceiling_draws"], cfg["seed"])
    result = {
        "config": cfg,
        "n_normal": len(normal),
        "n_anomalous": {k: len(v) for k, v in sets.items()},
        "anomalies": {k: {"group": g, "description": d} for k, g, d in ANOMALIES},
        "auroc": table,
        "batch_auroc": batches,
        "length_ceiling": ceiling,
        "train_s": train_s,
        "total_s": time.perf_counter() - start,
    }
    _write(out, result, markdown({**table, **batches}))
    return result


# The flow benchmark: another Reynolds number, on single snapshots and on two-frame pairs.
FLOW_ANOMALIES: Anomalies = (("reynolds", "regime", "Re = 200 instead of 100 (ν halved)"),)
FLOW_FIELDS: Anomalies = (
    ("snapshot", "ω(t)", "one vorticity frame"),
    ("pair", "ω(t), ω(t + Δt)", "two frames Δt = 1/16 apart, as two channels"),
)

# Both configurations read the same data and sets; they differ in the nets and the training.
_FLOW_SETS: dict[str, Any] = {
    "dataset": "kolmogorov-32", "regime": {"reynolds": 200.0}, "seed": 0,
    "fields": ["snapshot", "pair"], "background_rate": 0.2,
    "batch_sizes": [2, 3, 4, 5, 6, 8, 10],
}  # fmt: skip
FLOW_CONFIGS: dict[str, dict[str, Any]] = {
    "quick": {
        **_FLOW_SETS, "threads": 1, "device": "cpu", "lr": 2e-3, "iwae_samples": 16,
        "vae": {"latent_dim": 16, "channels": [16, 32], "hidden": [128], "steps": 2000,
                "batch_size": 32},
        "glow": {"levels": 3, "steps": 2, "checker_steps": 2, "hidden": 32, "fit_steps": 1000,
                 "batch_size": 16},
    },
    "full": {
        **_FLOW_SETS, "threads": None, "device": "cuda", "lr": 1e-3, "iwae_samples": 64,
        "vae": {"latent_dim": 32, "channels": [32, 64], "hidden": [512], "steps": 10000,
                "batch_size": 64},
        "glow": {"levels": 3, "steps": 4, "checker_steps": 4, "hidden": 64, "fit_steps": 6000,
                 "batch_size": 64},
    },
}  # fmt: skip


@dataclass
class FlowData:
    """Trajectories ``(N, 1, 2, n, n)`` float64 (frames ``t``, ``t + Δt`` of the vorticity) of
    the nominal splits and of the other regime (``regime``: test set, ``regime_valid``:
    validation set, other seeds), and the nominal problem."""

    train: Tensor
    valid: Tensor
    test: Tensor
    regime: Tensor
    regime_valid: Tensor
    problem: Problem


def load_flow(cfg: dict[str, Any]) -> FlowData:
    """The recipe's splits (generated once, cached) and fresh exact trajectories of the other
    regime, as many as the test and validation splits, float32-rounded like the splits."""
    data = load_data(cfg["dataset"])
    # The files' frames arrive as channels (N, T, n, n); the problem's layout is (N, 1, T, n, n).
    train, valid, test = (x.unsqueeze(1) for x in (data.train, data.valid, data.test))
    regime = [
        regime_fields(data.problem, cfg["regime"], len(x), seed)
        for x, seed in ((test, 1001), (valid, 2001))
    ]
    return FlowData(train, valid, test, *regime, data.problem)


def flow_fields(trajectories: Tensor, kind: str) -> Tensor:
    """What a detector sees: ``snapshot`` — the first frame ``(N, 1, n, n)``; ``pair`` — both
    frames as two channels ``(N, 2, n, n)``."""
    if trajectories.ndim != 5 or trajectories.shape[1] != 1 or trajectories.shape[2] < 2:
        raise ValueError(
            f"trajectories must be (N, 1, T >= 2, n, n), got {tuple(trajectories.shape)}"
        )
    if kind == "snapshot":
        return trajectories[:, :, 0]
    if kind == "pair":
        return trajectories[:, 0, :2]
    raise ValueError(f"field kind must be 'snapshot' or 'pair', got {kind!r}")


def flow_data(flow: FlowData, kind: str) -> Data:
    """The splits as ``kind`` fields, z-scored per channel with the training split's moments."""
    train, valid, test = (flow_fields(x, kind) for x in (flow.train, flow.valid, flow.test))
    dims = (0, 2, 3)
    return Data(train, valid, test, train.mean(dims), train.std(dims), flow.problem)


def pair_residual(problem: Problem) -> Callable[[Tensor], Tensor]:
    """The physics baseline of a pair ``(N, 2, n, n)``: the relative one-step defect
    ‖ω(t + Δt) − S_Δt ω(t)‖ / ‖ω(t + Δt) − ω(t)‖ under the nominal problem's own solver."""
    return lambda pairs: residual_score(problem, pairs[:, None])


def flow_scores(
    flow: FlowData, kind: str, cfg: dict[str, Any]
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """Train the detectors on ``kind`` fields of the nominal regime and score the test set
    (``normal``), the other regime (``reynolds``) and the two validation sets."""
    data = flow_data(flow, kind)
    sets = {
        "normal": data.test,
        "reynolds": flow_fields(flow.regime, kind),
        "valid": data.valid,
        "valid reynolds": flow_fields(flow.regime_valid, kind),
    }
    models, train_s = train_detectors(data, cfg)
    vae_codes = encoder_features(models["vae"])
    maps = {
        "vae latent Mahalanobis": lambda x: vae_codes(data.normalized(x)),
        "spectrum Mahalanobis": lambda x: spectrum_features(data.normalized(x), spatial_dims=2),
    }
    # A snapshot states no residual: the one-step defect needs the next frame.
    residual = pair_residual(data.problem) if kind == "pair" else None
    return learned_scores(models, data, sets, cfg, maps, residual), train_s


def flow_table(per_kind: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """``{detector: {kind: cell}}`` from ``{kind: {detector: {"reynolds": cell}}}``, the
    residual first; batch rows are keyed by detector alone (their M goes into the cell)."""
    table: dict[str, dict[str, Any]] = {}
    for kind, rows in per_kind.items():
        for detector, row in rows.items():
            name = detector.split(", batches of")[0]
            name = f"{name}, batch mean" if "batch_size" in row else name
            cell = dict(row["reynolds"])
            if "batch_size" in row:
                cell.update(batch_size=row["batch_size"], valid_auroc=row["valid_auroc"])
            table.setdefault(name, {})[kind] = cell
    # The physics baseline leads, as in the Darcy table (only some kinds state it).
    return dict(sorted(table.items(), key=lambda item: item[0] != "residual"))


def run_flow(cfg: dict[str, Any], out: Path, flow: FlowData | None = None) -> dict[str, Any]:
    """The flow benchmark: per field kind, train, score, tabulate; write results.json/.md.

    ``flow`` replaces the configuration's dataset (tests pass small in-memory trajectories).
    """
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    start = time.perf_counter()
    flow = load_flow(cfg) if flow is None else flow
    data_s = time.perf_counter() - start
    # The control and the signal: the nominal one-step defect of each set's pairs.
    defect = pair_residual(flow.problem)
    defects = {k: defect(flow_fields(x, "pair")).numpy()
             for k, x in (("normal", flow.test), ("reynolds", flow.regime))}  # fmt: skip
    per_kind: dict[str, dict[str, dict[str, Any]]] = {}
    train_s: dict[str, dict[str, float]] = {}
    for kind in cfg["fields"]:
        scores, train_s[kind] = flow_scores(flow, kind, cfg)
        table = detection_table(scores, FLOW_ANOMALIES)
        batches = batch_table(scores, cfg["batch_sizes"], FLOW_ANOMALIES, "valid reynolds")
        per_kind[kind] = {**table, **batches}
    table = flow_table(per_kind)
    result = {
        "config": cfg,
        "n_normal": len(flow.test),
        "n_anomalous": {"reynolds": len(flow.regime)},
        "defect": {
            k: {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}
            for k, v in defects.items()
        },
        "auroc": table,
        "data_s": data_s,
        "train_s": train_s,
        "total_s": time.perf_counter() - start,
    }
    _write(out, result, markdown(table, FLOW_FIELDS))
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the AUROC table."""
    parser = argparse.ArgumentParser(prog="physgen run anomaly", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CPU configuration (minutes)")
    parser.add_argument(
        "--benchmark", choices=("darcy", "flow"), default="darcy",
        help="darcy: the Darcy anomaly types; flow: Kolmogorov flow at another Reynolds number",
    )  # fmt: skip
    parser.add_argument("--device", help="override the configuration's training device")
    parser.add_argument("--out", type=Path, help="output folder")
    args = parser.parse_args(argv)
    configs = FLOW_CONFIGS if args.benchmark == "flow" else CONFIGS
    cfg = json.loads(json.dumps(configs["quick" if args.quick else "full"]))
    if args.device:
        cfg["device"] = args.device
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        parser.error("the full configuration trains on a GPU; use --quick (or --device cpu)")
    name = "anomaly" if args.benchmark == "darcy" else "anomaly-flow"
    out = args.out or runs_root() / (f"{name}-quick" if args.quick else name)
    if args.benchmark == "flow":
        result = run_flow(cfg, out)
        print("\n" + markdown(result["auroc"], FLOW_FIELDS))
        for key, d in result["defect"].items():
            print(f"nominal one-step defect of the {key} pairs: median {d['median']:.2e}")
    else:
        result = run_study(cfg, out)
        print("\n" + markdown({**result["auroc"], **result["batch_auroc"]}))
        c = result["length_ceiling"]
        print(f"best per-field AUROC on length (Monte Carlo): {c['auroc']:.3f} ± {c['se']:.3f}")
    print(f"total {result['total_s']:.0f} s; wrote {out / 'results.md'} and results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
