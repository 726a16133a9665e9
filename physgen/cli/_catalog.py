"""Torch-free listings and checks for ``--help`` and errors: families, recipes, studies.

``--help`` and argument errors must answer in well under a second, so nothing here imports
torch, numpy or a model module. The model families are a static table, kept equal to the
registry of ``physgen.models`` by a test (names, default sampler and steps, sampler
options); recipes and studies are read from their files on disk (the ``description`` key of
``datasets/*.toml``, the docstring of ``studies/*/run.py``) without running any of them.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from physgen.paths import find_project_dir, read_toml

__all__ = [
    "FAMILIES",
    "TRAIN_STEPS",
    "Family",
    "ListingFormatter",
    "check_family",
    "check_recipe",
    "family_listing",
    "recipe_listing",
    "recipes",
    "require_files",
    "sampler_listing",
    "studies",
    "study_listing",
]

TRAIN_STEPS = 1000
"""Optimizer steps of ``physgen train`` when neither ``--steps`` nor a config sets them."""


@dataclass(frozen=True)
class Family:
    """One registered model family as ``--help`` describes it.

    ``sampler`` is the method ``sample`` uses by default (``direct``: one pass of the
    network; ``ode``: an adaptive ``dopri5`` solve), ``sample_steps`` its step count (None
    where there is none), ``options`` the ``--option KEY=VALUE`` keys its ``sample``
    accepts, ``samplers`` the values of its ``sampler`` option, and ``train_steps`` the
    optimizer steps of ``physgen train`` without ``--steps``.
    """

    purpose: str
    sampler: str = "direct"
    sample_steps: int | None = None
    options: tuple[str, ...] = ()
    samplers: tuple[str, ...] = ()
    train_steps: int = TRAIN_STEPS


# The sampler's own settings pass through sample(): eta (ddim); snr, corrector_steps,
# langevin_rate (pc); method, rtol, atol (ode).
_DIFFUSION_OPTIONS = (
    "sampler",
    "steps",
    "guidance_scale",
    "guidance_strength",
    "eta",
    "snr",
    "corrector_steps",
    "langevin_rate",
    "method",
    "rtol",
    "atol",
)
_ODE_OPTIONS = ("method", "rtol", "atol", "steps")

FAMILIES: dict[str, Family] = {
    "ae": Family("autoencoder; samples decode Gaussian codes fitted to the training codes"),
    "cgan": Family("conditional GAN, MLP generator and discriminator"),
    "cnf": Family(
        "continuous normalizing flow (FFJORD), maximum likelihood", "ode", None, _ODE_OPTIONS
    ),
    "cvae": Family("conditional VAE for inverse problems", options=("mean",)),
    "cyclegan": Family("unpaired field-to-field translation (--data-b), two U-Nets, PatchGANs"),
    "dcgan": Family("deep convolutional GAN for 1-D/2-D fields"),
    "diffusion": Family(
        "score-based diffusion over an SDE (DDPM/DDIM/PC samplers)",
        "ddim",
        50,
        _DIFFUSION_OPTIONS,
        samplers=("euler-maruyama", "pc", "ddpm", "ddim", "ode"),
    ),
    "ebm": Family(
        "energy-based model, contrastive divergence; Langevin sampling",
        "langevin",
        500,
        ("n_steps", "from_buffer"),
    ),
    "flow-matching": Family(
        "continuous flow trained by conditional flow matching", "ode", None, _ODE_OPTIONS
    ),
    "gan": Family("original GAN, MLP generator and discriminator (vectors: --flatten)"),
    "glow": Family("multi-scale invertible flow for 1-D/2-D fields, exact likelihood"),
    "iaf": Family("inverse autoregressive flow on vectors (--flatten): fast sampling"),
    "maf": Family("masked autoregressive flow on vectors (--flatten): fast likelihood"),
    "pix2pix": Family("paired field-to-field translation: U-Net generator, PatchGAN, L1"),
    "pigan": Family("physics-informed WGAN-GP for the 1-D stochastic elliptic problem"),
    "pivae": Family("physics-informed VAE with a PDE-residual loss", options=("mean",)),
    "pivae-sde": Family("PI-VAE for the 1-D stochastic elliptic problem (sensor data)"),
    "realnvp": Family("coupling flow on vectors (--flatten), affine or spline"),
    "vae": Family("variational autoencoder for vectors or fields", options=("mean",)),
    "wgan": Family("Wasserstein GAN with weight clipping (vectors: --flatten)"),
    "wgan-gp": Family("Wasserstein GAN with gradient penalty (vectors: --flatten)"),
}


class ListingFormatter(argparse.HelpFormatter):
    """Wraps prose paragraphs as argparse does, but keeps a listing (a paragraph with indented
    rows) line for line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for block in text.split("\n\n"):
            if any(line.startswith("  ") for line in block.splitlines()):
                paragraphs.append("\n".join(indent + line for line in block.splitlines()))
            else:
                paragraphs.append(super()._fill_text(block, width, indent))
        return "\n\n".join(paragraphs)


