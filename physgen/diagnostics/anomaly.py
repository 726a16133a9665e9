r"""Per-sample anomaly scores from trained generative models, and the PDE residual baseline.

Every score here is oriented one way: **higher means more anomalous**, so any of them can go
straight into :func:`physgen.diagnostics.auroc`. Which scores a model offers follows from its
family (:func:`available_scores`):

* density models (flows, CNF and flow matching through their ODE, diffusion through the
  probability-flow ODE): ``nll``, the negative log-likelihood in bits/dim;
* VAEs: ``neg_elbo`` and ``neg_iwae`` (upper bounds on the NLL, in bits/dim) and
  ``reconstruction``, the mean squared error of the decoded posterior mean;
* autoencoders: ``reconstruction``;
* energy-based models: ``energy`` :math:`E_\theta(x)` (an NLL up to the unknown
  :math:`\log Z`).

Raw likelihoods famously rank some out-of-distribution data *above* the training data
(Nalisnick et al. 2019, "Do deep generative models know what they don't know?"). Two remedies:
the likelihood ratio to a background model trained on perturbed inputs
(:func:`log_likelihood_ratio`, :func:`perturb`; Ren et al. 2019) and the typicality test
(:func:`typicality_statistic`, :func:`typicality_threshold`; Nalisnick et al. 2019).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from physgen.metrics import bits_per_dim, residual_rms
from physgen.metrics._common import ArrayLike, as_float64
from physgen.metrics.physics import HasResidual
from physgen.models.autoencoder import Autoencoder
from physgen.models.base import DensityModel, GenerativeModel
from physgen.models.ebm import EBM
from physgen.models.vae import LatentGaussianModel

__all__ = [
    "SCORES",
    "available_scores",
    "entropy_estimate",
    "log_likelihood_ratio",
    "model_scores",
    "perturb",
    "reconstruction_error",
    "residual_score",
    "typicality_statistic",
    "typicality_threshold",
]

SCORES = ("nll", "neg_elbo", "neg_iwae", "reconstruction", "energy")


def available_scores(model: GenerativeModel) -> tuple[str, ...]:
    """The scores :func:`model_scores` can compute for ``model``'s family (may be empty)."""
    if isinstance(model, EBM):
        return ("energy",)
    if isinstance(model, LatentGaussianModel):
        return ("neg_elbo", "neg_iwae", "reconstruction")
    if isinstance(model, Autoencoder):
        return ("reconstruction",)
    if isinstance(model, DensityModel):
        return ("nll",)
    return ()


def reconstruction_error(model: GenerativeModel, x: Tensor, cond: Tensor | None = None) -> Tensor:
    """Mean squared error per sample of the reconstruction, shape ``(B,)``.

    An autoencoder decodes its code; a VAE decodes its posterior mean :math:`\\mu(x)`
    (deterministic, so a score needs no sampling).
    """
    if isinstance(model, LatentGaussianModel):
        mu, _ = model.encode(x, cond)
        recon = model.decode(mu, cond)
    elif isinstance(model, Autoencoder):
        recon = model(x)
    else:
        raise TypeError(f"{type(model).__name__} has no encoder to reconstruct with")
    return (recon - x).double().pow(2).flatten(1).mean(1)


def _batches(x: Tensor, cond: Tensor | None, batch_size: int):
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size], None if cond is None else cond[i : i + batch_size]


def model_scores(
    model: GenerativeModel,
    x: Tensor,
    cond: Tensor | None = None,
    *,
    scores: Sequence[str] | None = None,
    data_scale: ArrayLike | None = None,
    iwae_samples: int = 64,
    batch_size: int = 256,
    log_prob_options: dict[str, Any] | None = None,
) -> dict[str, Tensor]:
    r"""Per-sample anomaly scores of ``x`` ``(B, *sample_shape)`` under a trained ``model``.

    Args:
        model: a trained model (put it in ``eval()`` mode first).
        x: inputs in the model's own (normalized) coordinates.
        cond: conditions for conditional families.
        scores: names from :data:`SCORES` (default: every score of the family,
            :func:`available_scores`; a name the family lacks is refused).
        data_scale: the scale :math:`s` the data were multiplied by before the model (e.g.
            1/std of a z-score, a scalar or one value per dimension), so ``nll``, ``neg_elbo``
            and ``neg_iwae`` are bits/dim of the data in physical units
            (:func:`physgen.metrics.bits_per_dim`); None keeps the model's coordinates.
        iwae_samples: importance samples :math:`K` of the IWAE bound (Burda et al. 2016).
        batch_size: samples per model call.
        log_prob_options: keyword arguments of the model's ``log_prob`` (e.g. ``trace``).

    Returns:
        ``{name: (B,) float64}``, higher = more anomalous. The ELBO and IWAE bounds draw
        from torch's global generator: seed it for repeatable values.
    """
    offered = available_scores(model)
    names = tuple(scores) if scores is not None else offered
    if not offered:
        raise TypeError(f"{type(model).__name__} offers no anomaly score (no density, no encoder)")
    unknown = [s for s in names if s not in offered]
    if unknown:
        raise ValueError(
            f"scores {unknown} are not available for {type(model).__name__}; it offers {offered}"
        )
    dims = x[0].numel()
    options = log_prob_options or {}
    out: dict[str, list[Tensor]] = {s: [] for s in names}
    for xb, cb in _batches(x, cond, batch_size):
        with torch.no_grad():
            for s in names:
                if s == "nll":
                    # ODE families need autograd for their divergence; they enable it inside.
                    value = bits_per_dim(
                        model.log_prob(xb, cb, **options), dims, data_scale=data_scale
                    )
                elif s == "neg_elbo":
                    value = bits_per_dim(model.elbo(xb, cb), dims, data_scale=data_scale)
                elif s == "neg_iwae":
                    value = bits_per_dim(
                        model.iwae(xb, cb, k=iwae_samples), dims, data_scale=data_scale
                    )
                elif s == "reconstruction":
                    value = reconstruction_error(model, xb, cb)
                else:  # energy
                    value = model.energy(xb)
                out[s].append(value.detach().double().cpu())
    return {s: torch.cat(v) for s, v in out.items()}


