"""The anomaly benchmark: each anomaly set is what its name says (checked against the
equation and the transformation), and one tiny end-to-end pass writes the AUROC table."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from physgen.metrics import residual_rms
from physgen.paths import load_module_from_path
from physgen.problem import load

STUDY = Path(__file__).parents[1] / "studies" / "anomaly" / "run.py"
N = 16  # Darcy cells per axis


@pytest.fixture(scope="module")
def study() -> Any:
    return load_module_from_path(STUDY, "anomaly_study_run")


@pytest.fixture(scope="module")
def data(study: Any) -> Any:
    """Darcy fields stored as float32 (as a recipe's files are), in physical units."""
    problem = load("darcy", n=N)
    splits = [problem.to_tensor(problem.generate(n, seed=s)).float().double()
              for s, n in ((0, 48), (1, 16), (2, 32))]  # fmt: skip
    dims = (0, 2, 3)
    return study.Data(*splits, splits[0].mean(dims), splits[0].std(dims), problem)


def _cfg(study: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(study.CONFIGS["quick"])
    cfg.update(
        threads=None, iwae_samples=2, tile=4, feature_steps=2,
        vae={"latent_dim": 4, "channels": [4, 8], "hidden": [16], "steps": 2, "batch_size": 8},
        glow={"levels": 2, "steps": 1, "checker_steps": 1, "hidden": 8, "fit_steps": 2,
              "batch_size": 8},
    )  # fmt: skip
    return cfg


def test_anomaly_sets_are_what_they_claim(study: Any, data: Any) -> None:
    cfg = _cfg(study)
    normal, sets = study.anomaly_sets(data, cfg)
    base = data.test[16:]
    torch.testing.assert_close(normal, data.test[:16])
    assert set(sets) == {key for key, _, _ in study.ANOMALIES}
    res = lambda x: residual_rms(data.problem, x, relative=True)  # noqa: E731
    floor = float(res(normal).max())
    assert floor < 1e-5  # float32 storage of exact solutions
    # u·1.01 solves the equation with a 1 % larger source: relative residual 0.01.
    torch.testing.assert_close(res(sets["source"]), torch.full((16,), 0.01, dtype=torch.float64),
                               atol=2 * floor, rtol=0)  # fmt: skip
    shift = sets["boundary"][:, 1] - base[:, 1]
    torch.testing.assert_close(
        shift, torch.full_like(shift, cfg["boundary_shift"] * float(data.scale[1]))
    )
    blurred = gaussian_filter(base[:, 1].numpy(), sigma=(0, 1.0, 1.0))
    np.testing.assert_allclose(sets["smoothed"][:, 1].numpy(), blurred)
    # Out of regime but exact: residual at the same float32 floor, other coefficient values.
    for key in ("length", "contrast"):
        assert float(res(sets[key]).max()) < 10 * floor
    assert set(sets["contrast"][:, 0].unique().tolist()) == {3.0, 24.0}
    assert set(sets["length"][:, 0].unique().tolist()) == {3.0, 12.0}
    # Negative control for the length scale: neighbouring cells disagree more often.
    jumps = lambda a: (a[:, :, 1:] != a[:, :, :-1]).double().mean()  # noqa: E731
    assert float(jumps(sets["length"][:, 0])) > 1.3 * float(jumps(base[:, 0]))
    diff = (sets["spikes"][:, 1] - base[:, 1]).abs()
    changed = diff[diff > 0]
    torch.testing.assert_close(changed, torch.full_like(changed, 3 * float(data.scale[1])))
    assert 0 < changed.numel() < 0.05 * diff.numel()
    zeros = (sets["tiles"][:, 1] == 0).flatten(1).sum(1)
    assert bool((zeros == 16).all())  # one 4×4 tile each
    for key in ("source", "boundary", "smoothed", "spikes", "tiles"):
        torch.testing.assert_close(sets[key][:, 0], base[:, 0])  # only u is touched


def test_detection_table_on_known_scores(study: Any) -> None:
    rng = np.random.default_rng(0)
    keys = [k for k, _, _ in study.ANOMALIES]
    separable = {"normal": rng.uniform(0, 1, 20), **{k: rng.uniform(2, 3, 10) for k in keys}}
    table = study.detection_table({"perfect": separable})
    assert all(table["perfect"][k]["auroc"] == 1.0 for k in keys)
    assert "| perfect | 1.000 ± 0.000" in study.markdown(table)


def test_tiny_end_to_end(study: Any, data: Any, tmp_path: Path) -> None:
    result = study.run_study(_cfg(study), tmp_path, data=data)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["auroc"] == result["auroc"]
    detectors = set(result["auroc"])
    assert {"residual", "vae neg. ELBO", "glow NLL", "glow likelihood ratio"} <= detectors
    assert {"vae latent Mahalanobis", "spectrum Mahalanobis"} <= detectors
    # The residual flags the 1 % source error perfectly even here (no training involved).
    assert result["auroc"]["residual"]["source"]["auroc"] == 1.0
    assert (tmp_path / "results.md").read_text().startswith("| detector |")
