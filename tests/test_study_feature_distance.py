"""The feature-distance study: its degradations are what they claim, and a tiny pass writes
the shift and ranking tables."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from physgen.data import open_fields
from physgen.diagnostics import feature_distance
from physgen.diagnostics.feature_encoder import load_feature_encoder
from physgen.diagnostics.ranking import rank_correlation
from physgen.paths import load_module_from_path
from physgen.problem import load

STUDY = Path(__file__).parents[1] / "studies" / "feature_distance" / "run.py"


@pytest.fixture(scope="module")
def study() -> Any:
    return load_module_from_path(STUDY, "feature_distance_study_run")


def test_degradations_do_what_they_say(study: Any) -> None:
    x = torch.randn(400, 2, 16, 16, dtype=torch.float64)
    models = study.degradations(seed=0)
    assert torch.equal(models["data"](x), x)
    # White noise of std s: the added part has std s (to a few standard errors).
    added = models["noise 0.2"](x) - x
    n = added.numel()
    assert abs(float(added.std()) - 0.2) < 4 * 0.2 / (2 * n) ** 0.5
    # Collapse onto k fields: exactly k distinct fields, each one of the inputs.
    collapsed = models["collapse 10"](x)
    assert len(torch.unique(collapsed.flatten(1), dim=0)) == 10
    same = collapsed.flatten(1)[:, None] == x.flatten(1)[None]  # (400, 400, 512)
    assert same.all(2).any(1).all()
    # The pressure scaled, the permeability untouched.
    scaled = models["u × 1.2"](x)
    assert torch.equal(scaled[:, 0], x[:, 0]) and torch.allclose(scaled[:, 1], 1.2 * x[:, 1])
    # Blur lowers the pixel variance of white noise (negative control: noise raises it).
    assert models["blur 1.0"](x).var() < 0.5 * x.var() < models["noise 0.4"](x).var()


def _tiny_config(study: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The quick configuration on a tiny Darcy recipe (16², 64 training fields) made under
    ``tmp_path``, with a 2-step encoder and 2 floor splits."""
    monkeypatch.setenv("PHYSGEN_DATA_DIR", str(tmp_path / "data"))
    recipe = tmp_path / "tiny-darcy.toml"
    recipe.write_text(
        'problem = "darcy"\nseed = 1\n[params]\nn = 16\n'
        "[splits]\ntrain = 64\nvalid = 16\ntest = 16\n"
    )
    cfg = copy.deepcopy(study.CONFIGS["quick"])
    cfg.update(dataset=str(recipe), threads=None, encoder_steps=2, splits=2)
    return cfg


