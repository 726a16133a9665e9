"""The physics-informed VAE on fields (Zhu et al. 2025) and the MMD helpers both PI-VAEs use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..physics import PhysicsLoss, latin_hypercube_normal
from .base import register_model
from .vae import LatentGaussianModel

if TYPE_CHECKING:
    from physgen.problem import Problem

__all__ = ["PIVAE", "mmd_rows", "synthetic_latents"]


def _problem_of(
    name: str,
    params: dict[str, Any] | None,
    source_file: str | None,
    source_sha256: str | None,
    loaded: Problem | None,
) -> Problem:
    """The PI-VAE's problem: the caller's loaded one (checked), else a registered one.

    A config recording a problem file is refused without the loaded problem: the config is
    data, and data never name code to run.
    """
    from physgen.problem import UnregisteredProblemError, load_registered

    if loaded is None:
        if source_file is not None:
            raise UnregisteredProblemError(
                f"PIVAE: problem {name!r} was loaded from {source_file}; a model configuration "
                "never names code to run: pass that file explicitly (--problem PATH, or "
                "problem_object=physgen.problem.load(PATH) in Python)"
            )
        return load_registered(name, **(params or {}))
    if loaded.name != name:
        raise ValueError(f"PIVAE: problem_object is {loaded.name!r}, the config names {name!r}")
    if source_sha256 is not None and loaded.source_sha256 != source_sha256:
        raise ValueError(
            f"PIVAE: {loaded.source_file} has SHA-256 {str(loaded.source_sha256)[:12]}…, not the "
            f"{source_sha256[:12]}… of {source_file}, the file the model was trained with"
        )
    return loaded


def synthetic_latents(n: int, dim: int, method: str = "lhs", seed: int = 0) -> Tensor:
    """The synthetic latent set Z_syn of Zhu et al. (2025), ``(n, dim)``.

    ``"lhs"``: Latin-hypercube sample of N(0, I) (their Algorithm 1, a space-filling cover of
    the prior); ``"normal"``: i.i.d. N(0, I) draws (the ablation).
    """
    g = torch.Generator().manual_seed(seed)
    if method == "lhs":
        return latin_hypercube_normal(n, dim, generator=g)
    if method == "normal":
        return torch.randn(n, dim, generator=g)
    raise ValueError(f"syn_sampling must be 'lhs' or 'normal', got {method!r}")


def mmd_rows(
    source: Tensor,
    target: Tensor,
    kernel_mul: float = 2.0,
    kernel_num: int = 5,
    poly_weight: float = 0.0,
) -> Tensor:
    r"""Squared MMD between two batches, split into per-row contributions ``(B,)``.

    .. math:: \mathrm{MMD}^2 = \frac1{B^2}\sum_{ij} k(x_i,x_j) + k(y_i,y_j)
              - k(x_i,y_j) - k(y_i,x_j)

    with a mixture of ``kernel_num`` Gaussian kernels whose bandwidths are the mean pairwise
    squared distance times ``kernel_mul**(i - kernel_num//2)`` (the estimator of Zhong &
    Meidani's code). Row i holds the i-th summand over j, so ``rows.mean()`` is the biased
    (V-statistic) MMD² and ``fit`` can treat it as a per-sample loss.

    ``poly_weight`` > 0 adds ``poly_weight`` × the degree-2 polynomial kernel
    :math:`(1 + \langle a, b\rangle / D)^2` on values standardised by the target batch's mean
    and std (readings without spread keep their scale). Its MMD² is
    :math:`\tfrac{2}{D}\|\Delta\mu\|^2 + \tfrac{1}{D^2}\|\Delta M\|_F^2`, a match of the means
    and of the full covariance (cross-covariances between fields included), which Gaussian
    kernels with bandwidths set by the largest block of readings barely see.
    """
    if source.shape != target.shape:
        raise ValueError(f"mmd: batches must match, got {source.shape} and {target.shape}")
    b = source.shape[0]
    total = torch.cat([source.flatten(1), target.flatten(1)])  # (2B, D)
    d2 = torch.cdist(total, total).pow(2)
    n = 2 * b
    base = d2.detach().sum() / (n * n - n) / kernel_mul ** (kernel_num // 2)
    if kernel_mul == 2.0:
        # Bandwidths double, so each kernel is the square of the next wider one: one exp only.
        k_i = torch.exp(-d2 / (base * 2.0 ** (kernel_num - 1)))
        kernel = k_i
        for _ in range(kernel_num - 1):
            k_i = k_i * k_i
            kernel = kernel + k_i
    else:
        kernel = sum(torch.exp(-d2 / (base * kernel_mul**i)) for i in range(kernel_num))
    if poly_weight:
        ref = target.flatten(1).detach()
        std = ref.std(0)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        a = (total - ref.mean(0)) / std  # (2B, D)
        kernel = kernel + poly_weight * (1 + a @ a.T / a.shape[1]).pow(2)
    xx, yy = kernel[:b, :b], kernel[b:, b:]
    xy, yx = kernel[:b, b:], kernel[b:, :b]
    return (xx + yy - xy - yx).mean(1)


# --------------------------------------------------------------------------------------------
# Zhu et al. 2025: VAE + physics on reconstructions and on decodings of a synthetic latent set
# --------------------------------------------------------------------------------------------


@register_model("pivae")
class PIVAE(LatentGaussianModel):
    r"""Physics-informed VAE of Zhu, Ren, Weng & Si (Energies 18, 4742, 2025).

    .. math:: L = L_{VAE}(x) + \alpha_1 L_{phy}\bigl(D(E(x))\bigr)
              + \alpha_2 L_{phy}\bigl(D(z_{syn})\bigr)

    ``L_VAE`` is the negative β-ELBO of `LatentGaussianModel`; ``L_phy`` is the per-sample
    `physgen.physics.PhysicsLoss` of the Problem ``problem`` (its discrete PDE residual,
    relative to its scale, plus its constraint violations) on decoded fields de-normalised
    with ``channel_mean``/``channel_std``; ``z_syn`` is a mini-batch (as large as the data
    batch) from a fixed synthetic set of ``n_syn`` latents (`synthetic_latents`, their
    Algorithm 1). Two-stage schedule (their Algorithm 2): the first ``pretrain_steps``
    training steps use ``L_VAE`` only, then the physics terms switch on. The step count is a
    buffer, so it survives checkpoints.

    Samples are fields ``(n, C, *grid)`` in the normalised units of the data.

    Args:
        sample_shape: ``(C, *grid)``, equal to ``problem.sample_shape()``.
        problem: the name of a registered problem (a module of the problems folder, or a
            ``physgen.problems`` entry point); ``problem_params`` its parameters. The name is part
            of the model config that checkpoints store, so it is never a path: loading a
            checkpoint must not import a file the checkpoint chooses.
        problem_object: a problem the caller loaded itself (``physgen.problem.load(PATH)``, a
            user's own file); not part of the config. Its file and SHA-256 are recorded as
            ``problem_file``/``problem_sha256``, and rebuilding the model from its config then
            needs the same file passed again, never read from the config.
        channel_mean, channel_std: per-channel de-normalisation (physical = x·std + mean).
        alpha1, alpha2: weights of the physics terms on reconstructions and on Z_syn.
    """

    example_shape = (3, 17)
    config_exclude = ("problem_object",)  # a loaded problem: passed again, never stored

    def __init__(
        self,
        sample_shape: Sequence[int],
        problem: str,
        problem_params: dict[str, Any] | None = None,
        channel_mean: Sequence[float] | None = None,
        channel_std: Sequence[float] | None = None,
        latent_dim: int = 8,
        arch: str = "mlp",
        hidden: Sequence[int] = (128, 128),
        channels: Sequence[int] = (32, 64),
        act: str = "silu",
        sigma: float | None = None,
        beta: float = 1.0,
        alpha1: float = 1.0,
        alpha2: float = 1.0,
        n_syn: int = 1000,
        syn_sampling: str = "lhs",
        syn_seed: int = 0,
        pretrain_steps: int = 0,
        problem_file: str | None = None,
        problem_sha256: str | None = None,
        problem_object: Problem | None = None,
    ) -> None:
        c = sample_shape[0]
        mean = list(channel_mean) if channel_mean is not None else [0.0] * c
        std = list(channel_std) if channel_std is not None else [1.0] * c
        super().__init__()
        if problem_object is not None:
            self._config.update(  # where the problem came from: provenance, never code to run
                problem_file=problem_object.source_file, problem_sha256=problem_object.source_sha256
            )
        self.problem = _problem_of(
            problem, problem_params, problem_file, problem_sha256, problem_object
        )
        expected = tuple(self.problem.sample_shape())
        if tuple(sample_shape) != expected:
            raise ValueError(
                f"PIVAE: sample_shape {tuple(sample_shape)} does not match problem "
                f"{problem!r}, whose fields {list(self.problem.field_names)} have shape {expected}"
            )
        if len(mean) != c or len(std) != c:
            raise ValueError(f"PIVAE: channel_mean/channel_std need {c} entries (one per field)")
        self._build(sample_shape, latent_dim, arch, hidden, channels, act, "gaussian", sigma, beta)
        self.physics = PhysicsLoss(self.problem)
        self.alpha1, self.alpha2, self.pretrain_steps = alpha1, alpha2, pretrain_steps
        self.register_buffer("channel_mean", torch.tensor(mean))
        self.register_buffer("channel_std", torch.tensor(std))
        self.register_buffer("z_syn", synthetic_latents(n_syn, latent_dim, syn_sampling, syn_seed))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> PIVAE:
        if cond_shape is not None:
            raise ValueError("PIVAE is unconditional")
        # Without a problem, the stochastic elliptic one; without its parameters, a grid of
        # the sample's length (data naming a problem but not its parameters).
        overrides = {"problem": "sde1d", **overrides}
        overrides.setdefault("problem_params", {"n": sample_shape[-1]})
        defaults = {"arch": "conv" if len(sample_shape) >= 2 else "mlp", "n_syn": 256}
        return cls(sample_shape, **{**defaults, **overrides})

    def physical(self, x: Tensor) -> Tensor:
        """Normalised fields → physical units (per-channel affine map)."""
        shape = (1, -1, *([1] * (x.ndim - 2)))
        return x * self.channel_std.reshape(shape) + self.channel_mean.reshape(shape)

    def physics_loss(self, x: Tensor) -> Tensor:
        """Per-sample physical inconsistency L_phy of normalised fields ``x``."""
        return self.physics(self.physical(x))

    @property
    def physics_active(self) -> bool:
        """Whether the two-stage schedule has reached the physics stage."""
        # Without a pre-training stage, no host sync: reading the step buffer waits for the GPU.
        return self.pretrain_steps <= 0 or int(self.steps) >= self.pretrain_steps

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        rec, kl, out = self._terms(x, cond)
        total = -(rec - self.beta * kl)
        active = self.physics_active
        if self.training:
            self.steps += 1
        if active:
            if self.alpha1:
                total = total + self.alpha1 * self.physics_loss(out)
            if self.alpha2:
                idx = torch.randint(len(self.z_syn), (x.shape[0],), device=self.z_syn.device)
                synthetic = self.decoder_output(self.z_syn[idx])
                total = total + self.alpha2 * self.physics_loss(synthetic)
        return total


# --------------------------------------------------------------------------------------------
# Zhong & Meidani 2023: sensor encoder, coordinate decoders, f by autograd, MMD losses
# --------------------------------------------------------------------------------------------
