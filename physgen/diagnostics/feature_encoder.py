r"""The feature encoder of a data set: trained on its reference split, stored beside it.

``physgen data make RECIPE --feature-encoder`` trains a conv autoencoder on the z-scored
training split and saves it as ``feature_encoder.pt`` next to the split files: a normal
physgen checkpoint (tensors and plain data only) with the field order and the per-field
mean and std it was trained on. ``physgen evaluate`` finds it beside the reference file (or
takes ``--feature-encoder PATH``) and reports the Fréchet distance of the two sets' features
(:func:`physgen.diagnostics.feature_distance`) beside its floor, the idea of FID (Heusel et
al. 2017, arXiv:1706.08500) with an encoder of the data's own physics instead of ImageNet's.

The features, as FID's pooled Inception activations, are read at every scale of the encoder:
the grid average of each convolution stage's activations (one value per channel: local
texture, noise, smoothness) and the code (the large-scale content),

.. math:: \phi(x) = \bigl(\overline{h_1(x)}, \dots, \overline{h_L(x)}, z(x)\bigr),

each dimension standardized by its mean and std over the training split (stored with the
encoder), so that every feature counts in units of its own spread in the data.

A field with a time axis is encoded with its frames stacked as channels, so the encoder
reads ``(C·T, *grid)``.

Beside the Fréchet distance, ``evaluate`` reports the KID of the same features
(:func:`physgen.diagnostics.feature_kid`: unbiased, so its floor sits at 0 and its spread is
not inflated by covariance bias) and, when the reference names its problem, the KID of the
*physics features* (:meth:`FeatureEncoder.physics_features`): the encoder's features and the
log relative PDE residual of each field, standardized over the reference set. Only the
latter sees a field that breaks its equation by 1 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from physgen.diagnostics.features import FeatureMap, feature_distance, log_residual_feature
from physgen.models.autoencoder import Autoencoder

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "ENCODER_FILE",
    "ENCODER_KIND",
    "FeatureEncoder",
    "feature_distance_entry",
    "find_feature_encoder",
    "fit_feature_encoder",
    "load_feature_encoder",
    "pooled_features",
    "train_feature_encoder",
]

ENCODER_FILE = "feature_encoder.pt"
ENCODER_KIND = "physgen-feature-encoder/1"

# A small conv autoencoder: seconds to minutes on a CPU for the shipped 2-D recipes.
DEFAULTS: dict[str, Any] = {
    "latent_dim": 32,
    "channels": [16, 32],
    "hidden": [256],
    "steps": 2000,
    "batch_size": 64,
    "lr": 2e-3,
    "max_samples": 20000,
}


@dataclass
class FeatureEncoder:
    """A trained encoder, the fields it reads (in order) and their z-score."""

    model: Autoencoder
    fields: list[str]
    mean: Tensor  # (C,) float64, per field
    std: Tensor  # (C,) float64
    path: Path | None = None
    feature_mean: Tensor | None = None  # (D,) float64, of φ over the training split
    feature_std: Tensor | None = None

    def features(self, z: Tensor, batch_size: int = 256) -> Tensor:
        """φ of the encoder's inputs ``z`` (:meth:`zscore`): ``(N, D)`` float64, standardized
        with the training split's feature mean and std."""
        raw = pooled_features(self.model, z, batch_size)
        if self.feature_mean is None or self.feature_std is None:
            return raw
        return (raw - self.feature_mean) / self.feature_std

    def zscore(self, x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Fields ``(N, C, [T], *grid)`` in physical units → the encoder's input (float32, or
        ``dtype``: float64 keeps the fields recoverable exactly, :meth:`physical`)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        z = (x - self.mean.reshape(shape)) / self.std.reshape(shape)
        want = tuple(self.model.sample_shape)
        z = z.reshape(len(z), -1, *z.shape[z.ndim - (len(want) - 1) :])  # frames as channels
        if tuple(z.shape[1:]) != want:
            raise ValueError(
                f"fields {self.fields} give samples of shape {tuple(z.shape[1:])}; the "
                f"feature encoder{f' {self.path}' if self.path else ''} reads {want}"
            )
        return z.to(dtype)

    def physical(self, z: Tensor) -> Tensor:
        """The inverse of :meth:`zscore` for fields without a time axis: physical units,
        float64 ``(N, C, *grid)``."""
        z = torch.as_tensor(z, dtype=torch.float64)
        if z.shape[1] != len(self.fields):
            raise ValueError(f"{z.shape[1]} channels are not the fields {self.fields}")
        shape = (1, -1) + (1,) * (z.ndim - 2)
        return z * self.std.reshape(shape) + self.mean.reshape(shape)

    def physics_features(self, problem: Any, ref: Tensor) -> FeatureMap:
        r"""φ(z) of :meth:`features` with one more feature: the log relative RMS PDE residual
        of the field (:func:`physgen.diagnostics.log_residual_feature`) under ``problem``,
        standardized by its mean and std over ``ref`` (encoder inputs, float64 for exact
        physical values). The encoder's fields must be the problem's, in order."""
        if list(problem.field_names) != self.fields:
            raise ValueError(
                f"problem {problem.name!r} reads fields {list(problem.field_names)}; the "
                f"feature encoder reads {self.fields}"
            )

        def residual(z: Tensor) -> Tensor:
            return log_residual_feature(problem, self.physical(z))

        r = residual(ref)
        mean, std = r.mean(0), r.std(0).clamp_min(1e-12)
        return lambda z: torch.cat([self.features(z), (residual(z) - mean) / std], 1)

    def stack(
        self, ds: xr.Dataset, limit: int, where: Path | str, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """The encoder's fields of ``ds`` (at most ``limit`` samples) as its input."""
        missing = [f for f in self.fields if f not in ds.data_vars]
        if missing:
            raise KeyError(
                f"{where}: the feature encoder reads fields {self.fields}; missing {missing}"
            )
        try:
            return self.zscore(_arrays(ds, self.fields, limit), dtype)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None


def pooled_features(model: Autoencoder, z: Tensor, batch_size: int = 256) -> Tensor:
    """The grid average of every convolution stage's activations of a conv autoencoder's
    encoder, then its code: ``(N, Σ channels + latent_dim)`` float64, without gradients."""
    stages = getattr(model.encoder, "features", None)
    if not isinstance(stages, torch.nn.Sequential):
        raise TypeError(f"{type(model).__name__}: the feature encoder needs arch='conv'")
    like = next(model.parameters())
    parts = []
    with torch.no_grad():
        for i in range(0, len(z), batch_size):
            h = torch.as_tensor(z[i : i + batch_size]).to(like)
            pooled = []
            for layer in stages:
                h = layer(h)
                if not isinstance(layer, torch.nn.modules.conv._ConvNd):  # after each activation
                    pooled.append(h.flatten(2).mean(2))
            code = model.encoder.head(h.flatten(1))
            parts.append(torch.cat([*pooled, code], 1).double().cpu())
    return torch.cat(parts)


def _arrays(ds: xr.Dataset, fields: list[str], limit: int) -> Tensor:
    """The first ``limit`` samples of ``fields`` stacked as channels, float64."""
    return torch.from_numpy(
        np.stack([np.asarray(ds[f].values[:limit], dtype=np.float64) for f in fields], axis=1)
    )


def fit_feature_encoder(
    x: Tensor,
    fields: list[str],
    *,
    grid_dims: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    **options: Any,
) -> FeatureEncoder:
    """Train the feature encoder on fields ``x`` ``(N, C, [T], *grid)`` in physical units.

    ``grid_dims`` counts the grid axes (default: every axis after the channels); an axis
    between the channels and the grid (time) is stacked into the channels.
    Each field is z-scored with its own mean and std over ``x``; the encoder is an
    :class:`~physgen.models.autoencoder.Autoencoder` (``arch="conv"``) with the
    :data:`DEFAULTS` unless ``options`` overrides them (``max_samples`` is the caller's).
    """
    from physgen.training import fit

    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unknown feature-encoder options {unknown}; known: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **options}
    x = torch.as_tensor(x, dtype=torch.float64)
    if len(x) < 2 or x.ndim < 3:
        raise ValueError(f"a feature encoder needs fields (N ≥ 2, C, *grid), got {tuple(x.shape)}")
    dims = (0, *range(2, x.ndim))
    mean, std = x.mean(dims), x.std(dims).clamp_min(1e-12)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    z = ((x - mean.reshape(shape)) / std.reshape(shape)).float()
    grid_dims = x.ndim - 2 if grid_dims is None else grid_dims
    z = z.reshape(len(z), -1, *z.shape[z.ndim - grid_dims :])
    torch.manual_seed(seed)
    model = Autoencoder(
        tuple(z.shape[1:]),
        latent_dim=cfg["latent_dim"],
        arch="conv",
        channels=cfg["channels"],
        hidden=cfg["hidden"],
    )
    result = fit(
        model, z, steps=cfg["steps"], batch_size=min(cfg["batch_size"], len(z)), lr=cfg["lr"],
        grad_clip=1.0, device=device, seed=seed, progress=progress,
    )  # fmt: skip
    encoder = FeatureEncoder(result.model.cpu().eval(), list(fields), mean, std)
    phi = pooled_features(encoder.model, z)
    encoder.feature_mean, encoder.feature_std = phi.mean(0), phi.std(0).clamp_min(1e-12)
    return encoder


