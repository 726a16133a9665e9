"""The PI-VAE study script: rows, table, and resuming an interrupted run without retraining."""

from __future__ import annotations

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
