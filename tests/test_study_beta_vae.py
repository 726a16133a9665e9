"""The β-VAE sweep: its fields follow the stated factor model, and a tiny pass writes the
table and the traversal figure."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from physgen.paths import load_module_from_path
from physgen.random_fields import se_kernel

STUDY = Path(__file__).parents[1] / "studies" / "beta_vae" / "run.py"


@pytest.fixture(scope="module")
def study() -> Any:
    return load_module_from_path(STUDY, "beta_vae_study_run")


def test_fields_follow_the_factor_model(study: Any) -> None:
    cfg = copy.deepcopy(study.CONFIGS["quick"])
    cfg.update(n_nodes=16, levels=2)
    u, v = study.factor_fields(40000, cfg, seed=0)
    assert u.shape == (40000, 1, 16) and v.shape == (40000, 3)
    assert sorted(np.unique(v[:, 0])) == [0.05, 0.3]  # two levels of each factor
    # (u − μ)/σ is the unit GRF of the sample's length scale: its covariance is the kernel.
    x = np.linspace(0, 1, 16)
    for ell in (0.05, 0.3):
        g = ((u[:, 0] - v[:, 2:3]) / v[:, 1:2])[v[:, 0] == ell]
        cov = g.T @ g / len(g)
        # Entry-wise SE of a sample covariance of unit variances: ≤ √(2/n); allow 5 of them.
        np.testing.assert_allclose(
            cov, se_kernel(np.abs(x[:, None] - x), ell), atol=5 * np.sqrt(2 / len(g))
        )
    # Negative control: the other length's kernel is far off.
    g = ((u[:, 0] - v[:, 2:3]) / v[:, 1:2])[v[:, 0] == 0.05]
    assert np.abs(g.T @ g / len(g) - se_kernel(np.abs(x[:, None] - x), 0.3)).max() > 0.3


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"decoder_scale": "spectral", "tc_weight": 2.0},
        {"decoder_scale": "spectral_global_dc", "arch": "conv", "pool": "moments",
         "channels": [4, 8], "decoder_mean": "constant"},
    ],
)  # fmt: skip
def test_tiny_sweep_writes_table_and_figure(
    study: Any, tmp_path: Path, extra: dict[str, Any]
) -> None:
    cfg = copy.deepcopy(study.CONFIGS["quick"])
    cfg.update(n_nodes=16, n_train=256, n_test=128, steps=2, betas=[1.0, 4.0], hidden=[16],
               latent_dim=3, threads=None, **extra)  # fmt: skip
    result = study.run_study(cfg, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [row["beta"] for row in saved["rows"]] == [1.0, 4.0]
    assert all(0.0 <= row["mig"] <= 1.0 for row in result["rows"])
    assert (tmp_path / "traversal.png").stat().st_size > 0
    assert (tmp_path / "results.md").read_text().startswith("| β | MIG |")


def test_a_range_override_moves_only_that_factor(study: Any) -> None:
    cfg = copy.deepcopy(study.CONFIGS["quick"])
    cfg.update(n_nodes=16, levels=2, ranges={"mean": [-12.0, 12.0]})
    _, v = study.factor_fields(200, cfg, seed=0)
    assert sorted(np.unique(v[:, 2])) == [-12.0, 12.0]
    assert sorted(np.unique(v[:, 1])) == [0.5, 2.0]  # the amplitude keeps its default range


def test_statistics_code_reads_mean_spread_and_roughness(study: Any) -> None:
    # u = μ + σ g: the third column is the spatial mean, the second log sd(u) moves by
    # log 2 when σ doubles, and the first (roughness) is unchanged by σ and μ.
    cfg = copy.deepcopy(study.CONFIGS["quick"])
    x, v = study.factor_fields(50, cfg, seed=0)
    code = study.statistics_code(x)
    np.testing.assert_allclose(code[:, 2], x[:, 0].mean(1), rtol=1e-12)
    g = (x - v[:, 2, None, None]) / v[:, 1, None, None]
    scaled = study.statistics_code(3.0 + 2.0 * g)
    np.testing.assert_allclose(
        scaled[:, 1] - study.statistics_code(g)[:, 1], np.log(2.0), rtol=1e-12
    )
    np.testing.assert_allclose(scaled[:, 0], study.statistics_code(g)[:, 0], rtol=1e-10)
    # and it falls with the length scale: log(0.3/0.05) = 1.8 for a roughness ∝ 1/ℓ
    x, v = study.factor_fields(400, cfg, seed=1)
    code = study.statistics_code(x)
    short, long = code[v[:, 0] == 0.05], code[v[:, 0] == 0.3]
    assert short[:, 0].mean() - long[:, 0].mean() > 1.0