def train_feature_encoder(
    train_path: Path,
    out: Path,
    *,
    fields: list[str] | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    **options: Any,
) -> Path:
    """Train the feature encoder on the fields of ``train_path`` (:func:`fit_feature_encoder`)
    and save it to ``out`` as a checkpoint with its fields and z-score. Returns ``out``."""
    from physgen.data import field_names, open_fields
    from physgen.training.checkpoint import model_entries, save_checkpoint

    limit = options.pop("max_samples", DEFAULTS["max_samples"])
    with open_fields(train_path) as ds:
        names = fields or field_names(ds)
        x = _arrays(ds, names, limit)  # (N, C, [T], *grid)
        grid_dims = sum(d not in ("sample", "time") for d in ds[names[0]].dims)
    try:
        encoder = fit_feature_encoder(
            x, names, grid_dims=grid_dims, seed=seed, device=device, progress=progress, **options
        )
    except ValueError as err:
        raise ValueError(f"{train_path}: {err}") from None
    contents = {
        **model_entries(encoder.model),
        "kind": ENCODER_KIND,
        "fields": list(names),
        "field_mean": encoder.mean,
        "field_std": encoder.std,
        "feature_mean": encoder.feature_mean,
        "feature_std": encoder.feature_std,
        "train_file": Path(train_path).name,
        "train_samples": len(x),
        "settings": {**DEFAULTS, **options, "max_samples": limit, "seed": seed},
    }
    return save_checkpoint(out, contents)


