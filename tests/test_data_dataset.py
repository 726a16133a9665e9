"""FieldDataset: channel order, conditioning, time handling, normalization, DataLoader workers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import xarray as xr
from torch.utils.data import DataLoader

from physgen.data import (
    FieldDataset,
    Normalizer,
    compute_stats,
    open_fields,
    save_stats,
    write_fields,
)

N, T, NX, NY = 6, 3, 5, 4


@pytest.fixture(scope="module")
def field_file(tmp_path_factory):
    rng = np.random.default_rng(7)
    ds = xr.Dataset(
        {
            "a": (("sample", "x", "y"), rng.uniform(1, 3, size=(N, NX, NY)), {"units": "1"}),
            "u": (("sample", "x", "y"), 5 + 2 * rng.normal(size=(N, NX, NY)), {"units": "m"}),
            "w": (("sample", "time", "x", "y"), rng.normal(size=(N, T, NX, NY))),
            "nu": (("sample",), rng.uniform(0.01, 0.1, size=N)),
            "re": (("sample",), rng.uniform(100, 1000, size=N)),
        },
        coords={"time": np.arange(T) * 0.5, "x": np.arange(NX) / NX, "y": np.arange(NY) / NY},
        attrs={"fields": ["a", "u", "w"]},
    )
    folder = tmp_path_factory.mktemp("fd")
    path = write_fields(ds, folder / "train.nc")
    save_stats(compute_stats(path, ["a", "u", "w", "nu", "re"]), folder / "stats.json")
    return path, folder / "stats.json", open_fields(path, load=True)


@pytest.mark.parametrize("in_memory", [True, False])
def test_channels_in_file_and_given_order(field_file, in_memory):
    path, _, ds = field_file
    data = FieldDataset(path, in_memory=in_memory)
    assert data.in_memory is in_memory and len(data) == N
    assert data.channels == ["a", "u", "w[0]", "w[1]", "w[2]"]
    assert data.sample_shape == (5, NX, NY) and data.cond_shape is None
    x = data[2]
    assert x.dtype == torch.float32 and x.shape == (5, NX, NY)
    np.testing.assert_array_equal(x[0], ds["a"].values[2])
    np.testing.assert_array_equal(x[1], ds["u"].values[2])
    np.testing.assert_array_equal(x[2:], ds["w"].values[2])
    given = FieldDataset(path, ["u", "a"], in_memory=in_memory)
    np.testing.assert_array_equal(given[-1], np.stack([ds["u"].values[-1], ds["a"].values[-1]]))


def test_frames_mode(field_file):
    path, _, ds = field_file
    data = FieldDataset(path, ["w", "u"], time="frames")
    assert len(data) == N * T and data.channels == ["w", "u"]
    x = data[4 * T + 2]  # sample 4, frame 2
    np.testing.assert_array_equal(x[0], ds["w"].values[4, 2])
    np.testing.assert_array_equal(x[1], ds["u"].values[4])


def test_field_conditioning(field_file):
    path, _, ds = field_file
    data = FieldDataset(path, cond_fields=["a"])
    assert data.fields == ["u", "w"] and data.cond_shape == (1, NX, NY)
    x, cond = data[1]
    assert x.shape == (4, NX, NY)
    np.testing.assert_array_equal(cond[0], ds["a"].values[1])


@pytest.mark.parametrize("in_memory", [True, False])
def test_scalar_conditioning(field_file, in_memory):
    path, _, ds = field_file
    data = FieldDataset(path, ["u"], cond_fields=["re", "nu"], in_memory=in_memory)
    assert data.cond_shape == (2,)
    _, cond = data[3]
    np.testing.assert_allclose(cond, [ds["re"].values[3], ds["nu"].values[3]], rtol=1e-7)


def test_normalization_roundtrip_and_moments(field_file):
    path, stats_path, _ds = field_file
    data = FieldDataset(path, cond_fields=["a"], stats=stats_path)
    raw = FieldDataset(path, cond_fields=["a"])
    xs = torch.stack([data[i][0] for i in range(N)]).double()  # (N, C, NX, NY)
    # u is one channel; w spans three channels that share w's statistics.
    assert abs(xs[:, 0].mean().item()) < 1e-6 and abs(xs[:, 0].std(unbiased=False) - 1) < 1e-5
    assert abs(xs[:, 1:].mean().item()) < 1e-6 and abs(xs[:, 1:].std(unbiased=False) - 1) < 1e-5
    back = data.denormalize(torch.stack([data[i][0] for i in range(N)]))
    expect = torch.stack([raw[i][0] for i in range(N)])
    torch.testing.assert_close(back, expect, rtol=1e-6, atol=1e-6)
    cond = data.denormalize_cond(data[0][1])
    torch.testing.assert_close(cond, raw[0][1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(data.normalize(expect), torch.stack([data[i][0] for i in range(N)]))


def test_normalizer_float64_inverse_and_broadcast():
    norm = Normalizer([1.5, -2.0], [0.25, 3.0], spatial_ndim=2)
    x = torch.randn(7, 2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(norm.denormalize(norm.normalize(x)), x, rtol=0, atol=1e-14)
    torch.testing.assert_close(norm.normalize(x)[3, 1], (x[3, 1] + 2.0) / 3.0)
    torch.testing.assert_close(norm.normalize(x[0]), norm.normalize(x)[0])
    with pytest.raises(ValueError, match="positive scale"):
        Normalizer([0.0], [0.0], 1)


def test_missing_stats_for_field(field_file, tmp_path):
    path, _, _ = field_file
    save_stats(compute_stats(path, ["u"]), tmp_path / "stats.json")
    with pytest.raises(KeyError, match=r"stats\.json: no statistics for \['w'\]"):
        FieldDataset(path, ["u", "w"], stats=tmp_path / "stats.json")


def test_bad_names(field_file):
    path, _, _ = field_file
    with pytest.raises(KeyError, match="no field 'p'"):
        FieldDataset(path, ["p"])
    with pytest.raises(KeyError, match="no conditioning variable 'q'"):
        FieldDataset(path, cond_fields=["q"])
    with pytest.raises(ValueError, match="mixes per-sample variables"):
        FieldDataset(path, ["u"], cond_fields=["a", "nu"])
    with pytest.raises(ValueError, match="both field and condition"):
        FieldDataset(path, ["u"], cond_fields=["u"])
    with pytest.raises(ValueError, match="time must be"):
        FieldDataset(path, time="steps")


def test_lazy_opens_no_handle_until_read(field_file):
    path, _, _ds = field_file
    data = FieldDataset(path, in_memory=False)
    assert data._h5 is None
    first = data[0]
    assert data._h5 is not None
    clone = pickle.loads(pickle.dumps(data))
    assert clone._h5 is None
    torch.testing.assert_close(clone[0], first)
    data.close()
    assert data._h5 is None
    # The size threshold picks lazy reading for files above it.
    assert not FieldDataset(path, max_memory_bytes=10).in_memory


def _batches(data, workers):
    loader = DataLoader(
        data,
        batch_size=4,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(11),
    )
    return list(loader)


@pytest.mark.parametrize("in_memory", [True, False])
def test_two_workers_equal_zero_workers(field_file, in_memory):
    path, stats_path, _ = field_file
    data = FieldDataset(path, cond_fields=["a"], stats=stats_path, in_memory=in_memory)
    parallel = _batches(data, 2)
    # The workers opened their own handles; the parent still has none.
    assert data._h5 is None
    serial = _batches(data, 0)
    assert len(serial) == len(parallel) == 2
    for (x0, c0), (x2, c2) in zip(serial, parallel, strict=True):
        torch.testing.assert_close(x0, x2, rtol=0, atol=0)
        torch.testing.assert_close(c0, c2, rtol=0, atol=0)


def test_to_fields_roundtrip(field_file, tmp_path):
    path, stats_path, ds = field_file
    data = FieldDataset(path, ["w", "u"], stats=stats_path)
    batch = torch.stack([data[i] for i in range(N)])
    out = data.to_fields(batch)
    assert out.attrs["fields"] == ["w", "u"] and out["w"].dims == ("sample", "time", "x", "y")
    back = open_fields(write_fields(out, tmp_path / "samples.nc"), load=True)
    np.testing.assert_allclose(back["w"].values, ds["w"].values, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back["u"].values, ds["u"].values, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(back["x"].values, ds["x"].values)
    assert back["u"].attrs["units"] == "m"
    with pytest.raises(ValueError, match="expected a batch of shape"):
        data.to_fields(batch[:, :2])


# -- batch path ---------------------------------------------------------------------------
def _reference_item(ds, data, names, normalizer, index):
    """Item ``index`` built from the file's values, the way items were always defined."""
    sample, frame = divmod(index, T) if data.time == "frames" else (index, None)
    parts = []
    for name in names:
        values = ds[name].values[sample].astype(np.float32)
        if "time" in ds[name].dims and frame is not None:
            values = values[frame][None]
        elif "time" not in ds[name].dims:
            values = values[None]
        parts.append(values)
    x = torch.from_numpy(np.concatenate(parts, axis=0))
    return x if normalizer is None else normalizer.normalize(x)


