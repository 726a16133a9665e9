r"""
The PI-VAE quickstart
=====================

``physgen run`` runs the ``quickstart`` study: it generates samples of the 1-D stochastic
elliptic problem of PI-GAN/PI-VAE,

.. math:: -\tfrac{1}{10}\,\bigl(k(x)\,u'(x)\bigr)' = f(x), \qquad x \in [-1, 1],

with random k and f, measures their PDE-residual floor, trains a PI-VAE (``pivae-sde``) on
the **forward** sensors — u only at the two walls, k at 17 and f at 21 points, so u is
learned through the equation alone — samples 2000 fields and scores them against the data.
This script runs the same command from Python and shows what it writes.
"""

# %%
# Run the study
# -------------
# :func:`physgen.cli.main` is the ``physgen`` command; ``--out`` puts the report in a
# temporary folder instead of ``runs/quickstart-<timestamp>/``. The options are the
# defaults of ``physgen run``.

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from physgen.cli import main

out = Path(tempfile.mkdtemp(prefix="physgen-quickstart-"))
status = main(["run", "quickstart", "--out", str(out)])
print("exit status", status)

# %%
# The report
# ----------
# ``report.md`` holds the data description, the residual floor of the float64 generator
# output and of the float32 file, and the PI-VAE's errors: relative L2 error of the mean
# curves and relative error of the total std of u and k, the residual of the decoded
# fields and the boundary violation.

print((out / "report.md").read_text())

# %%
# The figures
# -----------
# The generated mean ± std of u and k against the data's — u is never observed inside the
# domain — and the training loss.

for name in ("pivae_mean_std.png", "pivae_loss.png", "samples_u.png"):
    image = plt.imread(out / name)
    fig, ax = plt.subplots(figsize=(9, 9 * image.shape[0] / image.shape[1]))
    ax.imshow(image)
    ax.set_axis_off()
    fig.tight_layout(pad=0)
plt.show()
