"""Training-split statistics: float64 block merging, stats.json round trip, clear errors."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import xarray as xr

from physgen.data import (
    FieldStats,
    atomic_output,
    compute_stats,
    load_stats,
    save_stats,
    write_fields,
)


def offset_dataset(n: int = 37) -> xr.Dataset:
    """Large mean, unit spread: the case where Σx² − n·m² loses every digit in float32."""
    rng = np.random.default_rng(3)
    u = (1.0e4 + rng.normal(size=(n, 6, 5))).astype(np.float32)
    w = rng.standard_t(3, size=(n, 2, 6, 5)).astype(np.float32)
    return xr.Dataset(
        {
            "u": (("sample", "x", "y"), u),
            "w": (("sample", "time", "x", "y"), w),
            "nu": (("sample",), rng.uniform(1e-3, 1e-2, size=n)),
        },
        coords={"time": [0.0, 1.0], "x": np.arange(6.0), "y": np.arange(5.0)},
        attrs={"fields": ["u", "w"]},
    )


@pytest.mark.parametrize("block_bytes", [1, 4 * 6 * 5 * 3, 2**26])
def test_stats_match_float64_reference(tmp_path, block_bytes):
    ds = offset_dataset()
    path = write_fields(ds, tmp_path / "train.nc")
    stats = compute_stats(path, ["u", "w", "nu"], block_bytes=block_bytes)
    assert list(stats) == ["u", "w", "nu"]
    for name in ("u", "w", "nu"):
        ref = ds[name].values.astype(np.float32 if name != "nu" else np.float64)
        ref = ref.astype(np.float64)
        s = stats[name]
        assert s.count == ref.size
        np.testing.assert_allclose(s.mean, ref.mean(), rtol=1e-13)
        np.testing.assert_allclose(s.std, ref.std(), rtol=1e-10)
        assert s.min == ref.min() and s.max == ref.max()


def test_stats_of_shards_are_those_of_their_concatenation(tmp_path):
    ds = offset_dataset()
    cuts = [0, 5, 9, 21, 37]  # blocks of 4 samples straddle every cut
    paths = [
        write_fields(ds.isel(sample=slice(a, b)), tmp_path / f"part{i}.nc")
        for i, (a, b) in enumerate(itertools.pairwise(cuts))
    ]
    names, block = ["u", "w", "nu"], 4 * 2 * 6 * 5 * 4
    whole = compute_stats(write_fields(ds, tmp_path / "whole.nc"), names, block_bytes=block)
    assert compute_stats(paths, names, block_bytes=block) == whole  # the same bits
    assert compute_stats(paths[:-1], names, block_bytes=block)["u"] != whole["u"]  # control


def test_stats_default_names_and_dataset_input():
    stats = compute_stats(offset_dataset().assign_attrs(fields=["w", "u"]))
    assert list(stats) == ["w", "u"]


def test_stats_leave_an_in_memory_dataset_unchanged():
    ds = offset_dataset()
    ds["u"] = ds["u"].astype(np.float64)  # float64 blocks are views of the caller's array
    before = {name: ds[name].values.copy() for name in ("u", "w", "nu")}
    stats = compute_stats(ds, ["u", "w", "nu"], block_bytes=1000)
    for name, values in before.items():
        np.testing.assert_array_equal(ds[name].values, values)
    assert stats["u"].mean == pytest.approx(float(before["u"].mean()), rel=1e-13)


def test_save_load_roundtrip_exact(tmp_path):
    stats = compute_stats(offset_dataset())
    path = save_stats(stats, tmp_path / "ds" / "stats.json", source="train.nc")
    assert load_stats(path) == stats
    doc = json.loads(path.read_text())
    assert doc["schema"] == "physgen-stats/1" and doc["source"] == "train.nc"
    assert [p.name for p in path.parent.iterdir()] == ["stats.json"]


def test_constant_field_scale_is_one():
    s = FieldStats(mean=2.0, std=0.0, min=2.0, max=2.0, count=4)
    assert s.scale == 1.0
    assert FieldStats(mean=0.0, std=0.5, min=-1, max=1, count=4).scale == 0.5


def test_nonfinite_field_refused():
    ds = offset_dataset()
    ds["u"][3, 1, 1] = np.nan
    with pytest.raises(ValueError, match="field 'u' holds NaN/Inf"):
        compute_stats(ds)


def test_unknown_name():
    with pytest.raises(KeyError, match="no variable 'p'"):
        compute_stats(offset_dataset(), ["p"])


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "stats.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"stats\.json: not valid JSON"):
        load_stats(bad)
    bad.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(ValueError, match=r"stats\.json: expected schema 'physgen-stats/1'"):
        load_stats(bad)
    bad.write_text(json.dumps({"schema": "physgen-stats/1", "fields": {"u": {"mean": 1.0}}}))
    with pytest.raises(ValueError, match=r"stats\.json: field 'u' lacks a valid entry 'std'"):
        load_stats(bad)


def test_atomic_output_cleans_up(tmp_path):
    target = tmp_path / "stats.json"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text('{"half": ')
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
