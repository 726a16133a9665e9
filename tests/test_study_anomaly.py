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
        threads=None, iwae_samples=2, tile=4, feature_steps=2, ceiling_draws=50,
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
    assert {"feature-encoder code Mahalanobis", "feature-encoder pooled Mahalanobis"} <= detectors
    assert len(result["batch_auroc"]) == 3
    # The ceiling is for the length set's regime (τ = 6): above chance, which τ = 3 would be.
    ceiling = result["length_ceiling"]
    assert ceiling["auroc"] > 0.5 + 3 * ceiling["se"]
    # The residual flags the 1 % source error perfectly even here (no training involved).
    assert result["auroc"]["residual"]["source"]["auroc"] == 1.0
    assert (tmp_path / "results.md").read_text().startswith("| detector |")


def test_scale_free_log_ratio_is_the_angular_gaussian_density_ratio(study: Any) -> None:
    # D = 2: the angle θ of η ~ N(0, diag(s1², s2²)) has density
    # 1 / (2π s1 s2 (cos²θ/s1² + sin²θ/s2²)) (the angular central Gaussian).
    def density(theta: np.ndarray, var: np.ndarray) -> np.ndarray:
        q = np.cos(theta) ** 2 / var[0] + np.sin(theta) ** 2 / var[1]
        return 1 / (2 * np.pi * np.sqrt(var.prod()) * q)

    theta = np.linspace(0, 2 * np.pi, 13)
    var0, var1 = np.array([1.0, 4.0]), np.array([9.0, 0.25])
    for r in (0.1, 7.0):  # any length of η: only its direction counts
        eta = r * np.stack([np.cos(theta), np.sin(theta)], 1)
        got = study.scale_free_log_ratio(eta, var0, var1)
        np.testing.assert_allclose(got, np.log(density(theta, var1) / density(theta, var0)),
                                   rtol=1e-12, atol=1e-12)  # fmt: skip
    # Negative control: the Gaussian log ratio of η itself depends on its length.
    gauss = lambda e, v: (-0.5 * e**2 / v - 0.5 * np.log(v)).sum(1)  # noqa: E731
    eta = 7.0 * np.stack([np.cos(theta), np.sin(theta)], 1)
    assert not np.allclose(gauss(eta, var1) - gauss(eta, var0),
                           study.scale_free_log_ratio(eta, var0, var1))  # fmt: skip


def test_length_ceiling_is_chance_for_the_same_regime(study: Any, data: Any) -> None:
    same = study.length_ceiling(data, {"tau": 3.0}, draws=200, seed=0)
    assert same["auroc"] == 0.5  # ratio 0 for every draw: all ties
    other = study.length_ceiling(data, {"tau": 6.0}, draws=200, seed=0)
    assert other["auroc"] > 0.5 + 3 * other["se"]


def test_batch_table_chooses_on_validation_only(study: Any) -> None:
    rng = np.random.default_rng(1)
    keys = [k for k, _, _ in study.ANOMALIES]
    shifted = lambda d, n: rng.normal(d, 1.0, n)  # noqa: E731
    by_set = {
        "normal": shifted(0, 100),
        "valid": shifted(0, 2000),
        "valid length": shifted(1, 2000),
    }
    by_set.update({k: shifted(1, 100) for k in keys})
    scores = {"glow NLL": by_set, "glow likelihood ratio": by_set}
    # Unit normals shifted by 1: batch means of M have AUROC Φ(√(M/2)): 0.92 for M = 4,
    # 0.977 for M = 8 (errors ~0.007 with 2000 validation scores per set).
    table = study.batch_table(scores, [1, 2, 4, 8, 16])
    row = table["glow NLL, batches of 8"]
    assert row["batch_size"] == 8 and row["valid_auroc"] >= 0.95
    assert row["length"]["auroc"] > 0.9  # the test sets are only read, with the chosen M
    # Negative control: equal validation sets never reach the target: the largest M.
    by_set["valid length"] = shifted(0, 2000)
    assert "glow NLL, batches of 16" in study.batch_table(scores, [1, 2, 4, 8, 16])