def test_tiny_pass_writes_both_tables(
    study: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _tiny_config(study, tmp_path, monkeypatch)
    cfg.update(shifts=[0.5], n_models=16)
    result = study.run_study(cfg, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [row["case"] for row in saved["shift"]] == ["none", "u × 1.5", "a × 1.5"]
    assert set(saved["ranking"]["models"]) == set(study.degradations(0))
    assert set(result["ranking"]["correlation"]) == {
        "feature", "kid", "physics frechet", "physics kid"
    }  # fmt: skip
    assert all(-1.0 <= c["spearman"] <= 1.0 for c in result["ranking"]["correlation"].values())
    # Each correlation ranks the consensus against its own distance's values.
    rank = result["ranking"]
    names = list(rank["models"])
    for key, c in rank["correlation"].items():
        again = rank_correlation(
            [rank["consensus"][n] for n in names], [rank["models"][n][key]["value"] for n in names]
        )
        assert c["spearman"] == pytest.approx(again.spearman, abs=1e-12)
        assert c["kendall"] == pytest.approx(again.kendall, abs=1e-12)
    # The unchanged fields' KID and physics KID, recomputed from the encoder and the splits.
    files, path = study._encoder(cfg)
    encoder = load_feature_encoder(path)
    stacks = {}
    for split, limit in (("train", cfg["n_models"]), ("valid", 1000), ("test", 1000)):
        with open_fields(files[split]) as ds:
            stacks[split] = encoder.stack(ds, limit, split, torch.float64)
    base, ref = stacks["train"], torch.cat([stacks["valid"], stacks["test"]])
    options = {"num_splits": cfg["splits"], "seed": cfg["seed"], "metric": "kid"}
    physics = encoder.physics_features(load("darcy", n=16), ref)
    checks = (("kid", encoder.features, options), ("physics kid", physics, options),
              ("physics frechet", physics, {**options, "metric": "frechet"}))  # fmt: skip
    for key, features, opts in checks:
        direct = feature_distance(features, base, ref, **opts)
        for k in ("value", "floor", "floor_std"):
            assert rank["models"]["data"][key][k] == pytest.approx(direct[k], rel=1e-12)
    assert {"feature_kid", "physics_feature_frechet", "physics_feature_kid"} <= set(
        saved["shift"][0]
    )
    assert "Spearman ρ" in (tmp_path / "out" / "results.md").read_text()


def test_trained_families_are_read_from_samples_files_and_ranked(
    study: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from physgen.data import write_fields

    cfg = _tiny_config(study, tmp_path, monkeypatch)
    files, encoder_path = study._encoder(cfg)
    folder, other = tmp_path / "samples", tmp_path / "samples-2"
    rng = np.random.default_rng(0)
    with open_fields(files["train"], load=True) as train:
        for family, noise in (("good", 0.0), ("fair", 1.0), ("bad", 3.0)):
            ds = train.isel(sample=slice(0, 32)).copy(deep=True)
            u = ds["u"].values
            ds["u"].values = (u + noise * u.std() * rng.standard_normal(u.shape)).astype(u.dtype)
            if family == "bad":
                ds["a"].values[3, 0, 0] = np.nan  # one broken sample: left out
            where = other if family == "bad" else folder  # two folders, both read
            write_fields(ds, where / f"{family}.nc", provenance={"family": family, "seed": 1})
    encoder = load_feature_encoder(encoder_path)
    models = study.trained_models([folder, other], encoder)
    assert sorted(models) == ["bad/seed1", "fair/seed1", "good/seed1"]
    assert len(models["good/seed1"]) == 32 and len(models["bad/seed1"]) == 31
    with open_fields(files["train"]) as ds:
        direct = encoder.stack(ds, 32, "train", torch.float64)
    assert torch.equal(models["good/seed1"], direct)
    benchmark = [folder, other]
    result = study.run_study(cfg, tmp_path / "out", benchmark=benchmark, parts=("trained",))
    rank = result["trained_ranking"]
    assert "trained_ranking" in result and not {"shift", "ranking"} & set(result)
    # Each family is scored on its finite samples.
    assert {n: m["n"] for n, m in rank["models"].items()} == {
        "good/seed1": 32, "fair/seed1": 32, "bad/seed1": 31
    }  # fmt: skip
    # More noise on the pressure (1 and 3 of its std) is worse on the pooled field metrics
    # and on every distance, so every rank correlation is 1.
    order = ["good/seed1", "fair/seed1", "bad/seed1"]
    consensus = [rank["consensus"][n] for n in order]
    assert consensus == sorted(consensus)
    for key in ("feature", "kid", "physics frechet", "physics kid"):
        values = [rank["models"][n][key]["value"] for n in order]
        assert values == sorted(values), key
        assert rank["correlation"][key]["spearman"] == pytest.approx(1.0)
    assert "Ranking of the trained families" in (tmp_path / "out" / "results.md").read_text()
    # Refusals name what is wrong.
    with pytest.raises(FileNotFoundError, match="no samples files"):
        study.trained_models([tmp_path / "data"], encoder)
    (folder / "again.nc").write_bytes((folder / "good.nc").read_bytes())
    with pytest.raises(ValueError, match=r"good\.nc: a second samples file of good/seed1"):
        study.trained_models([folder], encoder)
    with pytest.raises(ValueError, match="needs the benchmark"):
        study.run_study(cfg, tmp_path / "out", parts=("trained",))
    with pytest.raises(ValueError, match=r"unknown parts \['shfit'\]"):
        study.run_study(cfg, tmp_path / "out", benchmark=benchmark, parts=("shfit",))
    with open_fields(folder / "good.nc", load=True) as ds:
        ds["a"].values[:] = np.inf  # not one finite sample
        write_fields(ds, other / "broken.nc", provenance={"family": "broken", "seed": 1})
    with pytest.raises(ValueError, match=r"broken\.nc: no finite sample"):
        study.trained_models([other], encoder)


def test_cli_parts_and_benchmark_reach_the_study_or_fail_in_one_line(
    study: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    calls: list[dict[str, Any]] = []

    def record(cfg: dict[str, Any], out: Path, **options: Any) -> dict[str, Any]:
        calls.append(options)
        return {"total_s": 0.0}

    monkeypatch.setattr(study, "run_study", record)
    out = ["--out", str(tmp_path / "out")]
    (tmp_path / "fm-seed1.nc").write_bytes(b"")  # a samples file: the folder is not empty
    assert study.main(["--benchmark", str(tmp_path), *out]) == 0  # trained joins the default
    assert calls[-1] == {"benchmark": [tmp_path], "parts": ("shift", "ranking", "trained")}
    assert study.main(["--parts", "ranking", *out]) == 0
    assert calls[-1] == {"benchmark": None, "parts": ("ranking",)}
    # Refusals: one usage error line naming the argument, before any work.
    for argv, message in (
        (["--benchmark", str(tmp_path / "nonexistent")], "--benchmark: no such folder(s)"),
        (["--parts", "trained"], "--parts trained needs --benchmark DIR"),
        (["--benchmark", str(tmp_path / "out")], "--benchmark: no samples files (*.nc) in"),
    ):
        (tmp_path / "out").mkdir(exist_ok=True)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            study.main([*argv, *out])
        assert exit_info.value.code == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(errors) == 1 and message in errors[0]
    assert len(calls) == 2  # control: the refused calls never reached the study