CASES = [
    ({}, "channels"),
    ({"fields": ["w", "u"]}, "frames"),
    ({"cond_fields": ["a"]}, "channels"),
    ({"fields": ["u", "w"], "cond_fields": ["a"]}, "frames"),
    ({"fields": ["a"], "cond_fields": ["w"]}, "frames"),
    ({"cond_fields": ["nu", "re"]}, "channels"),
    ({"fields": ["w"], "cond_fields": ["nu"]}, "frames"),
]


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize(("names", "time"), CASES)
@pytest.mark.parametrize("normalized", [True, False])
def test_batch_equals_stacked_items(field_file, in_memory, names, time, normalized):
    path, stats_path, ds = field_file
    stats = stats_path if normalized else None
    data = FieldDataset(path, **names, time=time, stats=stats, in_memory=in_memory)
    rng = np.random.default_rng(3)
    for size in (1, 5, 2 * len(data)):  # unsorted, with repeats, negative indices
        idx = rng.integers(-len(data), len(data), size=size).tolist()
        batch = data.get_batch(idx)
        items = [data[i] for i in idx]
        x, cond = (batch, None) if isinstance(batch, torch.Tensor) else batch
        if cond is None:
            torch.testing.assert_close(x, torch.stack(items), rtol=0, atol=0)
        else:
            torch.testing.assert_close(x, torch.stack([i[0] for i in items]), rtol=0, atol=0)
            torch.testing.assert_close(cond, torch.stack([i[1] for i in items]), rtol=0, atol=0)
        for k, i in enumerate(idx):
            ref = _reference_item(ds, data, data.fields, data.normalizer, i % len(data))
            torch.testing.assert_close(x[k], ref, rtol=0, atol=0)
            if cond is not None:
                norm = data.cond_normalizer
                ref = _reference_item(ds, data, data.cond_fields, norm, i % len(data))
                torch.testing.assert_close(cond[k], ref.reshape(cond[k].shape), rtol=0, atol=0)
    listed = data.__getitems__(idx)
    assert len(listed) == len(idx)
    first = listed[3] if cond is None else listed[3][0]
    torch.testing.assert_close(first, x[3], rtol=0, atol=0)