def test_batch_typicality_is_the_distance_of_the_batch_mean_from_the_validation_entropy(
    study: Any,
) -> None:
    # Batches of 2 (the only size offered); Ĥ = mean validation NLL = 0. The normal batches
    # have mean NLL 1, so |mean − Ĥ| = 1. Nalisnick et al.'s statistic averages first:
    #   source   ±3 alternating: mean 0 → |0| < 1 → AUROC 0 (|s| first would give 3 → 1);
    #   smoothed −0.5:           |−0.5| < 1      → AUROC 0 (Ĥ from the normal set → 1);
    #   length   −2:             |−2| > 1        → AUROC 1, the raw NLL row 0.
    keys = [k for k, _, _ in study.ANOMALIES]
    by_set = {k: np.ones(4) for k in keys}
    by_set.update(
        normal=np.ones(4),
        valid=np.array([-1.0, 1.0] * 4),
        source=np.array([3.0, -3.0] * 2),
        smoothed=np.full(4, -0.5),
        length=np.full(4, -2.0),
    )
    by_set["valid length"] = np.full(8, 5.0)
    table = study.batch_table({"glow NLL": by_set, "glow likelihood ratio": by_set}, [2])
    typical, nll = table["glow typicality, batches of 2"], table["glow NLL, batches of 2"]
    assert [typical[k]["auroc"] for k in ("source", "smoothed", "length")] == [0.0, 0.0, 1.0]
    assert typical["boundary"]["auroc"] == 0.5  # equal batches: ties count one half
    # Negative control: the raw batch-mean NLL ranks the low-NLL length set last.
    assert nll["length"]["auroc"] == 0.0 and nll["source"]["auroc"] == 0.0


def test_length_ceiling_draws_the_coefficients_of_each_regime(
    study: Any, data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    exact = study.scale_free_log_ratio

    def spy(eta: np.ndarray, var_null: np.ndarray, var_alt: np.ndarray) -> np.ndarray:
        seen.append((eta, var_null, var_alt))
        return exact(eta, var_null, var_alt)

    monkeypatch.setattr(study, "scale_free_log_ratio", spy)
    study.length_ceiling(data, {"tau": 6.0}, draws=400, seed=0)
    # ψ's cosine coefficients are c ⊙ ξ, ξ white (c the problem's spectrum, mean mode 0):
    # η_k²/c_k² is χ²₁, mean 1 and variance 2, in each regime, and the variances are c².
    c0, c1 = (load("darcy", n=N, tau=t)._spectrum.ravel() for t in (3.0, 6.0))
    keep = c0 > 0
    (normal, var0, var1), (other, _, _) = seen
    for eta, c in ((normal, c0[keep]), (other, c1[keep])):
        chi2 = eta**2 / c**2
        assert abs(chi2.mean() - 1) < 4 * np.sqrt(2 / chi2.size)
    np.testing.assert_allclose(var0, c0[keep] ** 2, rtol=1e-15)
    np.testing.assert_allclose(var1, c1[keep] ** 2, rtol=1e-15)
    # Negative control: the other regime's coefficients do not have the null's law.
    assert abs((other**2 / c0[keep] ** 2).mean() - 1) > 0.5


def test_validation_length_set_shares_no_field_with_the_test_sets(study: Any, data: Any) -> None:
    _, sets = study.anomaly_sets(data, _cfg(study))
    valid = study.validation_sets(data)["valid length"]
    assert len(valid) == len(data.valid)
    shared = lambda x, y: (x.flatten(1)[:, None] == y.flatten(1)[None]).all(2).any()  # noqa: E731
    assert not any(bool(shared(valid, s)) for s in sets.values())
    # Negative control: a draw with the test set's seed repeats its fields.
    again = study.regime_fields(data.problem, {"tau": 6.0}, len(data.valid), seed=1003)
    assert bool(shared(again, sets["length"]))


def test_a_regime_changes_only_the_parameters_it_names(study: Any) -> None:
    """Another regime keeps every other parameter of the data's problem: a recipe with a
    non-default contrast and grid keeps both when only the length scale changes."""
    problem = load("darcy", n=N, a_plus=24.0)
    variant = study._variant(problem, {"tau": 6.0})
    assert (variant.params.n, variant.params.a_plus, variant.params.tau) == (N, 24.0, 6.0)