def load_feature_encoder(path: Path) -> FeatureEncoder:
    """Read a feature encoder written by :func:`train_feature_encoder` (a checkpoint)."""
    from physgen.training.checkpoint import build_model, read_checkpoint

    contents = read_checkpoint(path)
    if contents.get("kind") != ENCODER_KIND:
        raise ValueError(
            f"{path}: not a feature encoder (kind {contents.get('kind')!r}, expected "
            f"{ENCODER_KIND!r}); make one with 'physgen data make RECIPE --feature-encoder'"
        )
    model = build_model(contents)
    if not isinstance(model, Autoencoder):
        raise ValueError(f"{path}: a feature encoder holds an autoencoder, not {type(model)}")
    mean = contents["field_mean"].double()
    std = contents["field_std"].double()
    if "feature_mean" not in contents:
        raise ValueError(f"{path}: no feature statistics; make the encoder again")
    return FeatureEncoder(
        model, list(contents["fields"]), mean, std, Path(path),
        contents["feature_mean"].double(), contents["feature_std"].double(),
    )  # fmt: skip


def find_feature_encoder(ref_path: Path) -> Path | None:
    """The feature encoder stored beside a reference file, or None."""
    candidate = Path(ref_path).parent / ENCODER_FILE
    return candidate if candidate.is_file() else None


def feature_distance_entry(
    encoder_path: Path | None,
    gen_ds: xr.Dataset,
    ref_ds: xr.Dataset,
    paths: tuple[Path, Path],
    *,
    max_samples: int,
    splits: int,
    seed: int,
    problem: Any = None,
) -> dict[str, Any] | None:
    """``evaluate``'s entry: the Fréchet feature distance beside its floor (top-level keys),
    the features' KID (``kid``) and, given the ``problem`` of the fields, the physics
    features' Fréchet distance (``physics_frechet``) and KID (``physics_kid``), each beside
    its floor; a note saying why it was skipped, or None when no encoder is given or found
    beside the reference."""
    path = encoder_path or find_feature_encoder(paths[1])
    if path is None:
        return None
    encoder = load_feature_encoder(path)
    lacking = [f for f in encoder.fields if f not in gen_ds.data_vars]
    if lacking:
        return {"encoder": str(path), "skipped": f"the samples lack fields {lacking}"}
    # float64 inputs: the residual of the physics features needs the exact physical fields.
    gen = encoder.stack(gen_ds, max_samples, paths[0], torch.float64)
    ref = encoder.stack(ref_ds, 2 * max_samples, paths[1], torch.float64)
    options = {"num_splits": splits, "seed": seed}
    result = feature_distance(encoder.features, gen.float(), ref.float(), **options)
    entry = {"encoder": str(path), "fields": encoder.fields, **result}
    entry["kid"] = feature_distance(encoder.features, gen, ref, metric="kid", **options)
    if problem is not None:
        try:
            physics = encoder.physics_features(problem, ref)
        except (ValueError, NotImplementedError) as err:
            entry["physics_frechet"] = entry["physics_kid"] = {"skipped": str(err)}
        else:
            entry["physics_frechet"] = feature_distance(physics, gen, ref, **options)
            entry["physics_kid"] = feature_distance(physics, gen, ref, metric="kid", **options)
    return entry
