"""The translation study's inpainting rows on small Darcy fields: baselines scored on the gap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from physgen.paths import load_module_from_path
from physgen.problem import load

STUDY = Path(__file__).parents[1] / "studies" / "translation" / "run.py"


@pytest.fixture(scope="module")
def study() -> Any:
    return load_module_from_path(STUDY, "translation_study_run")


def _data(n: int = 4) -> dict[str, Any]:
    problem = load("darcy", n=16)
    ds = problem.generate(n, seed=0)
    phys = torch.stack([torch.as_tensor(ds[f].values) for f in ("a", "u")], dim=1).double()
    mean, scale = float(phys[:, 1].mean()), float(phys[:, 1].std())
    z = (phys[:, 1:] - mean) / scale  # float64: the scored truth (phys) is not rounded either
    return {
        "train": z,
        "valid": z,
        "test": z,
        "phys": phys,
        "mean": mean,
        "scale": scale,
        "problem": problem,
    }


def test_inpainting_rows_score_the_baselines_on_the_missing_pixels(study):
    data = _data()
    cfg = {"members": 6, "device": "cpu"}
    rows = study.run_task("inpaint:u:box", data, cfg, None, 0.0)
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == {"harmonic fill", "kriging (Matérn-5/2 GP)"}
    harmonic = by_method["harmonic fill"]
    assert harmonic["spread_skill"] is None and harmonic["missing_fraction"] == 0.25
    # The harmonic fill misses the pressure's curvature (−∇·(a∇u) = 1 ≠ 0) inside the box.
    assert 1e-3 < harmonic["rel_l2"] < 1.0
    assert harmonic["residual_over_floor"] > 1.0
    kriged = by_method["kriging (Matérn-5/2 GP)"]
    assert kriged["spread_skill"] is not None and kriged["crps"] > 0
    # The truth completed by itself is a perfect point forecast with the floor's residual.
    truth = data["phys"][:, None, 1:]
    exact = study._row("truth", data, truth, torch.ones(16, 16, dtype=torch.bool), 0.0)
    assert exact["crps"] == 0.0 and exact["rel_l2"] == 0.0
    assert exact["residual_over_floor"] == pytest.approx(1.0)


@pytest.mark.parametrize("fill", ["_harmonic", "_kriging_mean"])
def test_residual_rows_keep_the_fill_mean_and_calibrate_on_the_validation_cases(study, fill):
    data = _data()  # validation = test here, so the inflation calibrates the scored cases
    cfg = {"members": 4, "device": "cpu", "steps": 2, "batch_size": 4, "lr": 1e-3,
           "diffusion": {"channels": [8], "blocks": 1}, "sampling_steps": 3}  # fmt: skip
    task = study.parse_task("inpaint:u:box", ("u",), data["problem"].grid, seed=0)
    y = task.observe(data["test"].double()).float()
    fill_fn = getattr(study, fill)(task, data)
    drawn, inflated = study._residual_rows("m", fill_fn, task, data, y, cfg)
    # Inflation about the ensemble mean: the mean's error is unchanged, the spread is not.
    assert inflated["rel_l2"] == pytest.approx(drawn["rel_l2"], rel=1e-9)
    assert inflated["spread_skill"] == pytest.approx(1.0, abs=1e-9)
    assert abs(drawn["spread_skill"] - 1.0) > 1e-3  # negative control: 2 steps are not calibrated
    assert inflated["inflation"] == pytest.approx(1.0 / drawn["spread_skill"], rel=1e-9)
    # The fill leaves the observed points alone and fills the gap.
    u = data["test"].double()
    f = fill_fn(u)
    assert torch.equal(f[..., task.operator.observed], u[..., task.operator.observed])
    assert not torch.allclose(f[..., task.operator.missing], u[..., task.operator.missing])


def test_shaping_by_a_posterior_sd_gives_the_members_that_pointwise_spread(study):
    # Residual draws whose spread is the same at every point (c_b times a fixed set of member
    # values): after shaping, the members' pointwise spread is the sd field itself.
    gen = torch.Generator().manual_seed(0)
    missing = torch.zeros(6, 6, dtype=torch.bool)
    missing[1:5, 2:5] = True
    sd = torch.rand(3, 1, 6, 6, generator=gen, dtype=torch.float64) * missing
    c = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64).reshape(3, 1, 1, 1, 1)
    e = torch.tensor([-1.0, 0.3, 2.0, 0.1], dtype=torch.float64).reshape(1, 4, 1, 1, 1)
    r = c * e * torch.ones(3, 4, 1, 6, 6, dtype=torch.float64)
    w = study._shape_by(sd, r, missing)
    spread = (w[:, None] * r).std(1)
    torch.testing.assert_close(spread[..., missing], sd[..., missing], rtol=1e-12, atol=0)
    assert not torch.allclose(r.std(1)[..., missing], sd[..., missing])  # negative control


def test_the_kriging_sd_row_keeps_the_mean_and_calibrates_on_the_validation_cases(study):
    data = _data()  # validation = test here
    cfg = {"members": 4, "device": "cpu", "steps": 2, "batch_size": 4, "lr": 1e-3,
           "diffusion": {"channels": [8], "blocks": 1}, "sampling_steps": 3}  # fmt: skip
    task = study.parse_task("inpaint:u:box", ("u",), data["problem"].grid, seed=0)
    y = task.observe(data["test"].double()).float()
    kriged = study._kriging(task, data)
    _, sd = kriged(data["test"])
    assert float(sd[..., task.operator.observed].abs().max()) == 0.0
    assert float(sd[..., task.operator.missing].min()) > 0
    drawn, _, shaped = study._residual_rows(
        "m", lambda u: kriged(u)[0], task, data, y, cfg, sd=lambda u: kriged(u)[1]
    )
    assert shaped["rel_l2"] == pytest.approx(drawn["rel_l2"], rel=1e-9)
    assert shaped["spread_skill"] == pytest.approx(1.0, abs=1e-9)
    lo, hi = shaped["ssr_interval"]
    assert lo <= shaped["spread_skill"] <= hi


def test_study_setup_picks_the_configuration_and_writes_the_result_files(tmp_path):
    from physgen.study import study_setup, write_results

    configs = {"quick": {"device": "cpu", "n": 1}, "full": {"device": "cuda", "n": 2}}
    cfg, out = study_setup("demo", None, configs, ["--quick", "--out", str(tmp_path / "o")])
    assert cfg == {"device": "cpu", "n": 1} and out.is_dir()
    cfg, _ = study_setup("demo", None, configs, ["--device", "cpu", "--out", str(out)])
    assert cfg == {"device": "cpu", "n": 2}  # full, with the device overridden
    path = write_results(out, cfg, {"t": [{"x": float("nan")}]}, "| a |")
    assert path.read_text() == "| a |\n"
    assert '"x": null' in (out / "results.json").read_text()  # non-finite numbers as null


@pytest.fixture(scope="module")
def coarse_fine() -> Any:
    return load_module_from_path(STUDY.with_name("coarse_fine.py"), "translation_coarse_fine")


def _centres(m: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.arange(m, dtype=torch.float64) + 0.5) * scale


def test_keys_bicubic_reproduces_quadratics_inside_and_converges_at_third_order(coarse_fine):
    # Keys' kernel with a = −1/2 reproduces polynomials of degree ≤ 2 away from the walls
    # (support: 2 coarse cells); a cubic is the negative control.
    x, xf = _centres(16), _centres(64, 0.25)
    for p, exact in ((1, True), (2, True), (3, False)):
        coarse = (x[:, None] ** p + 2 * x[None, :])[None]
        fine = (xf[:, None] ** p + 2 * xf[None, :])[None]
        err = (coarse_fine.upsample_dirichlet(coarse, 4) - fine)[0, 8:-8, 8:-8].abs().max()
        assert (float(err) < 1e-12) == exact

    # A smooth field that vanishes on the walls: the odd ghost cells keep third order up to
    # the walls (error ratio ≥ 2³ = 8 per halving of h, up to higher-order terms).
    def f(m: int) -> torch.Tensor:
        s = _centres(m, 1.0 / m)
        return (torch.sin(torch.pi * s)[:, None] * torch.sin(2 * torch.pi * s)[None, :])[None]

    errs = [float((coarse_fine.upsample_dirichlet(f(m), 4) - f(4 * m)).abs().max())
            for m in (8, 16, 32)]  # fmt: skip
    assert errs[0] / errs[1] > 7 and errs[1] / errs[2] > 7
    # Negative control: torch's bicubic (a = −3/4, clamped borders) is first order here.
    naive = torch.nn.functional.interpolate(f(16)[None], scale_factor=4, mode="bicubic")
    assert float((naive[0] - f(64)).abs().max()) > 10 * errs[1]


def test_coarse_solve_uses_the_block_geometric_mean_of_the_permeability(coarse_fine):
    fine, coarse = load("darcy", n=16), load("darcy", n=8)
    # 2 × 2 blocks of {3, 12, 12, 3}: geometric mean 6 (arithmetic 7.5) on every block.
    a = torch.tensor([[3.0, 12.0], [12.0, 3.0]], dtype=torch.float64).repeat(8, 8)[None]
    got = coarse_fine.coarse_solve(a, coarse, 2)
    want = torch.as_tensor(coarse.pressure(torch.full((8, 8), 6.0).numpy()))
    torch.testing.assert_close(got[0], want, rtol=1e-12, atol=0.0)
    arithmetic = torch.as_tensor(coarse.pressure(torch.full((8, 8), 7.5).numpy()))
    assert float((got[0] - arithmetic).abs().max()) > 1e-3  # the negative control
    # Factor 1 is the fine solver itself.
    same = coarse_fine.coarse_solve(a, fine, 1)[0]
    torch.testing.assert_close(same, torch.as_tensor(fine.pressure(a[0].numpy())))
    with pytest.raises(ValueError, match="coarse grid"):
        coarse_fine.coarse_solve(a, coarse, 4)


def test_paired_scores_of_the_truth_and_of_a_shifted_point_forecast(coarse_fine):
    problem = load("darcy", n=16)
    ds = problem.generate(6, seed=0)
    a, u = (torch.as_tensor(ds[f].values)[:, None] for f in ("a", "u"))
    ref = torch.as_tensor(problem.generate(8, seed=1)["u"].values)[:, None]
    exact = coarse_fine.paired_scores(u[:, None], u, a, problem, ref)
    assert exact["rel_l2"] == 0.0 and exact["crps"] == 0.0
    assert exact["residual"] == exact["residual_floor"] < 1e-10
    shifted = coarse_fine.paired_scores(u[:, None] + 0.01, u, a, problem, ref)
    assert shifted["crps"] == pytest.approx(0.01)  # a point forecast: CRPS = MAE
    assert shifted["lsd"] == pytest.approx(exact["lsd"])  # a constant moves only k = 0
    assert shifted["residual"] > 1e3 * exact["residual"]  # the shift breaks u = 0 on the walls
    # Two members ±d about the truth: an exact mean, and a fair CRPS of
    # E|X − y| − ½ E|X − X'| = d − ½ · 2d = 0 (the members' rounding, ~1e-17, aside); the
    # unfair 1/M² estimator (the negative control) would give d/2.
    pm = torch.stack([u - 0.01, u + 0.01], 1)
    spread = coarse_fine.paired_scores(pm, u, a, problem, ref)
    assert spread["rel_l2"] < 1e-12 and spread["crps"] == pytest.approx(0.0, abs=1e-12)


def test_distribution_scores_see_a_constant_shift_only_in_the_mean_metrics(coarse_fine):
    ref = torch.as_tensor(load("darcy", n=16).generate(16, seed=0)["u"].values)[:, None]
    base = coarse_fine.distribution_scores(ref, ref)
    shifted = coarse_fine.distribution_scores(ref + 0.01, ref)
    assert set(base) == set(coarse_fine.DISTRIBUTION_METRICS)
    for name in ("std_err", "lsd"):  # blind to a constant (LSD leaves out k = 0)
        assert shifted[name]["value"] == pytest.approx(base[name]["value"])
        assert shifted[name]["floor"] == base[name]["floor"]
    for name in ("mean_err", "w1", "energy"):
        assert shifted[name]["value"] > base[name]["value"] + 1e-3
        assert shifted[name]["value"] > shifted[name]["floor"]


def test_study_setup_takes_a_subset_of_the_parts(tmp_path):
    from physgen.study import study_setup

    configs = {"quick": {"device": "cpu"}, "full": {"device": "cuda"}}
    argv = ["--quick", "--out", str(tmp_path), "--parts", "b"]
    cfg, _ = study_setup("demo", None, configs, argv, parts=("a", "b"))
    assert cfg["parts"] == ["b"]
    cfg, _ = study_setup("demo", None, configs, ["--out", str(tmp_path)], parts=("a", "b"))
    assert cfg["parts"] == ["a", "b"]
    with pytest.raises(SystemExit):
        study_setup("demo", None, configs, [*argv[:3], "--parts", "c"], parts=("a", "b"))


@pytest.mark.slow  # reads (or generates) darcy-32 and trains five small models for 2 steps
def test_coarse_fine_parts_run_end_to_end_on_a_tiny_budget(study, tmp_path):
    cfg = {**study.CONFIGS["quick"], "n_train": 32, "steps": 2, "members": 2,
           "sampling_steps": 2}  # fmt: skip
    cfg["paired"] = {**cfg["paired"], "n_test": 4, "n_ref": 8}
    results, tables = study.run_coarse_fine(cfg, ["paired", "unpaired"])
    paired = {r["method"]: r for r in results["paired"]}
    assert {"bicubic (coarse solve)", "U-Net regressor", "pix2pix", "CVAE"} <= set(paired)
    unpaired = {r["method"]: r for r in results["unpaired"]}
    truth = unpaired["fine solver (the truth)"]
    assert truth["rel_l2"] == 0.0 and truth["residual"] < 1e-4  # float32 storage rounding
    # The identity map of the unpaired part is the bicubic row of the paired part.
    identity = unpaired["identity (bicubic coarse)"]
    assert identity["rel_l2"] == pytest.approx(paired["bicubic (coarse solve)"]["rel_l2"])
    assert identity["lsd"]["value"] == pytest.approx(paired["bicubic (coarse solve)"]["lsd"])
    assert "pix2pix, paired (upper bound)" in unpaired and len(tables) == 2