def residual_score(problem: HasResidual, fields: ArrayLike, *, relative: bool = True) -> Tensor:
    """The physics baseline: the per-sample RMS of the PDE residual of physical ``fields``.

    ``relative=True`` divides by the problem's ``residual_scale`` (:func:`residual_rms`). It
    needs no trained model and flags exactly what violates the discrete equation.
    """
    return residual_rms(problem, fields, relative=relative)


def log_likelihood_ratio(log_p_model: ArrayLike, log_p_background: ArrayLike) -> Tensor:
    r"""Ren et al. (2019)'s likelihood ratio :math:`\mathrm{LLR}(x) = \log p_\theta(x) -
    \log p_{\theta_0}(x)`, float64.

    :math:`p_{\theta_0}` is a background model trained on inputs perturbed by :func:`perturb`:
    it learns the population-level statistics (smoothness, value range) that dominate the raw
    likelihood, so the ratio keeps the semantic part. A low LLR marks OOD data; the anomaly
    score is :math:`-\mathrm{LLR}`.
    """
    a = as_float64(log_p_model, name="log_p_model")
    b = as_float64(log_p_background, name="log_p_background")
    if a.shape != b.shape:
        raise ValueError(f"log_p_model {tuple(a.shape)} and log_p_background {tuple(b.shape)}")
    return a - b


def perturb(
    x: Tensor,
    rate: float,
    low: ArrayLike,
    high: ArrayLike,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Ren et al. (2019)'s background-training corruption: each entry of ``x`` is replaced,
    independently with probability ``rate`` (their :math:`\mu`, 0.1–0.2 for images), by a
    draw from :math:`U(\text{low}, \text{high})`.

    ``low`` and ``high`` broadcast against one sample (e.g. per-channel ``(C, 1, 1)`` ranges of
    the training data). Draws come from ``generator`` on the CPU.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"perturb: rate must lie in [0, 1], got {rate}")
    lo = as_float64(low, name="low").to(x.dtype)
    hi = as_float64(high, name="high").to(x.dtype)
    if bool((hi < lo).any()):
        raise ValueError("perturb: high must be ≥ low")
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
    replace = torch.rand(x.shape, generator=generator) < rate
    noise = lo + (hi - lo) * u
    return torch.where(replace.to(x.device), noise.to(x.device), x)


def typicality_statistic(nll: ArrayLike, entropy: float, batch_size: int = 1) -> Tensor:
    r"""Nalisnick et al. (2019, arXiv:1906.02994)'s typicality statistic per batch of ``M``:

    .. math:: \hat\epsilon = \Bigl|\frac1M\sum_{m=1}^M -\log p(\tilde x_m) - \hat H\Bigr|,

    with :math:`\hat H` the mean NLL of held-out in-distribution data (an estimate of the
    entropy). Consecutive groups of ``batch_size`` NLLs form the batches (a remainder is
    dropped); ``batch_size=1`` gives a per-sample score. Inputs far from the typical set are
    flagged whether their likelihood is too low *or too high*, which is where raw
    likelihood fails.
    """
    v = as_float64(nll, name="nll").reshape(-1)
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    m = (v.numel() // batch_size) * batch_size
    if m == 0:
        raise ValueError(f"fewer NLLs ({v.numel()}) than one batch of {batch_size}")
    return (v[:m].reshape(-1, batch_size).mean(1) - entropy).abs()


def typicality_threshold(
    nll_valid: ArrayLike,
    entropy: float,
    batch_size: int = 1,
    *,
    alpha: float = 0.01,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> float:
    r"""The test's threshold :math:`\epsilon^M_\alpha`: the :math:`1-\alpha` quantile of
    :math:`\hat\epsilon` over ``n_bootstrap`` batches of ``batch_size`` drawn with replacement
    from in-distribution NLLs ``nll_valid`` (held out from the data that gave ``entropy``).
    A batch with :math:`\hat\epsilon > \epsilon^M_\alpha` is declared OOD at level
    :math:`\alpha` (Nalisnick et al. 2019, Alg. 1).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    v = as_float64(nll_valid, name="nll_valid").reshape(-1)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(v.numel(), (n_bootstrap, batch_size), generator=g)
    eps = (v[idx].mean(1) - entropy).abs()
    return float(torch.quantile(eps, 1 - alpha))


def entropy_estimate(nll: ArrayLike) -> float:
    """:math:`\\hat H`: the mean NLL of in-distribution data (same units as the NLLs)."""
    v = as_float64(nll, name="nll")
    if v.numel() == 0:
        raise ValueError("entropy_estimate: no NLLs")
    return float(v.mean())
