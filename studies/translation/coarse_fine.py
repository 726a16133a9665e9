r"""Translation study, paired and unpaired parts: coarse-solver → fine-solver Darcy pressure.

Domain A is the pressure of a coarse solve, upsampled to the fine grid; domain B is the fine
solve. For a fine permeability :math:`a` on :math:`n^2` cells, the coarse solver sees
:math:`\bar a`, the geometric mean of :math:`a` over blocks of :math:`f \times f` cells (the
classical upscaled permeability between the harmonic and arithmetic bounds), solves the same
problem on :math:`(n/f)^2` cells, and its pressure is interpolated bicubically back to the
fine cells (:func:`upsample_dirichlet`). What the coarse field cannot know — the pressure's
response to the permeability inside a block — is what a translation model must supply; it is
not a function of the coarse field, so a point forecast blurs it.

Paired: the models learn the correction :math:`u_B - u_A` (z-scored) from the z-scored
:math:`u_A`, as in residual super-resolution (CorrDiff, Mardani et al. 2023,
arXiv:2309.15214); the translation is :math:`u_A` plus the correction. Unpaired: CycleGAN
maps z-scored :math:`u_A` to z-scored :math:`u_B`, trained on the two halves of the sample
set that :class:`physgen.data.unpaired.UnpairedDataset` keeps apart; with the configuration's
``cyclegan: {residual: true}`` its generators are the identity plus a learnt correction, so
that they too learn only what separates the domains.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from physgen.data import FieldDataset
from physgen.data.unpaired import UnpairedDataset
from physgen.emulation.baselines import Regressor
from physgen.metrics import (
    crps_fair,
    energy_distance,
    marginal_w1,
    mean_field_error,
    spectrum_distance,
    std_field_error,
    with_floor,
)
from physgen.models.base import available_models
from physgen.problem import Problem, load
from physgen.recipes import load_recipe, make_dataset
from physgen.training import fit

__all__ = [
    "DISTRIBUTION_METRICS",
    "coarse_solve",
    "dirichlet_upsampling_matrix",
    "distribution_scores",
    "draw_members",
    "keys_weights",
    "load_coarse_fine",
    "paired_rows",
    "paired_scores",
    "train",
    "unpaired_rows",
    "upsample_dirichlet",
]

# Two-set metrics of a set of translated fields against fine-solver fields of other cases.
DISTRIBUTION_METRICS = {
    "mean_err": mean_field_error,
    "std_err": std_field_error,
    "lsd": lambda x, y: spectrum_distance(x, y, spatial_dims=2),
    "w1": marginal_w1,
    "energy": energy_distance,
}


def train(model: Any, data: Any, cfg: dict[str, Any]) -> float:
    """Fit ``model`` with the study's budget; the seconds it took."""
    start = time.perf_counter()
    fit(
        model, data, steps=cfg["steps"], batch_size=cfg["batch_size"], lr=cfg["lr"],
        grad_clip=1.0, device=cfg["device"], progress=False, seed=0,
    )  # fmt: skip
    model.eval()
    return time.perf_counter() - start


def coarse_solve(a: Tensor, coarse: Any, factor: int) -> Tensor:
    """Coarse-solver pressure ``(B, n/f, n/f)`` for fine permeabilities ``a`` ``(B, n, n)``:
    the block geometric mean of ``a`` solved by ``coarse.pressure`` (a Darcy problem on
    ``(n/f)²`` cells)."""
    b, n, _ = a.shape
    m = n // factor
    if m * factor != n or tuple(coarse.grid.shape) != (m, m):
        raise ValueError(f"coarse_solve: grid {n} is not {factor} × the coarse grid")
    a_bar = a.double().log().reshape(b, m, factor, m, factor).mean((2, 4)).exp()
    return torch.stack([torch.as_tensor(coarse.pressure(x.numpy())) for x in a_bar])


def keys_weights(t: Tensor, a: float = -0.5) -> Tensor:
    r"""Keys' cubic convolution kernel :math:`W(t)` (Keys 1981, IEEE TASSP 29(6)): for
    :math:`|t| \le 1`, :math:`(a+2)|t|^3 - (a+3)|t|^2 + 1`; for :math:`1 < |t| < 2`,
    :math:`a|t|^3 - 5a|t|^2 + 8a|t| - 4a`; else 0. With a = −1/2 (Keys' choice, not torch's
    −3/4) it reproduces quadratics, so the interpolation error is third order."""
    t = t.abs()
    inner = ((a + 2) * t - (a + 3)) * t * t + 1
    outer = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, inner, torch.where(t < 2, outer, torch.zeros_like(t)))


