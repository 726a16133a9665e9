"""The flow anomaly benchmark: the other regime's pairs really come from another Reynolds
number (the nominal one-step defect says so, the own-Re defect does not), the data builder's
fields and splits, the table on known scores, and one tiny end-to-end pass."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from physgen.paths import load_module_from_path
from physgen.problem import load, rms
from physgen.recipes import load_recipe

STUDY = Path(__file__).parents[1] / "studies" / "anomaly" / "run.py"
# A short spin-up on 16² keeps the generator fast; Δt and the integrator are the recipe's.
PARAMS = {"n": 16, "reynolds": 100.0, "t_start": 1.0, "t_end": 1.0625, "dt_save": 0.0625,
          "dt": 0.0125}  # fmt: skip
EPS32 = 2.0**-24  # unit round-off of float32 storage


@pytest.fixture(scope="module")
def study() -> Any:
    return load_module_from_path(STUDY, "anomaly_study_run_flow")


@pytest.fixture(scope="module")
def flow(study: Any) -> Any:
    problem = load("kolmogorov", **PARAMS)
    nominal = [study.regime_fields(problem, {}, n, seed) for seed, n in ((0, 24), (1, 12), (2, 12))]
    other = [study.regime_fields(problem, {"reynolds": 200.0}, 12, s) for s in (3, 4)]
    return study.FlowData(*nominal, *other, problem)


def _floor(pairs: torch.Tensor) -> torch.Tensor:
    """Round-off floor of the relative defect of float32-stored pairs ``(N, 2, n, n)``:
    ε·‖(ω₀, ω₁)‖ / ‖ω₁ − ω₀‖ (S is close to the identity over Δt, so it passes errors on)."""
    return EPS32 * rms(pairs) / rms(pairs[:, 1] - pairs[:, 0])


def _laplacian(w: torch.Tensor) -> torch.Tensor:
    """Spectral Laplacian on (0, 2π)² (integer wavenumbers)."""
    n = w.shape[-1]
    k = torch.fft.fftfreq(n, 1 / n, dtype=torch.float64)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    return torch.fft.ifft2(-k2 * torch.fft.fft2(w)).real


def test_other_reynolds_pairs_break_the_nominal_step_by_the_viscous_term(
    study: Any, flow: Any
) -> None:
    nominal = flow.problem
    defect = study.pair_residual(nominal)
    pairs = study.flow_fields(flow.test, "pair")
    other = study.flow_fields(flow.regime, "pair")
    assert bool((defect(pairs) < _floor(pairs)).all())  # the control: nominal data at the floor
    own = study.pair_residual(study._variant(nominal, {"reynolds": 200.0}))
    assert bool((own(other) < _floor(other)).all())  # exact solutions of their own regime
    assert bool((defect(other) > 1e4 * _floor(other)).all())  # far above it under Re = 100
    # What breaks it is the viscous term: r ≈ (ν_200 − ν_100) Δω at the interval's midpoint.
    # The neglected term is the advection of the O(Δt·Δν·Δω) difference of the two
    # trajectories within the step: relative size ~ Δt·|∇u|/2, with the strain |∇u| ~ RMS ω.
    r = nominal.step_residual(flow.regime)[:, 0, 0]
    mid = flow.regime[:, 0].mean(1)
    bound = 0.5 * nominal.params.dt_save * rms(mid)
    for nu_other, holds in ((1 / 200, True), (1 / 400, False)):  # negative control: Re = 400
        estimate = (nu_other - 1 / 100) * _laplacian(mid)
        mismatch = rms(r - estimate) / rms(estimate)
        assert bool(((mismatch < bound) == holds).all())


def test_flow_fields_and_splits(study: Any, flow: Any) -> None:
    snap = study.flow_fields(flow.train, "snapshot")
    pair = study.flow_fields(flow.train, "pair")
    assert snap.shape == (24, 1, 16, 16) and pair.shape == (24, 2, 16, 16)
    torch.testing.assert_close(snap[:, 0], flow.train[:, 0, 0], rtol=0, atol=0)
    torch.testing.assert_close(pair[:, 1], flow.train[:, 0, 1], rtol=0, atol=0)
    data = study.flow_data(flow, "pair")
    assert [len(x) for x in (data.train, data.valid, data.test)] == [24, 12, 12]
    # z-score moments from the training split alone, per channel (frame).
    torch.testing.assert_close(data.mean, pair.mean((0, 2, 3)))
    torch.testing.assert_close(data.scale, pair.std((0, 2, 3)))
    z = data.normalized(data.train).double()
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(2, dtype=torch.float64),
                               atol=1e-6, rtol=0)  # fmt: skip
    with pytest.raises(ValueError, match="kind"):
        study.flow_fields(flow.train, "frames")
    with pytest.raises(ValueError, match="trajectories"):
        study.flow_fields(flow.train[:, :, :1], "pair")


def test_flow_table_on_known_scores(study: Any) -> None:
    rng = np.random.default_rng(0)
    sep = {"normal": rng.uniform(0, 1, 20), "reynolds": rng.uniform(2, 3, 20)}
    same = {"normal": np.zeros(20), "reynolds": np.zeros(20)}
    tables = {
        kind: study.detection_table({"perfect": sep, "ties": same}, study.FLOW_ANOMALIES)
        for kind in ("snapshot", "pair")
    }
    tables["pair"]["residual"] = {"reynolds": {"auroc": 1.0, "se": 0.0}}
    tables["pair"]["glow NLL, batches of 3"] = {
        "batch_size": 3,
        "valid_auroc": 0.97,
        "reynolds": {"auroc": 0.9, "se": 0.05},
    }
    table = study.flow_table(tables)
    assert table["perfect"]["snapshot"]["auroc"] == 1.0
    assert table["ties"]["pair"]["auroc"] == 0.5
    assert set(table["residual"]) == {"pair"} and next(iter(table)) == "residual"
    text = study.markdown(table, study.FLOW_FIELDS)
    assert "| residual | n/a | 1.000 ± 0.000 |" in text
    assert "| glow NLL, batch mean | n/a | 0.900 ± 0.050 (M = 3) |" in text


def test_flow_recipe_and_regime_differ_in_the_reynolds_number_alone(study: Any) -> None:
    cfg = study.FLOW_CONFIGS["quick"]
    problem = load_recipe(cfg["dataset"]).build_problem()
    other = study._variant(problem, cfg["regime"])
    changed = {k for k, v in vars(problem.params).items() if vars(other.params)[k] != v}
    assert changed == {"reynolds"}
    assert other.params.reynolds == 2 * problem.params.reynolds


def test_tiny_flow_end_to_end(
    study: Any, flow: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Record what the scorer and the batch table are handed (they run as they are).
    seen: dict[str, list[Any]] = {"sets": [], "scores": [], "choose_on": []}
    scorer, batches = study.learned_scores, study.batch_table

    def learned_scores(models: Any, data: Any, sets: Any, *args: Any) -> Any:
        seen["sets"].append(sets)
        seen["scores"].append(scorer(models, data, sets, *args))
        return seen["scores"][-1]

    def batch_table(scores: Any, sizes: Any, anomalies: Any, choose_on: str) -> Any:
        seen["choose_on"].append(choose_on)
        return batches(scores, sizes, anomalies, choose_on)

    monkeypatch.setattr(study, "learned_scores", learned_scores)
    monkeypatch.setattr(study, "batch_table", batch_table)
    flow = dataclasses.replace(flow, regime=flow.regime[:10])  # 10 anomalous, 12 normal
    cfg = copy.deepcopy(study.FLOW_CONFIGS["quick"])
    cfg.update(
        threads=None, iwae_samples=2, batch_sizes=[2, 3],
        vae={"latent_dim": 4, "channels": [4, 8], "hidden": [16], "steps": 2, "batch_size": 8},
        glow={"levels": 2, "steps": 1, "checker_steps": 1, "hidden": 8, "fit_steps": 2,
              "batch_size": 8},
    )  # fmt: skip
    result = study.run_flow(cfg, tmp_path, flow=flow)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert (result["n_normal"], result["n_anomalous"]) == (12, {"reynolds": 10})
    # Each kind scores the test set against the other regime's test draws, and chooses the
    # batch size on the validation pair alone (valid against the other regime's valid draws).
    for kind, sets in zip(("snapshot", "pair"), seen["sets"], strict=True):
        want = {"normal": flow.test, "reynolds": flow.regime, "valid": flow.valid,
                "valid reynolds": flow.regime_valid}  # fmt: skip
        assert list(sets) == list(want)
        for key, x in want.items():
            assert torch.equal(sets[key], study.flow_fields(x, kind)), (kind, key)
    assert seen["choose_on"] == ["valid reynolds", "valid reynolds"]
    # Typicality is |NLL − Ĥ| with Ĥ the mean NLL of the nominal validation split.
    for scores in seen["scores"]:
        nll, typical = scores["glow NLL"], scores["glow typicality"]
        entropy = nll["valid"].mean()
        for key in ("normal", "reynolds"):
            np.testing.assert_allclose(typical[key], np.abs(nll[key] - entropy), rtol=1e-12)
            other = np.abs(nll[key] - nll["normal"].mean())  # control: Ĥ from the test set
            assert not np.allclose(typical[key], other, rtol=1e-6)
    # The defect summary is that of the test pairs of each regime.
    defect = study.pair_residual(flow.problem)
    for key, x in (("normal", flow.test), ("reynolds", flow.regime)):
        d = defect(study.flow_fields(x, "pair")).numpy()
        assert result["defect"][key] == {"median": float(np.median(d)), "min": float(d.min()),
                                         "max": float(d.max())}  # fmt: skip
    assert saved["auroc"] == result["auroc"]
    table = result["auroc"]
    assert {"glow NLL", "glow likelihood ratio", "vae neg. ELBO", "spectrum Mahalanobis"} <= set(
        table
    )
    assert all(set(row) == {"snapshot", "pair"} for k, row in table.items() if k != "residual")
    # A snapshot has no residual; on pairs the nominal defect separates the regimes exactly.
    assert set(table["residual"]) == {"pair"}
    assert table["residual"]["pair"]["auroc"] == 1.0
    assert result["defect"]["reynolds"]["min"] > 1e4 * result["defect"]["normal"]["max"]
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("| detector |") and "| residual | n/a |" in md


def test_load_flow_reads_a_recipe_as_trajectories_and_draws_the_other_regime(
    study: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHYSGEN_DATA_DIR", str(tmp_path / "data"))
    recipe = tmp_path / "tiny-kolmogorov.toml"
    params = "\n".join(f"{k} = {float(v) if k != 'n' else 8}" for k, v in PARAMS.items())
    recipe.write_text(
        f'problem = "kolmogorov"\nseed = 0\ndescription = "tiny"\n[params]\n{params}\n'
        "[splits]\ntrain = 6\nvalid = 3\ntest = 4\n"
    )
    flow = study.load_flow({"dataset": str(recipe), "regime": {"reynolds": 200.0}})
    shapes = [tuple(x.shape) for x in (flow.train, flow.valid, flow.test, flow.regime,
                                       flow.regime_valid)]  # fmt: skip
    assert shapes == [(6, 1, 2, 8, 8), (3, 1, 2, 8, 8), (4, 1, 2, 8, 8), (4, 1, 2, 8, 8),
                      (3, 1, 2, 8, 8)]  # fmt: skip
    # The stored splits are the nominal regime's exact output: the defect at the floor, and
    # the files' frames are in time order (swapped frames break the step).
    defect = study.pair_residual(flow.problem)
    pairs = study.flow_fields(flow.test, "pair")
    assert bool((defect(pairs) < _floor(pairs)).all())
    assert bool((defect(pairs.flip(1)) > 1e4 * _floor(pairs)).all())
    other = study.flow_fields(flow.regime, "pair")
    assert bool((defect(other) > 1e4 * _floor(other)).all())
    assert flow.problem.params.reynolds == 100.0
    # The other regime's test and validation draws are distinct fields (other seeds), and
    # stored like the splits: float32 values.
    flat = [x.flatten(1) for x in (flow.regime, flow.regime_valid)]
    assert torch.cdist(*flat).amin() > 1e-3 * flat[0].norm(dim=1).amin()
    for x in (flow.regime, flow.regime_valid):
        assert torch.equal(x.float().double(), x)
    other_problem = study._variant(flow.problem, {"reynolds": 200.0})
    exact = other_problem.to_tensor(other_problem.generate(4, seed=1001))
    assert torch.equal(flow.regime, exact.float().double())
    assert not torch.equal(exact.float().double(), exact)  # control: the solver's float64


def test_cli_flow_benchmark_reads_its_own_configuration(
    study: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class StopError(Exception):
        pass

    seen: list[tuple[dict[str, Any], Path]] = []

    def record(cfg: dict[str, Any], out: Path) -> Any:
        seen.append((cfg, out))
        raise StopError

    monkeypatch.setattr(study, "run_flow", record)
    monkeypatch.setenv("PHYSGEN_RUNS_DIR", str(tmp_path))
    with pytest.raises(StopError):
        study.main(["--quick", "--benchmark", "flow"])
    assert seen == [(study.FLOW_CONFIGS["quick"], tmp_path / "anomaly-flow-quick")]
    monkeypatch.setattr(study, "run_study", record)  # control: the Darcy benchmark
    with pytest.raises(StopError):
        study.main(["--quick"])
    assert seen[-1] == (study.CONFIGS["quick"], tmp_path / "anomaly-quick")
