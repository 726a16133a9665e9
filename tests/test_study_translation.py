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
    z = ((phys[:, 1:] - mean) / scale).float()
    return {"train": z, "test": z, "phys": phys, "mean": mean, "scale": scale, "problem": problem}


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
