"""
Generate a Darcy flow data set
==============================

The shipped recipe ``darcy-32`` describes the FNO Darcy problem, −∇·(a∇u) = 1 on the unit
square with u = 0 on the walls and a two-valued permeability a ∈ {12, 3}, on 32 × 32 cells.
``physgen data make darcy-32`` turns it into ``train.nc``, ``valid.nc``, ``test.nc`` and
``stats.json``; here the same runner makes a smaller copy in a temporary folder, opens the
files, and checks the physics floor of the data.
"""

# %%
# Make the data set
# -----------------
# A recipe is a small dataclass; ``dataclasses.replace`` keeps the problem, its parameters
# and the seed, and shrinks the splits so the example runs in seconds.

import dataclasses
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from physgen.data import open_fields
from physgen.data.stats import load_stats
from physgen.recipes import load_recipe, make_dataset

recipe = load_recipe("darcy-32")
print(recipe.description)
small = dataclasses.replace(recipe, splits={"train": 64, "valid": 16, "test": 16})
out = Path(tempfile.mkdtemp(prefix="physgen-darcy-"))
files = make_dataset(small, out, progress=False)
for split, path in files.items():
    print(f"{split:>5}: {path.name}")

# %%
# Open a split
# ------------
# The files are physgen-field/1: NetCDF4-compatible HDF5 with named dimensions, coordinates
# with units, and the recipe's provenance in the global attributes. ``stats.json`` holds the
# training split's per-field statistics, which z-score the fields for training.

with open_fields(files["train"]) as ds:
    print(ds)
    a, u = ds["a"].values, ds["u"].values
    x, y = ds["x"].values, ds["y"].values
stats = load_stats(files["stats"])
for name, s in stats.items():
    print(f"{name}: mean {s.mean:.4g}, std {s.std:.4g}, range [{s.min:.4g}, {s.max:.4g}]")

# %%
# Look at a few samples
# ---------------------
# Fields are stored with ``indexing="ij"`` (the first grid axis is x), so they are drawn
# transposed with the origin at the bottom; the pressures share one colour scale.

fig, axes = plt.subplots(2, 4, figsize=(10, 5), constrained_layout=True)
extent = (x[0], x[-1], y[0], y[-1])
for j in range(4):
    axes[0, j].imshow(a[j].T, origin="lower", extent=extent, cmap="cividis")
    axes[0, j].set_title(f"a, sample {j}")
    im = axes[1, j].imshow(
        u[j].T, origin="lower", extent=extent, cmap="viridis", vmin=u[:4].min(), vmax=u[:4].max()
    )
    axes[1, j].set_title(f"u, sample {j}")
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(im, ax=axes[1], shrink=0.8, label="pressure u")
plt.show()

# %%
# The physics floor
# -----------------
# The residual of the generator's own discrete equations vanishes on the float64 generator
# output up to round-off; the float32 file's residual is what storage alone costs. A
# generative model's residual is to be read against this floor, not against zero.

problem = small.build_problem()
exact = problem.to_tensor(problem.generate(16, seed=0))
with open_fields(files["test"]) as ds:
    stored = problem.to_tensor(ds).double()
print(
    f"float64 generator output: median relative residual "
    f"{problem.relative_residual(exact).median().item():.1e}"
)
print(
    f"float32 file:             median relative residual "
    f"{problem.relative_residual(stored).median().item():.1e}"
)
print("pressure range in the file:", np.round([u.min(), u.max()], 4))
