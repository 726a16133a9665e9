"""The feature encoder as a product: ``data make --feature-encoder`` stores it beside the data
as a plain checkpoint, and ``evaluate`` reports the Fréchet feature distance beside its floor."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from physgen.cli import main
from physgen.cli.evaluate import format_table
from physgen.data import open_fields
from physgen.diagnostics import feature_distance, feature_frechet, log_residual_feature
from physgen.diagnostics.feature_encoder import (
    ENCODER_FILE,
    feature_distance_entry,
    load_feature_encoder,
    train_feature_encoder,
)
from physgen.metrics import compare_to_floor
from physgen.problem import load
from physgen.training.checkpoint import read_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Darcy data set (16² cells) made with its feature encoder."""
    d = tmp_path_factory.mktemp("features")
    recipe = d / "tiny-darcy.toml"
    recipe.write_text(
        'problem = "darcy"\nseed = 3\n[params]\nn = 16\n'
        "[splits]\ntrain = 160\nvalid = 40\ntest = 80\n"
    )
    argv = ["data", "make", str(recipe), "--out", str(d / "data"), "--quiet"]
    assert main([*argv, "--feature-encoder", "--feature-steps", "150"]) == 0
    return d / "data"


def test_the_encoder_is_a_plain_checkpoint_beside_the_data(made: Path) -> None:
    contents = read_checkpoint(made / ENCODER_FILE)  # weights-only: no code to run
    assert contents["kind"] == "physgen-feature-encoder/1"
    assert contents["fields"] == ["a", "u"] and contents["train_file"] == "train.nc"
    encoder = load_feature_encoder(made / ENCODER_FILE)
    with open_fields(made / "train.nc") as ds:
        z = encoder.stack(ds, 1000, "train.nc").double()
    # The stored z-score is the training split's own: mean 0, std 1 per field.
    assert z.mean((0, 2, 3)).abs().max() < 1e-6
    assert (z.std((0, 2, 3)) - 1).abs().max() < 1e-3
    # Negative control: a checkpoint of another kind is refused by name.
    other = save_checkpoint(made.parent / "other.pt", {"model_name": "vae"})
    with pytest.raises(ValueError, match="not a feature encoder"):
        load_feature_encoder(other)


def test_trained_encoder_zero_floor_and_monotone_shift(made: Path) -> None:
    encoder = load_feature_encoder(made / ENCODER_FILE)
    features = encoder.features
    with open_fields(made / "test.nc") as ds:
        test = encoder.stack(ds, 1000, "test.nc")
    with open_fields(made / "train.nc") as ds:
        train = encoder.stack(ds, 1000, "train.nc")
    # φ: the pooled activations of both stages (16 + 32 channels) and the 32-d code, each
    # standardized over the training split: mean 0 and std 1 there (float32 network).
    phi = features(train)
    assert phi.shape == (160, 16 + 32 + 32)
    assert phi.mean(0).abs().max() < 1e-5 and (phi.std(0) - 1).abs().max() < 1e-5
    assert (features(test).std(0) - 1).abs().max() > 0.01  # another set is not standardized
    assert float(feature_frechet(features, test, test)) == pytest.approx(0.0, abs=1e-8)
    same = feature_distance(features, test, train)
    assert abs(same["value"] - same["floor"]) < 3 * same["floor_std"] + 0.2 * same["floor"]
    shifts = (0.25, 0.5, 1.0, 2.0)  # of the pressure, in its std units
    values = []
    for s in shifts:
        moved = test.clone()
        moved[:, 1] += s
        values.append(feature_distance(features, moved, train)["value"])
    assert all(a < b for a, b in itertools.pairwise(values))
    assert values[-1] > same["floor"] + 10 * same["floor_std"]