def dirichlet_upsampling_matrix(m: int, factor: int) -> Tensor:
    """The ``(f·m, m)`` matrix of bicubic interpolation (:func:`keys_weights`) from ``m``
    cell centres to ``f·m``, on (0, 1) with u = 0 on both walls: the cells beyond a wall hold
    the odd reflection −u (the ghost-cell treatment of a Dirichlet wall half a cell out)."""
    if m < 2 or factor < 1:
        raise ValueError(f"upsampling needs m >= 2 and factor >= 1, got m={m}, factor={factor}")
    src = (torch.arange(factor * m, dtype=torch.float64) + 0.5) / factor - 0.5  # coarse index
    base = src.floor().long()
    out = torch.zeros(factor * m, m, dtype=torch.float64)
    for k in range(-1, 3):
        idx = base + k
        w = keys_weights(src - idx.double())
        sign = torch.where((idx < 0) | (idx >= m), -1.0, 1.0).double()
        mirrored = torch.where(idx < 0, -1 - idx, torch.where(idx >= m, 2 * m - 1 - idx, idx))
        out.index_put_((torch.arange(factor * m), mirrored), sign * w, accumulate=True)
    return out


def upsample_dirichlet(u: Tensor, factor: int) -> Tensor:
    """Bicubic interpolation ``(B, m, m)`` → ``(B, f·m, f·m)`` of cell-centred values that
    vanish on the walls (:func:`dirichlet_upsampling_matrix` along both axes)."""
    mat = dirichlet_upsampling_matrix(u.shape[-1], factor)
    return torch.einsum("ij,bjk,lk->bil", mat, u.double(), mat)


def _fields(path: Any, count: int) -> Tensor:
    ds = FieldDataset(path, ["a", "u"])
    return torch.stack([ds[i] for i in range(min(count, len(ds)))]).double()


