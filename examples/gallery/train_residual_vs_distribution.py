"""
Residual against distribution
=============================

A generative model of PDE solutions can be wrong in two ways: its samples can break the
equation (a large residual), or they can be distributed unlike the data (a large distance
between distributions). This script trains three families on joint (permeability a,
pressure u) Darcy fields with the same small budget, and places each on both axes, beside
the **floors** the data themselves reach: the residual error RE of the data, and the W1
distance between two halves of the held-out data. ``studies/darcy_benchmark`` does the same
for every family at a larger budget over several seeds; this is a toy version of its figure.

The families: a convolutional VAE, flow matching with minibatch optimal-transport pairs,
and physics-based flow matching (PBFM: flow matching plus the residual of the denoised
estimate, with conflict-free gradients). Each is also shown after the solver projection,
``problem.solve_state``, which replaces the generated pressure by the solution for the
generated permeability.
"""

# %%
# Data
# ----

import matplotlib.pyplot as plt
import torch

from physgen.metrics import marginal_w1, residual_error, with_floor
from physgen.models.cnf import FlowMatching
from physgen.models.vae import VAE
from physgen.physics import ResidualPenalty
from physgen.problem import load
from physgen.training import fit

torch.manual_seed(0)
darcy = load("darcy", n=16)
fields = darcy.to_tensor(darcy.generate(512, seed=0))  # (512, 2, 16, 16): a, u in float64
test = darcy.to_tensor(darcy.generate(256, seed=1, start=512))
mean, scale = fields.mean((0, 2, 3)), fields.std((0, 2, 3))


def z(x: torch.Tensor) -> torch.Tensor:
    """Z-scored float32 fields, the units the models train in."""
    return ((x - mean[:, None, None]) / scale[:, None, None]).float()


penalty = ResidualPenalty(darcy, mean, scale, bounds={"a": (3.0, None)})

# %%
# Train three families
# --------------------
# 400 steps of batch 32 each.

flow = dict(channels=(16, 32), coupling="ot", method="euler", steps=20)
models = {
    "conv VAE": VAE((2, 16, 16), latent_dim=16, arch="conv", channels=(16, 32)),
    "flow matching": FlowMatching((2, 16, 16), **flow),
    "PBFM": FlowMatching(
        (2, 16, 16),
        **flow,
        physics_weight=1.0,
        gradient_combination="config",
        physics_penalty=penalty,
    ),
}
for name, model in models.items():
    fit(model, z(fields), steps=400, batch_size=32, lr=2e-3, progress=False)
    print(f"trained {name}")

# %%
# Score on both axes
# ------------------
# RE is the mean absolute residual of the problem's own discrete operator in physical
# units; W1 the mean Wasserstein-1 distance of the pointwise marginals in z-score units.
# The permeability is clamped to its physical range [3, 12] before the residual.


def physical(x: torch.Tensor) -> torch.Tensor:
    out = penalty.physical(x.double())
    out[:, 0] = out[:, 0].clamp(3.0, 12.0)
    return out


rows = {"data (floor)": test}
with torch.no_grad():
    for name, model in models.items():
        samples = physical(model.sample(256))
        rows[name] = samples
        rows[f"{name} + projection"] = darcy.solve_state(samples)

scores = {}
for name, x in rows.items():
    re = residual_error(darcy, x).item()
    w1 = with_floor(marginal_w1, z(x), z(test))
    scores[name] = (re, w1["floor" if name == "data (floor)" else "value"].item())
    print(f"{name:>28}: RE {re:9.2e}   W1 {scores[name][1]:.3f}")

# %%
# The picture
# -----------
# Down is more physical, left is closer to the data's distribution; the data floor is the
# corner no model can beat at this sample size.

fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
for name, (re, w1) in scores.items():
    marker = "*" if name.startswith("data") else ("s" if "projection" in name else "o")
    ax.scatter(w1, re, marker=marker, s=90 if marker == "*" else 50, label=name)
ax.set(
    xlabel="W1 of pointwise marginals (z-score units)",
    ylabel="residual error RE",
    yscale="log",
    title="darcy 16×16: physics against distribution",
)
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
plt.show()