def test_evaluate_reports_the_feature_distance_beside_its_floor(
    made: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    base = ["evaluate", str(made / "test.nc"), "--ref", str(made / "train.nc")]
    flags = ["--no-figures", "--no-residual", "--permutations", "0"]
    assert main([*base, *flags, "--out", str(tmp_path / "found")]) == 0
    assert "feature_frechet" in capsys.readouterr().out
    found = json.loads((tmp_path / "found" / "metrics.json").read_text())["feature_distance"]
    assert found["encoder"] == str(made / ENCODER_FILE) and found["fields"] == ["a", "u"]
    assert {"value", "floor", "floor_std", "n"} <= set(found)
    # The numbers are d_F of the samples (test) against the reference (train) at evaluate's
    # defaults (2000 fields, 5 splits, seed 0), recomputed here: the same float64 arithmetic.
    enc = load_feature_encoder(made / ENCODER_FILE)
    with open_fields(made / "test.nc") as t, open_fields(made / "train.nc") as r:
        gen, ref = enc.stack(t, 2000, "test.nc"), enc.stack(r, 4000, "train.nc")
    want = feature_distance(enc.features, gen, ref, num_splits=5, seed=0)
    for key in ("value", "floor", "floor_std"):
        assert found[key] == pytest.approx(want[key], rel=1e-12)
    # Negative control: the roles swapped (train as the samples) give another distance.
    swapped = feature_distance(enc.features, ref, gen, num_splits=5, seed=0)
    assert swapped["value"] != pytest.approx(want["value"], rel=1e-3)
    # An explicit --feature-encoder gives the same numbers (same encoder, same splits).
    encoder = ["--feature-encoder", str(made / ENCODER_FILE)]
    assert main([*base, *flags, *encoder, "--out", str(tmp_path / "given")]) == 0
    given = json.loads((tmp_path / "given" / "metrics.json").read_text())["feature_distance"]
    assert given["value"] == pytest.approx(found["value"], rel=1e-12)
    # Without an encoder beside the reference, no entry; a missing file is one clear line.
    ref_alone = tmp_path / "ref.nc"
    ref_alone.write_bytes((made / "train.nc").read_bytes())
    other = ["evaluate", str(made / "test.nc"), "--ref", str(ref_alone), *flags]
    assert main([*other, "--out", str(tmp_path / "none")]) == 0
    assert "feature_distance" not in json.loads((tmp_path / "none" / "metrics.json").read_text())
    capsys.readouterr()
    missing = ["--feature-encoder", str(tmp_path / "nope.pt")]
    assert main([*other, *missing, "--out", str(tmp_path / "x")]) == 1
    assert "nope.pt" in capsys.readouterr().err


def test_evaluate_reports_kid_and_the_physics_kid_of_a_one_percent_shift(
    made: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with open_fields(made / "test.nc", load=True) as ds:
        shifted = ds.copy(deep=True)
    shifted["u"] = shifted["u"] * np.float32(1.01)  # a 1 % larger source term
    shifted["u"].attrs = ds["u"].attrs
    path = tmp_path / "shifted.nc"
    shifted.to_netcdf(path, engine="h5netcdf")
    flags = ["--ref", str(made / "train.nc"), "--no-figures", "--permutations", "0"]
    entries = {}
    for name, samples in (("same", made / "test.nc"), ("shifted", path)):
        assert main(["evaluate", str(samples), *flags, "--out", str(tmp_path / name)]) == 0
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        entries[name] = metrics["feature_distance"]
    assert "physics_feature_kid" in capsys.readouterr().out
    # The numbers are KID of the features and of the physics features (the residual under
    # the reference's problem appended), recomputed directly at evaluate's defaults.
    enc = load_feature_encoder(made / ENCODER_FILE)
    darcy = load("darcy", n=16)
    with open_fields(path) as t, open_fields(made / "train.nc") as r:
        gen = enc.stack(t, 2000, "s", torch.float64)
        ref = enc.stack(r, 4000, "r", torch.float64)
    kid = feature_distance(enc.features, gen, ref, metric="kid")
    physics = feature_distance(enc.physics_features(darcy, ref), gen, ref, metric="kid")
    physics_fd = feature_distance(enc.physics_features(darcy, ref), gen, ref)
    for key in ("value", "floor", "floor_std"):
        assert entries["shifted"]["kid"][key] == pytest.approx(kid[key], rel=1e-12)
        assert entries["shifted"]["physics_kid"][key] == pytest.approx(physics[key], rel=1e-12)
        got = entries["shifted"]["physics_frechet"][key]
        assert got == pytest.approx(physics_fd[key], rel=1e-12)
    # The roles are not symmetric: the floor splits the reference, so swapping the two sets
    # gives another value (the control of the recomputation above).
    swapped = feature_distance(enc.physics_features(darcy, ref), ref, gen)
    assert swapped["floor"] != pytest.approx(physics_fd["floor"], rel=1e-6)
    z = lambda e: compare_to_floor(e["value"], e["floor"], e["floor_std"]).z  # noqa: E731
    # The unshifted held-out fields are within the physics floors; u × 1.01 is far out.
    for name in ("physics_kid", "physics_frechet"):
        assert abs(z(entries["same"][name])) < 3
        assert z(entries["shifted"][name]) > 100
    # Negative control: without the problem (--no-residual) there is no physics entry.
    no_res = ["evaluate", str(path), *flags, "--no-residual", "--out", str(tmp_path / "nr")]
    assert main(no_res) == 0
    saved = json.loads((tmp_path / "nr" / "metrics.json").read_text())["feature_distance"]
    assert "kid" in saved and "physics_kid" not in saved and "physics_frechet" not in saved


def test_the_physics_entries_take_the_splits_and_seed_and_are_skipped_together(
    made: Path,
) -> None:
    enc = load_feature_encoder(made / ENCODER_FILE)
    darcy = load("darcy", n=16)
    paths = (made / "test.nc", made / "train.nc")
    options = {"max_samples": 30, "splits": 3, "seed": 7}
    with open_fields(paths[0], load=True) as gen_ds, open_fields(paths[1], load=True) as ref_ds:
        entry = feature_distance_entry(None, gen_ds, ref_ds, paths, **options, problem=darcy)
        other = type("Other", (), {"name": "other", "field_names": ("u", "a")})()
        skipped = feature_distance_entry(None, gen_ds, ref_ds, paths, **options, problem=other)
        gen = enc.stack(gen_ds, 30, "g", torch.float64)
        ref = enc.stack(ref_ds, 60, "r", torch.float64)
    physics = enc.physics_features(darcy, ref)
    for name, metric in (("physics_frechet", "frechet"), ("physics_kid", "kid")):
        # The physics entries are recomputed in float64 at the given splits and seed.
        want = feature_distance(physics, gen, ref, num_splits=3, seed=7, metric=metric)
        for key in ("value", "floor", "floor_std"):
            assert entry[name][key] == pytest.approx(want[key], rel=1e-12)
        # Controls: the defaults (5 splits, seed 0) give another floor.
        default = feature_distance(physics, gen, ref, metric=metric)
        assert default["floor"] != pytest.approx(want["floor"], rel=1e-6)
        # A problem reading other fields skips both entries, naming the mismatch.
        assert set(skipped[name]) == {"skipped"}
        assert "problem 'other' reads fields ['u', 'a']" in skipped[name]["skipped"]
    # Control: float32 inputs round the physical fields, so the residual feature moves.
    rounded = feature_distance(physics, gen.float(), ref.float(), num_splits=3, seed=7)
    assert rounded["value"] != pytest.approx(entry["physics_frechet"]["value"], rel=1e-9)


def test_unknown_training_option_is_named(made: Path, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown feature-encoder options \\['width'\\]"):
        train_feature_encoder(made / "train.nc", tmp_path / "e.pt", width=3)


def test_physics_features_append_the_residual_standardized_over_the_reference(
    made: Path,
) -> None:
    enc = load_feature_encoder(made / ENCODER_FILE)
    darcy = load("darcy", n=16)
    fields = {}
    with open_fields(made / "train.nc") as r, open_fields(made / "test.nc") as t:
        ref = enc.stack(r, 1000, "r", torch.float64)
        test = enc.stack(t, 1000, "t", torch.float64)
        ref32 = enc.stack(r, 1000, "r")
        for name, ds in (("ref", r), ("test", t)):
            stored = np.stack([ds[f].values for f in ("a", "u")], 1)
            fields[name] = torch.from_numpy(stored.astype(np.float64))
    assert ref.dtype == torch.float64 and ref32.dtype == torch.float32
    # float64 z-scores give back the stored fields to a few float64 ulps; float32 ones do not.
    scale = float(fields["ref"].abs().max())
    err64 = float((enc.physical(ref) - fields["ref"]).abs().max())
    err32 = float((enc.physical(ref32) - fields["ref"]).abs().max())
    assert err64 < 1e-14 * scale < 1e-6 * err32
    # The last feature is the log relative residual standardized by the reference's own mean
    # and std: 0 and 1 over the reference, and the same affine map on any other set.
    phi = enc.physics_features(darcy, ref)
    got_ref, got_test = phi(ref), phi(test)
    assert got_ref.shape == (len(ref), enc.features(ref).shape[1] + 1)
    torch.testing.assert_close(got_test[:, :-1], enc.features(test))
    log_r = log_residual_feature(darcy, fields["ref"])[:, 0]
    mean, std = log_r.mean(), log_r.std()
    assert float(got_ref[:, -1].mean()) == pytest.approx(0.0, abs=1e-12)
    assert float(got_ref[:, -1].std()) == pytest.approx(1.0, rel=1e-12)
    log_t = log_residual_feature(darcy, fields["test"])[:, 0]
    expected = (log_t - mean) / std
    # The round trip moves u by δu ≲ 8 ulps, the residual by ≲ max a·4n²·δu (the 5-point
    # stencil), its log by that over the residual (≈ 1e-6: float32-stored fields).
    a_max, u_max = (float(fields["test"][:, i].abs().max()) for i in (0, 1))
    du = 8 * torch.finfo(torch.float64).eps * u_max
    bound = a_max * 4 * 16**2 * du / float(log_t.exp().min()) / float(std)
    assert float((got_test[:, -1] - expected).abs().max()) < bound < 1e-4
    # Negative control: standardized over the test set itself, the column would differ.
    own = (log_t - log_t.mean()) / log_t.std()
    assert float((own - expected).abs().max()) > 1e-3


def test_table_rows_read_their_own_feature_entries() -> None:
    entry = lambda v: {"value": v, "floor": 0.5, "floor_std": 0.1, "n": 8}  # noqa: E731
    result = {"fields": {}, "feature_distance": {**entry(1.25), "kid": entry(2.25),
                                                 "physics_frechet": entry(4.25),
                                                 "physics_kid": entry(3.25)}}  # fmt: skip
    rows = {line.split()[1]: line.split()[2] for line in format_table(result).splitlines()[2:]}
    assert rows == {"feature_frechet": "1.2500", "feature_kid": "2.2500",
                    "physics_feature_frechet": "4.2500",
                    "physics_feature_kid": "3.2500"}  # fmt: skip
    # Negative control: a skipped physics entry gives no row.
    skipped = {"skipped": "no problem"}
    result["feature_distance"].update(physics_kid=skipped, physics_frechet=skipped)
    assert "physics_feature" not in format_table(result)