def load_coarse_fine(cfg: dict[str, Any], recipe_name: str = "darcy-32") -> dict[str, Any]:
    """Fine (a, u), the upsampled coarse pressure and z-scorings, for train/test/reference."""
    recipe = load_recipe(recipe_name)
    files = make_dataset(recipe, progress=False)
    fine = load(recipe.problem, **recipe.params)
    factor = cfg["coarsen"]
    coarse = load(recipe.problem, **{**recipe.params, "n": fine.grid.shape[0] // factor})
    out: dict[str, Any] = {"problem": fine, "factor": factor}
    for split, key, count in (
        ("train", "train", cfg["n_train"]),
        ("test", "test", cfg["n_test"]),
        ("valid", "ref", cfg["n_ref"]),  # fine fields of other cases: the distribution reference
    ):
        x = _fields(files[split], count)
        bicubic = upsample_dirichlet(coarse_solve(x[:, 0], coarse, factor), factor)
        out[key] = {"a": x[:, :1], "u": x[:, 1:], "bicubic": bicubic[:, None]}
    tr = out["train"]
    out["mean"], out["scale"] = float(tr["u"].mean()), float(tr["u"].std())
    out["corr_scale"] = float((tr["u"] - tr["bicubic"]).std())
    return out


def _z(data: dict[str, Any], u: Tensor) -> Tensor:
    return ((u - data["mean"]) / data["scale"]).float()


def _residual(problem: Problem, a: Tensor, u: Tensor) -> float:
    """Mean relative residual of (a, u) over members ``u`` (B, M, 1, *grid)."""
    m = u.shape[1]
    fields = torch.cat([a[:, None].expand(-1, m, -1, -1, -1), u.double()], 2).flatten(0, 1)
    return float(problem.relative_residual(fields).mean())


def distribution_scores(samples: Tensor, ref: Tensor) -> dict[str, dict[str, float]]:
    """Every two-set metric of ``samples`` ``(N, 1, *grid)`` against ``ref`` with its floor."""
    out = {}
    for name, metric in DISTRIBUTION_METRICS.items():
        r = with_floor(metric, samples[:, 0], ref[:, 0])
        out[name] = {"value": float(r["value"]), "floor": float(r["floor"])}
    return out


def paired_scores(
    members: Tensor, truth: Tensor, a: Tensor, problem: Problem, ref: Tensor
) -> dict[str, Any]:
    """Scores of translated members ``(B, M, 1, *grid)`` against the paired truth ``(B, 1, *grid)``.

    rel. L2 of the ensemble mean (mean over cases); fair CRPS (a point forecast, M = 1: its
    MAE); spectrum LSD of the first members against ``ref`` with its floor; the residual of
    (a, members) and of the truth (its floor).
    """
    mean = members.mean(1)
    diff = (mean - truth).flatten(1).norm(dim=1) / truth.flatten(1).norm(dim=1)
    if members.shape[1] == 1:
        crps = float((members[:, 0] - truth).abs().mean())
    else:
        crps = float(crps_fair(members, truth, member_dim=1).mean())
    lsd = with_floor(DISTRIBUTION_METRICS["lsd"], members[:, 0, 0], ref[:, 0])
    return {
        "rel_l2": float(diff.mean()),
        "crps": crps,
        "lsd": float(lsd["value"]),
        "lsd_floor": float(lsd["floor"]),
        "residual": _residual(problem, a, members),
        "residual_floor": _residual(problem, a, truth[:, None]),
    }


def draw_members(model: Any, cond: Tensor, m: int, options: dict[str, Any]) -> Tensor:
    """``m`` draws per condition, ``(B, M, *sample_shape)``."""
    torch.manual_seed(0)
    with torch.no_grad():
        x = model.sample(len(cond) * m, cond.repeat_interleave(m, 0), **options)
    return x.detach().cpu().double().reshape(len(cond), m, *x.shape[1:])


def _paired_models(cfg: dict[str, Any]) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The paired translators, untrained, with their sampling options."""
    shape = (1, cfg["grid"], cfg["grid"])
    families = available_models()
    net = {"channels": cfg["channels"]}
    torch.manual_seed(0)
    models = {
        "U-Net regressor": (Regressor(shape, shape, **net), {}),
        "pix2pix": (families["pix2pix"](shape, shape, critic_channels=cfg["critic"], **net), {}),
        "CVAE": (families["cvae"](shape, shape, arch="conv", latent_dim=cfg["latent"], **net), {}),
    }
    if "diffusion" in families:
        diffusion = families["diffusion"](shape, shape, blocks=1, **net)
        models["conditional diffusion"] = (
            diffusion, {"sampler": "ddpm", "steps": cfg["sampling_steps"]}
        )  # fmt: skip
    return models


def paired_rows(data: dict[str, Any], cfg: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """Rows of the paired part, and the trained pix2pix (the unpaired part's upper bound)."""
    tr, te = data["train"], data["test"]
    cond, target = _z(data, tr["bicubic"]), ((tr["u"] - tr["bicubic"]) / data["corr_scale"]).float()
    test_cond = _z(data, te["bicubic"])
    score = lambda m: paired_scores(m, te["u"], te["a"], data["problem"], data["ref"]["u"])  # noqa: E731
    rows = [{"method": "bicubic (coarse solve)", **score(te["bicubic"][:, None]), "train_s": None}]
    cfg = {**cfg, "grid": data["problem"].grid.shape[0]}
    pix2pix = None
    for name, (model, options) in _paired_models(cfg).items():
        seconds = train(model, (target, cond), cfg)
        m = 1 if isinstance(model, Regressor) else cfg["members"]
        start = time.perf_counter()
        corr = draw_members(model, test_cond.to(cfg["device"]), m, options)
        members = te["bicubic"][:, None] + data["corr_scale"] * corr
        rows.append({"method": name, **score(members), "train_s": seconds,
                     "sample_s": time.perf_counter() - start})  # fmt: skip
        if name == "pix2pix":
            pix2pix = (model, members)
        print(rows[-1], flush=True)
    return rows, pix2pix


def unpaired_rows(data: dict[str, Any], cfg: dict[str, Any], upper: Any) -> list[dict[str, Any]]:
    """Rows of the unpaired part: identity, CycleGAN, and the paired pix2pix (upper bound)."""
    tr, te, ref = data["train"], data["test"], data["ref"]["u"]
    problem = data["problem"]
    grid = problem.grid.shape[0]
    shape = (1, grid, grid)

    def row(name: str, out: Tensor, seconds: float | None) -> dict[str, Any]:
        rel = (out - te["u"]).flatten(1).norm(dim=1) / te["u"].flatten(1).norm(dim=1)
        scores = distribution_scores(out, ref)
        residual = _residual(problem, te["a"], out[:, None])
        return {"method": name, **scores, "rel_l2": float(rel.mean()), "residual": residual,
                "train_s": seconds}  # fmt: skip

    rows = [row("fine solver (the truth)", te["u"], None)]
    rows.append(row("identity (bicubic coarse)", te["bicubic"], None))
    data_ab = UnpairedDataset(list(_z(data, tr["bicubic"])), list(_z(data, tr["u"])), seed=0)
    torch.manual_seed(0)
    cyclegan = available_models()["cyclegan"](
        shape, shape, channels=cfg["channels"], critic_channels=cfg["critic"],
        **cfg.get("cyclegan", {}),
    )  # fmt: skip
    seconds = train(cyclegan, data_ab, cfg)
    out = draw_members(cyclegan, _z(data, te["bicubic"]).to(cfg["device"]), 1, {})[:, 0]
    rows.append(row("CycleGAN", out * data["scale"] + data["mean"], seconds))
    if upper is not None:
        rows.append(row("pix2pix, paired (upper bound)", upper[1][:, 0], None))
    for r in rows[-2:]:
        print(r, flush=True)
    return rows
