"""
Super-resolution with an ensemble
=================================

Infer the 32 × 32 Darcy pressure u from its 8 × 8 block averages (the task ``sr4:u``) as a
**posterior ensemble**: a conditional VAE trained on (fine u, coarse u) pairs draws many
fields for each observation. The ensemble is scored like a probabilistic forecast — the
fair CRPS and the spread–skill ratio (1 for a calibrated ensemble) — beside a deterministic
baseline, bicubic interpolation of the coarse field.
"""

# %%
# Data and task
# -------------
# Fields are z-scored with the training statistics; the task string ``sr4:u`` builds the
# block-average operator A and names the channel it acts on.

import matplotlib.pyplot as plt
import torch

from physgen.inverse import PairedDataset, parse_task, solve
from physgen.metrics import crps_fair, rmse, spread_skill_ratio
from physgen.models.vae import CVAE
from physgen.problem import load
from physgen.training import fit

torch.manual_seed(0)
problem = load("darcy", n=32)
u = problem.to_tensor(problem.generate(560, seed=0))[:, 1:].float()  # (560, 1, 32, 32)
mean, std = u[:512].mean(), u[:512].std()
u = (u - mean) / std
train, test = u[:512], u[512:]
task = parse_task("sr4:u", ["u"], problem.grid)
pairs = PairedDataset(train, task)  # items: (fine u, coarse u lifted onto the fine grid)
print(f"observed values per unknown: {task.fraction:.4f}")

# %%
# Train a conditional VAE
# -----------------------
# ``for_shape`` sizes the model for the target and condition shapes; ``sigma=None`` learns
# the decoder's observation noise, which the ensemble draws with ``mean=False``.

cvae = CVAE.for_shape((1, 32, 32), (1, 32, 32), latent_dim=16, channels=(16, 32))
result = fit(cvae, pairs, steps=800, batch_size=64, lr=2e-3, progress=False)
print(f"final loss {result.history[-1]['loss']:.3f}")

# %%
# Posterior ensembles
# -------------------
# :func:`physgen.inverse.solve` returns ``(B, M, C, *grid)``: 32 members for each of the
# 48 held-out observations.

y = task.observe(test)  # (48, 1, 8, 8)
with torch.no_grad():
    ens = solve(cvae, task, y, 32, sample_options={"mean": False})
bicubic = task.condition(y)  # the observation lifted onto the fine grid: the CVAE's input
truth = test

crps = crps_fair(ens.transpose(0, 1), truth).mean()
ssr = spread_skill_ratio(ens.transpose(0, 1), truth)
print(
    f"ensemble:  CRPS {crps.item():.3f}, spread-skill {ssr.item():.2f}, "
    f"RMSE of the mean {rmse(ens.mean(1), truth).mean().item():.3f}"
)
print(
    f"bicubic:   RMSE {rmse(bicubic, truth).mean().item():.3f} "
    "(its CRPS equals its mean absolute error)"
)

# %%
# One case
# --------
# The ensemble mean is the estimate; the ensemble standard deviation says where the coarse
# observation leaves the pressure undetermined — near the permeability jumps.

case = 0
panels = {
    "truth": truth[case, 0],
    "observation (8×8)": y[case, 0],
    "bicubic": bicubic[case, 0],
    "ensemble mean": ens[case, :, 0].mean(0),
    "ensemble std": ens[case, :, 0].std(0),
    "|mean − truth|": (ens[case, :, 0].mean(0) - truth[case, 0]).abs(),
}
fig, axes = plt.subplots(2, 3, figsize=(10, 6.5), constrained_layout=True)
for ax, (title, field) in zip(axes.flat, panels.items(), strict=True):
    im = ax.imshow(field.T.numpy(), origin="lower", cmap="viridis")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, shrink=0.8)
plt.show()
