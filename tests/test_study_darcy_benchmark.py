"""The Darcy benchmark study: its rows, mean rows, resume, retraining on a changed setting,
and one real end-to-end pass of every family on tiny fields."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from physgen.paths import load_module_from_path

STUDY = Path(__file__).parents[1] / "studies" / "darcy_benchmark" / "run.py"


@pytest.fixture(scope="module")
def study() -> Any:
    return load_module_from_path(STUDY, "darcy_benchmark_study_run")


def _tiny(study: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(study.CONFIGS["quick"])
    cfg.update(
        dataset={"problem": "darcy", "params": {"n": 8}, "n_train": 48, "n_ref": 40},
        seeds=[1, 2], budget_batches=3, batch_size=8, n_samples=20, fm_steps=2,
        threads=None,
        diffusion={"prediction": "v", "sampler": "ddim", "steps": 2},
        diffusion_eps={"prediction": "eps", "sampler": "ddpm", "steps": 2},
        unet={"channels": [4, 8], "blocks": 1},
        vae={"latent_dim": 4, "channels": [4, 8], "hidden": [16]},
        glow={"levels": 2, "steps": 1, "checker_steps": 1, "hidden": 8},
        gan={"latent_dim": 4, "channels": [4, 8], "n_critic": 2},
    )  # fmt: skip
    return cfg


def _fake_row(values: dict[tuple[str, int], float], calls: list[tuple[str, int]]) -> Any:
    """A trainer that returns a known RE and W1 per (family, seed) and counts its calls."""

    def trainer(key: str, seed: int, data: Any, cfg: dict[str, Any]) -> dict[str, Any]:
        calls.append((key, seed))
        v = values[(key, seed)]
        metric = {"value": 2 * v, "floor": 0.1, "p_value": 0.5}
        row = {"family": key, "seed": seed, "re": v, "marginal_w1": metric, "mmd2": metric}
        row["projected"] = {"re": v / 100, "marginal_w1": metric, "mmd2": metric}
        return row

    return trainer


def test_rows_mean_rows_resume_and_retrain_on_a_changed_setting(study: Any, tmp_path: Path) -> None:
    cfg = _tiny(study)
    values = {("fm", 1): 1.0, ("fm", 2): 3.0, ("vae", 1): 5.0, ("vae", 2): 9.0}
    calls: list[tuple[str, int]] = []
    trainer = _fake_row(values, calls)
    result = study.run_study(cfg, tmp_path, ["fm", "vae"], trainer=trainer)
    assert calls == [("fm", 1), ("fm", 2), ("vae", 1), ("vae", 2)]
    assert [r["key"] for r in result["rows"]] == ["fm/seed1", "fm/seed2", "vae/seed1", "vae/seed2"]
    fm = result["summary"]["fm"]
    # mean and sample std of (1, 3) and of (2, 6); the projected RE is a hundredth.
    assert fm["re"]["mean"] == pytest.approx(2.0) and fm["re"]["std"] == pytest.approx(2**0.5)
    assert fm["marginal_w1"]["mean"] == pytest.approx(4.0)
    assert fm["projected_re"]["mean"] == pytest.approx(0.02)
    assert result["summary"]["vae"]["re"]["mean"] == pytest.approx(7.0)
    table = (tmp_path / "results.md").read_text()
    assert "| flow matching (OT) | 2 ± 1.4 |" in table
    assert "| conv VAE | 7 ± 2.8 |" in table
    # The headline: RE, W1, MMD², σ ratio, then the projected RE, W1 and MMD².
    assert "| flow matching (OT) | 2 ± 1.4 | 4 ± 2.8 | 4 ± 2.8 | – | 0.02 ± 0.014 | 4 ± 2.8 |" in (
        table
    )
    # Resume: nothing is retrained.
    calls.clear()
    study.run_study(cfg, tmp_path, ["fm", "vae"], trainer=trainer)
    assert calls == []
    # A changed setting retrains exactly the rows it shapes.
    cfg["vae"]["latent_dim"] = 8
    study.run_study(cfg, tmp_path, ["fm", "vae"], trainer=trainer)
    assert calls == [("vae", 1), ("vae", 2)]
    calls.clear()
    cfg["lr"] = 1e-3
    study.run_study(cfg, tmp_path, ["fm", "vae"], trainer=trainer)
    assert len(calls) == 4
    # A run of a subset keeps the other families' rows.
    calls.clear()
    result = study.run_study(cfg, tmp_path, ["fm"], trainer=trainer)
    assert calls == [] and set(result["summary"]) == {"fm", "vae"}


def test_every_family_names_the_settings_it_depends_on(study: Any) -> None:
    cfg = _tiny(study)
    keys = [f[0] for f in study.FAMILIES]
    assert set(study._OWN) == set(keys)
    base = {k: study.fingerprint(k, cfg, "d") for k in keys}
    changed = copy.deepcopy(cfg)
    changed["physics"]["fm"] = 2.0
    moved = {k for k in keys if study.fingerprint(k, changed, "d") != base[k]}
    assert moved == {"fm-physics", "fm-physics-unroll"}
    assert study.fingerprint("fm", cfg, "other-data") != base["fm"]


def test_a_failing_row_is_recorded_and_the_rest_go_on(study: Any, tmp_path: Path) -> None:
    cfg = _tiny(study)
    cfg["seeds"] = [1]

    def trainer(key: str, seed: int, data: Any, cfg: dict[str, Any]) -> dict[str, Any]:
        if key == "glow":
            raise FloatingPointError("non-finite loss at step 2")
        return _fake_row({(key, seed): 1.0}, [])(key, seed, data, cfg)

    result = study.run_study(cfg, tmp_path, ["glow", "fm"], trainer=trainer)
    assert result["rows"][0]["error"].startswith("FloatingPointError: non-finite")
    assert set(result["summary"]) == {"fm"}
    with pytest.raises(ValueError, match="unknown families"):
        study.run_study(cfg, tmp_path, ["nope"], trainer=trainer)


def test_the_floor_row_scores_the_data_at_the_solver_floor(study: Any) -> None:
    data = study.load_data({"problem": "darcy", "params": {"n": 8}, "n_train": 32, "n_ref": 40})
    floor = study.floor_scores(data, 20, seed=0)
    assert floor["re"] < 1e-5  # float32 storage of float64 solutions
    assert floor["std_ratio"] == pytest.approx([1.0, 1.0], abs=0.5)
    # The projection of the data onto its own solver changes nothing measurable.
    projected = study.projected_score(data.ref[:20], data, seed=0)
    assert projected["re"] < 1e-5
    noisy = data.ref[:20] + 0.05 * torch.randn(data.ref[:20].shape)
    assert study.score(noisy, data, seed=0)["re"] > 1e3 * floor["re"]  # negative control


def test_every_family_trains_samples_and_scores_end_to_end(study: Any, tmp_path: Path) -> None:
    cfg = _tiny(study)
    cfg["seeds"] = [1]
    result = study.run_study(cfg, tmp_path, None, save_samples=True)
    assert [r.get("error") for r in result["rows"]] == [None] * len(study.FAMILIES)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == sorted(
        f"{f[0]}-seed1.nc" for f in study.FAMILIES
    )
    from physgen.data import open_fields

    for row in result["rows"]:
        assert row["steps"] == (1 if row["family"].startswith("wgan") else 3)
        # The file holds the row's n_samples draws, its first four the row's preview.
        path = study.samples_path(tmp_path, row["family"], 1)
        with open_fields(path, nonfinite="ignore") as ds:
            stored = np.stack([ds[f].values for f in ("a", "u")], axis=1)
            attrs = {k: ds.attrs.get(k) for k in ("family", "seed", "steps")}
        assert attrs == {"family": row["family"], "seed": 1, "steps": row["steps"]}
        assert len(stored) == cfg["n_samples"]
        preview = np.asarray(row["preview"], dtype=np.float32)
        np.testing.assert_allclose(stored[:4], preview, rtol=2e-7, atol=0, equal_nan=True)
        assert not np.allclose(stored[:4], 0.5 * preview, rtol=1e-2)  # control: another scale
        assert row["re"] > 0 and row["projected"]["re"] < 1e-5
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert set(on_disk["summary"]) == {f[0] for f in study.FAMILIES}
    assert (tmp_path / "frontier.png").stat().st_size > 0
    assert (tmp_path / "samples.png").stat().st_size > 0


def test_saved_samples_read_back_in_physical_units_and_a_missing_file_retrains(
    study: Any, tmp_path: Path
) -> None:
    from physgen.data import open_fields

    data = study.load_data({"problem": "darcy", "params": {"n": 8}, "n_train": 32, "n_ref": 8})
    z = data.ref[:5].double()
    path = study.write_samples(z.float(), data, tmp_path / "s.nc", {"family": "fm", "seed": 1})
    with open_fields(path) as ds:
        back = data.problem.to_tensor(ds)
        assert ds.attrs["problem"] == "darcy" and ds.attrs["family"] == "fm"
        assert "generated" in ds.attrs["source"]  # not the reference generator's own
    # float32 storage of the physical fields: relative error of a float32 rounding.
    expected = data.physical(z.float())
    assert torch.allclose(back, expected, rtol=2e-7, atol=0)
    # The z-scores themselves (the wrong units) are not what is stored.
    assert not torch.allclose(back, z, rtol=1e-2)

    cfg = _tiny(study)
    cfg["seeds"] = [1]
    calls: list[tuple[str, int]] = []
    base = _fake_row({("fm", 1): 1.0, ("vae", 1): 2.0}, calls)

    def trainer(key: str, seed: int, data: Any, cfg: dict[str, Any], samples_to: Path) -> Any:
        samples_to.parent.mkdir(parents=True, exist_ok=True)
        samples_to.write_text("samples")
        return base(key, seed, data, cfg)

    study.run_study(cfg, tmp_path / "run", ["fm", "vae"], trainer=trainer, save_samples=True)
    assert calls == [("fm", 1), ("vae", 1)]
    assert study.samples_path(tmp_path / "run", "vae", 1).read_text() == "samples"
    calls.clear()
    study.samples_path(tmp_path / "run", "vae", 1).unlink()
    study.run_study(cfg, tmp_path / "run", ["fm", "vae"], trainer=trainer, save_samples=True)
    assert calls == [("vae", 1)]  # only the row whose samples are gone


def test_cli_save_samples_reaches_the_study(
    study: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []

    class StopError(Exception):
        pass

    def record(cfg: dict[str, Any], out: Path, families: Any, **options: Any) -> Any:
        seen.append(options)
        raise StopError

    monkeypatch.setattr(study, "run_study", record)
    for flag, want in (([], False), (["--save-samples"], True)):
        with pytest.raises(StopError):
            study.main(["--quick", "--out", str(tmp_path), *flag])
        assert seen[-1] == {"save_samples": want}