def check_family(name: str) -> None:
    """Refuse an unknown family name in one line listing the known ones, without torch.

    A family registered in this process from Python (``physgen.models`` already imported)
    is accepted too; the registry then decides.
    """
    if name in FAMILIES:
        return
    if "physgen.models" in sys.modules:
        from physgen.models import get_model_class

        get_model_class(name)
        return
    raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(FAMILIES))}")


def check_recipe(spec: str) -> None:
    """Refuse, without torch, a recipe name with no ``datasets/<name>.toml`` (the message of
    ``physgen.recipes.load_recipe``). Anything that looks like a path is left to the command.
    """
    if spec.endswith((".toml", ".nc", ".h5", ".hdf5")) or os.sep in spec or Path(spec).exists():
        return
    try:
        folder = find_project_dir("datasets")
    except FileNotFoundError:
        return
    if not (folder / f"{spec}.toml").is_file():
        known = ", ".join(name for name, _ in recipes())
        raise FileNotFoundError(f"no recipe {spec!r} in {folder} (known: {known})")


def require_files(*checks: tuple[Path | None, str]) -> None:
    """Refuse a missing input file before a command imports torch: ``(path, message)`` pairs,
    the message naming the path as the slower check would (None paths are skipped)."""
    for path, message in checks:
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(message)


def _table(rows: list[tuple[str, str]], indent: int = 2) -> str:
    """Two columns, the second wrapped under itself at 88 characters."""
    width = max((len(name) for name, _ in rows), default=0) + 2
    lines = []
    for name, text in rows:
        wrapped = textwrap.wrap(text, 88 - indent - width) or [""]
        lines.append(" " * indent + name.ljust(width) + wrapped[0])
        lines.extend(" " * (indent + width) + rest for rest in wrapped[1:])
    return "\n".join(lines)


def family_listing() -> str:
    """The ``train --help`` epilog: every family, its default steps and its purpose."""
    width = max(len(name) for name in FAMILIES) + 2
    rows = [("NAME".ljust(width) + "STEPS", "PURPOSE")]
    rows += [(name.ljust(width) + str(f.train_steps), f.purpose) for name, f in FAMILIES.items()]
    return (
        "model families (--model NAME), with the optimizer steps a run takes\n"
        "without --steps (or a config's [fit] steps):\n" + _table(rows)
    )


def sampler_listing() -> str:
    """The ``sample --help`` epilog: each family's default sampler, steps and option keys."""
    rows = []
    for name, f in FAMILIES.items():
        steps = "" if f.sample_steps is None else f", {f.sample_steps} steps"
        if f.sampler == "ode":
            steps = ", adaptive steps (dopri5)"
        keys = [f"{k}={'|'.join(f.samplers)}" if k == "sampler" else k for k in f.options]
        keys = f"; --option {', '.join(keys)}" if keys else ""
        rows.append((name, f"{f.sampler}{steps}{keys}"))
    return (
        "default sampler per family ('direct': one network pass) and its --option keys:\n"
        + _table(rows)
    )


def _first_paragraph(text: str) -> str:
    """The first paragraph of a docstring on one line."""
    return " ".join(text.strip().split("\n\n")[0].split())


def recipes() -> list[tuple[str, str]]:
    """``(name, description)`` of every recipe in ``datasets/`` (empty if there is none)."""
    try:
        folder = find_project_dir("datasets")
    except FileNotFoundError:
        return []
    out = []
    for path in sorted(folder.glob("*.toml")):
        try:
            description = str(read_toml(path).get("description", ""))
        except ValueError:  # a broken recipe is reported when it is used, not in --help
            description = "(unreadable recipe file)"
        out.append((path.stem, description))
    return out


def studies() -> list[tuple[str, str]]:
    """``(name, summary)`` of every study folder with a ``run.py`` (its docstring's first
    paragraph; the file is parsed, never run)."""
    try:
        folder = find_project_dir("studies")
    except FileNotFoundError:
        return []
    out = []
    for script in sorted(folder.glob("*/run.py")):
        try:
            doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
        except (SyntaxError, UnicodeDecodeError, OSError):
            doc = ""
        out.append((script.parent.name, _first_paragraph(doc)))
    return out


def recipe_listing() -> str:
    """The ``data make --help`` epilog."""
    rows = recipes()
    return "recipes in datasets/:\n" + (_table(rows) if rows else "  (no datasets/ folder found)")


def study_listing() -> str:
    """The ``run --help`` epilog."""
    rows = studies()
    return "studies in studies/:\n" + (_table(rows) if rows else "  (no studies/ folder found)")
