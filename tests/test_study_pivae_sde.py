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
    assert len(calls) == 4 and calls[2]["form"] == "u"
    for r in rows:
        assert 0 <= r["u_std_err"] < 10 and r["train_s"] >= 0
    table = (tmp_path / "results.md").read_text()
    assert "official code, run 1 | forward | 100" in table
    assert table.count(", mean**") == 2  # one mean row per two-seed group

    # A rerun with the same settings reuses every row; a changed setting trains again.
    assert study.main(argv) == 0
    assert len(calls) == 4
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == rows
    assert study.main([*argv[:1], "3", *argv[2:]]) == 0
    assert len(calls) == 8
