"""The PI-VAE study script: rows, table, and resuming an interrupted run without retraining."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from physgen.paths import load_module_from_path

STUDY = Path(__file__).parents[1] / "studies" / "pivae_sde" / "run.py"


def test_study_writes_both_forms_and_resumes_finished_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = load_module_from_path(STUDY, "pivae_sde_study_run")
    argv = ["--epochs", "2", "--samples", "200", "--seeds", "0", "1", "--tasks", "forward"]
    argv += ["--rows", "main", "--out", str(tmp_path)]
    calls: list[dict[str, Any]] = []
    real = study.train_row

    def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(study, "train_row", counted)
    assert study.main(argv) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(r["method"], r["seed"]) for r in rows] == [
        (method, seed) for method in study.VARIANTS for seed in (0, 1)
    ]
    n_rows = 2 * len(study.VARIANTS)
    assert len(calls) == n_rows and calls[-1]["form"] == "u"
    for r in rows:
        assert 0 <= r["u_std_err"] < 10 and r["train_s"] >= 0
    table = (tmp_path / "results.md").read_text()
    assert "official code, run 1 | forward | 100" in table
    assert table.count(", mean**") == len(study.VARIANTS)  # one per two-seed group

    # A rerun with the same settings reuses every row; a changed setting trains again.
    assert study.main(argv) == 0
    assert len(calls) == n_rows
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == rows
    assert study.main([*argv[:1], "3", *argv[2:]]) == 0
    assert len(calls) == 2 * n_rows


def test_coupling_solves_reproduce_the_data_and_the_table_is_complete() -> None:
    """solve(k, f) of data pairs returns the data's u; the table carries every quantity."""
    import torch

    from physgen.metrics.distribution import total_std
    from physgen.problem import load

    coupling = load_module_from_path(STUDY.with_name("coupling.py"), "pivae_sde_coupling")
    study = load_module_from_path(STUDY, "pivae_sde_study_run_coupling")
    problem = load("sde1d")
    fields = problem.to_tensor(problem.generate(40, seed=1))  # (40, 3, 401) float64: k, u, f
    solved = coupling.solve_pairs(problem, fields[:, 0], fields[:, 2])
    torch.testing.assert_close(solved, fields[:, 1], rtol=0, atol=1e-12)
    model, _ = study.train_model(
        problem, fields.float(), "forward", epochs=1, seed=0, train={"batch_size": 20}
    )
    table = coupling.coupling_table(model, problem, fields.float(), n=40)
    assert len(table) == 13 and all(torch.isfinite(torch.tensor(v)) for v in table.values())
    assert table["data u"] == pytest.approx(float(total_std(fields[:, 1, ::2].float())))


def test_budget_plan_matches_the_official_steps_and_sample_gradients() -> None:
    """100 official epochs = 200 steps of 1000 = 2e5 sample-gradients; each row matches one."""
    study = load_module_from_path(STUDY, "pivae_sde_study_run_budget")
    plan = study.budget_plan(100, 2000)
    batches = [overrides.get("train", {}).get("batch_size", 200) for _, overrides in plan.values()]
    epochs = [n_epochs for n_epochs, _ in plan.values()]
    steps = [n * (2000 // b) for n, b in zip(epochs, batches, strict=True)]
    assert epochs == [100, 20, 100]
    assert steps == [1000, 200, 200]  # official: 100 · 2000 // 1000 = 200
    assert [s * b for s, b in zip(steps, batches, strict=True)] == [200_000, 40_000, 200_000]
    assert all(overrides["exact_boundary"] for _, overrides in plan.values())
    with pytest.raises(ValueError, match="not a whole number of epochs"):
        study.budget_plan(3, 2000)  # 6 official steps are 0.6 epochs at batch 200


def test_budget_and_pigan_rows_are_recorded_and_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = load_module_from_path(STUDY, "pivae_sde_study_run_budget_rows")
    monkeypatch.setattr(study, "OFFICIAL_BATCH", 100)  # 2 official steps per epoch of 200
    real_pigan = study._pigan.pigan_row
    calls: list[str] = []

    def small_pigan(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append("pigan")
        return real_pigan(*args, **kwargs, n_eval=8, width=8, critic_width=8)

    def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append("pivae")
        return real_row(*args, **kwargs)

    real_row = study.train_row
    monkeypatch.setattr(study._pigan, "pigan_row", small_pigan)
    monkeypatch.setattr(study, "evaluate_sde", functools.partial(study.evaluate_sde, n_eval=200))
    monkeypatch.setattr(study, "train_row", counted)
    argv = ["--epochs", "2", "--samples", "200", "--tasks", "forward", "--seeds", "3"]
    argv += ["--budget-seeds", "10", "11", "--rows", "budget", "pigan", "--out", str(tmp_path)]
    assert study.main(argv) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    budget = [r for r in rows if r["section"] == "budget"]
    assert [r["seed"] for r in budget] == [10, 10, 10, 11, 11, 11]
    # (epochs, batch, steps): official 2 epochs = 4 steps of 100 = 800 sample-gradients.
    assert [(r["epochs"], r["batch_size"], r["steps"]) for r in budget[:3]] == [
        (2, 200, 2),
        (4, 200, 4),
        (2, 100, 4),
    ]
    (pigan,) = [r for r in rows if r["method"] == study.PIGAN_METHOD]
    assert pigan["seed"] == 3 and pigan["steps"] == 2 and pigan["section"] == "main"
    table = (tmp_path / "results.md").read_text()
    assert table.count(" ± ") == 3 * 9  # 7 errors, residual, seconds: mean ± sd of 2 seeds
    runs = "official code, run 1: 100; official code, run 2: 100, 200, 300, 400"
    assert f"| {runs} | none (the script sets no seed) | WeihengZ/PI-VAE" in table
    assert calls == ["pivae"] * 6 + ["pigan"]
    assert study.main(argv) == 0  # everything finished: nothing is trained again
    assert len(calls) == 7
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == rows