def test_batch_index_errors(field_file):
    path, _, _ = field_file
    data = FieldDataset(path, in_memory=False)
    with pytest.raises(IndexError, match="out of range"):
        data.get_batch([0, N])
    with pytest.raises(IndexError, match="out of range"):
        data[-N - 1]
    assert data.get_batch([]).shape == (0, *data.sample_shape)


@pytest.mark.parametrize("time", ["channels", "frames"])
def test_lazy_h5py_fallback_and_time_chunks_agree(field_file, tmp_path, monkeypatch, time):
    """Compressed files (read through h5py) and trajectories split over several chunks."""
    path, stats_path, ds = field_file
    plain = FieldDataset(path, ["w", "u"], stats=stats_path, time=time, in_memory=False)
    packed = write_fields(ds, tmp_path / "packed.nc", compression_level=4)
    monkeypatch.setattr("physgen.data.fields._MAX_CHUNK_BYTES", 2 * NX * NY * 4)
    split = write_fields(ds, tmp_path / "split.nc")  # chunks of 2 frames, T = 3
    idx = np.random.default_rng(5).integers(0, len(plain), size=3 * len(plain))
    expected = plain.get_batch(idx)
    for other in (packed, split):
        data = FieldDataset(other, ["w", "u"], stats=stats_path, time=time, in_memory=False)
        data._lazy()
        raw = data._file.variables["w"].offsets is not None
        assert raw is (other == split)
        torch.testing.assert_close(data.get_batch(idx), expected, rtol=0, atol=0)


@pytest.mark.parametrize("time", ["channels", "frames"])
def test_handles_survive_fork(field_file, time):
    """A parent that already read keeps its handle; workers open their own, same batches."""
    path, stats_path, _ = field_file
    data = FieldDataset(path, cond_fields=["a"], stats=stats_path, time=time, in_memory=False)
    first = data[0]
    parent = data._h5
    serial = _batches(data, 0)
    parallel = _batches(data, 2)
    assert data._h5 is parent and parent.id.valid
    assert len(serial) == len(parallel) > 1
    for (x0, c0), (x2, c2) in zip(serial, parallel, strict=True):
        torch.testing.assert_close(x0, x2, rtol=0, atol=0)
        torch.testing.assert_close(c0, c2, rtol=0, atol=0)
    torch.testing.assert_close(data[0][0], first[0], rtol=0, atol=0)


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("workers", [0, 2])
def test_fit_batches_read_whole_batches(field_file, in_memory, workers):
    """fit's loader (batch path, workers or not) gives the batches of the item path."""
    from physgen.training.data import BatchOrder, batches, sequential_batches

    path, stats_path, _ = field_file
    data = FieldDataset(path, ["w", "u"], time="frames", stats=stats_path, in_memory=in_memory)
    order = BatchOrder(len(data), batch_size=4, seed=2)
    cpu = torch.device("cpu")
    got = list(batches(data, order, 3, 9, device=cpu, num_workers=workers))
    assert len(got) == 6
    for k, (x, cond) in zip(range(3, 9), got, strict=True):
        assert cond is None
        expected = torch.stack([data[int(i)] for i in order(k)])
        torch.testing.assert_close(x, expected, rtol=0, atol=0)
    every = torch.cat([x for x, _ in sequential_batches(data, 5, device=cpu)])
    torch.testing.assert_close(every, torch.stack([data[i] for i in range(len(data))]))
