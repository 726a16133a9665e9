"""CycleGAN: cycle consistency, an unpaired loader that pairs nothing, learning a known map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from smooth_fields import smooth_fields
from torch import Tensor, nn
from torch.utils.data import DataLoader

from physgen.cli import main
from physgen.data import open_fields, write_fields
from physgen.data.unpaired import UnpairedDataset
from physgen.models import get_model_class
from physgen.models.cyclegan import CycleGAN, cycle_loss
from physgen.training import fit, read_checkpoint


def _orthogonal(d: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return q


class _Linear(nn.Module):
    """``x ↦ M x + c`` on flattened fields, with the generators' ``(x, t)`` signature."""

    def __init__(self, m: Tensor, c: float) -> None:
        super().__init__()
        self.m, self.c = m, c

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return (x.flatten(1) @ self.m.T + self.c).reshape(x.shape)


def test_cycle_loss_of_an_exactly_invertible_pair_is_zero():
    q = _orthogonal(48, seed=0)
    x = torch.randn(5, 1, 8, 6, dtype=torch.float64)
    forward = lambda v: (v.flatten(1) @ q.T + 0.3).reshape(v.shape)  # noqa: E731
    backward = lambda v: ((v.flatten(1) - 0.3) @ q).reshape(v.shape)  # noqa: E731
    loss = cycle_loss(forward, backward, x)
    assert loss.shape == (5,) and float(loss.max()) < 1e-14
    wrong = lambda v: ((v.flatten(1) - 0.3) @ (1.01 * q)).reshape(v.shape)  # noqa: E731
    assert float(cycle_loss(forward, wrong, x).min()) > 1e-3


class _Inverse(nn.Module):
    """The inverse of ``x ↦ s Q x + c``: ``y ↦ Qᵀ(y − c)/s``."""

    def __init__(self, q: Tensor, s: float, c: float) -> None:
        super().__init__()
        self.q, self.s, self.c = q, s, c

    def forward(self, y: Tensor, t: Tensor) -> Tensor:
        return (((y.flatten(1) - self.c) @ self.q) / self.s).reshape(y.shape)


def test_cyclegan_cycle_term_vanishes_for_invertible_generators():
    model = CycleGAN([1, 16, 12], [1, 16, 12], channels=[8], critic_channels=[8, 8]).double()
    q = _orthogonal(16 * 12, seed=1)
    model.gen_ab = _Linear(2.0 * q, 0.5)  # G(a) = 2Qa + 0.5
    gen = torch.Generator().manual_seed(2)
    b, a = (torch.randn(3, 1, 16, 12, generator=gen, dtype=torch.float64) for _ in range(2))

    def cycle_part(m: CycleGAN) -> Tensor:
        """λ_cyc times the cycle terms: the loss with λ_cyc = 10 minus the loss with 0."""
        with torch.no_grad():
            m.cycle_weight = 10.0
            on = m.generator_loss(b, a)
            m.cycle_weight = 0.0
            return on - m.generator_loss(b, a)

    model.gen_ba = _Inverse(q, 2.0, 0.5)  # F = G⁻¹
    assert float(cycle_part(model).abs().max()) < 1e-12
    model.gen_ba = _Inverse(q, 2.0, 0.4)  # negative control: an inverse off by 0.05
    assert float(cycle_part(model).min()) > 1e-2


def test_residual_generators_are_exactly_the_identity_before_training():
    # x + U-Net(x) with the U-Net's output layer at zero: G(a) = a and F(b) = b to the last
    # bit, so the cycle and identity terms vanish at initialization. Negative control: the
    # plain generators return the zero field.
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(4)
    b, a = (torch.randn(3, 1, 16, 12, generator=gen, dtype=torch.float64) for _ in range(2))
    kw = {"channels": [8], "critic_channels": [8, 8]}
    model = CycleGAN([1, 16, 12], [1, 16, 12], residual=True, **kw).double()
    assert torch.equal(model.forward_map(a), a) and torch.equal(model.backward(b), b)
    assert torch.equal(model.sample(3, a), a)
    assert CycleGAN.from_config(model.config).residual  # the option survives a checkpoint
    plain = CycleGAN([1, 16, 12], [1, 16, 12], **kw).double()
    assert torch.equal(plain.forward_map(a), torch.zeros_like(a))
    # After one nonzero output layer, G is the identity plus exactly that U-Net's output.
    torch.nn.init.normal_(model.gen_ab.conv_out.weight)
    g = model.gen_ab(a, torch.zeros(3, dtype=torch.float64))
    assert float(g.detach().abs().max()) > 1e-3
    torch.testing.assert_close(model.forward_map(a), a + g, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="equal channel counts"):
        CycleGAN([2, 16, 12], [1, 16, 12], residual=True)


def _batches(data: UnpairedDataset, seed: int) -> list[tuple[Tensor, Tensor]]:
    loader = DataLoader(
        data, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    return list(loader)


def test_unpaired_loader_never_puts_one_sample_index_in_both_domains_of_a_batch():
    n = 64
    items = [torch.full((1, 4), float(i)) for i in range(n)]  # each item carries its index
    data = UnpairedDataset(items, items, seed=3)
    assert set(data.index_a.tolist()).isdisjoint(data.index_b.tolist())  # by construction
    assert len(data) == n // 2
    for seed in range(5):
        for b, a in _batches(data, seed):
            ib, ia = set(b[:, 0, 0].int().tolist()), set(a[:, 0, 0].int().tolist())
            assert not ib & ia
    # Negative control: pairing by independent shuffles of all indices meets the same index
    # in a batch.
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    naive = [(items[perm[i]], items[i]) for i in range(n)]
    hits = sum(
        bool(set(b[:, 0, 0].int().tolist()) & set(a[:, 0, 0].int().tolist()))
        for b, a in DataLoader(naive, batch_size=8)
    )
    assert hits > 0
    with pytest.raises(ValueError, match="equal length"):
        UnpairedDataset(items, items[:10])
    other = UnpairedDataset(items, items[:10], shared=False)
    assert len(other) == 10


def test_cyclegan_is_registered_and_samples_the_forward_map():
    assert get_model_class("cyclegan") is CycleGAN
    model = CycleGAN.for_shape((2, 16, 12), (1, 16, 12))
    assert model.identity_weight == 0.0  # channel counts differ: no identity term
    a = torch.randn(3, 1, 16, 12)
    torch.testing.assert_close(model.sample(3, a), model.forward_map(a))
    with pytest.raises(ValueError, match="grid"):
        CycleGAN([1, 16, 16], [1, 16, 12])
    with pytest.raises(ValueError, match="domain-A"):
        model.generator_loss(torch.randn(3, 2, 16, 12), None)


def test_cyclegan_batch_losses_use_no_pairing_between_the_domains():
    # Every loss term reads one domain only, so re-pairing the domain-A batch against the
    # domain-B batch leaves the batch losses unchanged: pair order carries no information.
    torch.manual_seed(0)
    model = CycleGAN([1, 16, 12], [1, 16, 12], channels=[8], critic_channels=[8, 8]).double()
    torch.nn.init.normal_(model.gen_ab.conv_out.weight)  # nonzero translations
    torch.nn.init.normal_(model.gen_ba.conv_out.weight)
    gen = torch.Generator().manual_seed(1)
    b, a = (torch.randn(6, 1, 16, 12, generator=gen, dtype=torch.float64) for _ in range(2))
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        for loss in (model.generator_loss, model.discriminator_loss):
            torch.testing.assert_close(loss(b, a).sum(), loss(b, a[perm]).sum())
            # Negative control: the per-sample values do depend on which a sits beside b.
            assert not torch.allclose(loss(b, a), loss(b, a[perm]))


def _domain(folder, name: str, n: int, seed: int, offset: float) -> None:
    """A folder with train.nc and test.nc holding one smooth 1-D field ``name``."""
    folder.mkdir()
    x = np.linspace(0.0, 1.0, 16)
    for split, count in (("train.nc", n), ("test.nc", 3)):
        rng = np.random.default_rng(seed + count)
        values = offset + rng.standard_normal((count, 1)) * np.sin(np.pi * x)
        ds = xr.Dataset(
            {name: (("sample", "x"), values, {"units": "1"})},
            coords={"sample": np.arange(count), "x": ("x", x, {"units": "m"})},
            attrs={"fields": [name]},
        )
        write_fields(ds, folder / split, provenance={"problem": "synthetic"})


def test_cli_trains_cyclegan_on_two_unpaired_folders_and_samples_from_domain_a(tmp_path, capsys):
    _domain(tmp_path / "a", "k", 16, seed=0, offset=1.0)
    _domain(tmp_path / "b", "u", 16, seed=1, offset=5.0)
    run, out = tmp_path / "run", tmp_path / "samples.nc"
    argv = ["train", "--data", str(tmp_path / "a"), "--data-b", str(tmp_path / "b")]
    argv += ["--model", "cyclegan", "--fields", "u", "--cond-fields", "k", "--steps", "2"]
    assert main([*argv, "--batch-size", "4", "--out", str(run), "--no-progress"]) == 0
    meta = read_checkpoint(run / "checkpoint.pt")["metadata"]["data"]
    assert meta["cond_fields"] == ["k"] and meta["fields"] == ["u"]
    assert set(meta["unpaired"]) == {"domain_a", "domain_b"}
    sample = ["sample", str(run / "checkpoint.pt"), "--n", "1", "--out", str(out)]
    assert main([*sample, "--cond", str(tmp_path / "a" / "test.nc"), "--seed", "0"]) == 0
    with open_fields(out) as ds:
        assert list(ds.attrs["fields"]) == ["u"] and ds["u"].shape == (3, 1, 16)
        assert np.isfinite(ds["u"].values).all()
    capsys.readouterr()
    bad = ["train", "--data", str(tmp_path / "a"), "--data-b", str(tmp_path / "b")]
    bad += ["--model", "cyclegan", "--out", str(tmp_path / "bad"), "--no-progress"]
    assert main(bad) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the statistics note
    assert err.startswith("physgen train: error: --data-b") and "--cond-fields" in err


def _matches_in_distribution(g: Tensor, b: Tensor) -> bool:
    """Mean and standard deviation of the fields ``g`` agree with those of ``b``: the means
    within 0.1 σ_B plus three standard errors of a difference of two n-sample means (the
    standard error from the spread of the per-field means of ``b``), the deviations within
    10 %."""
    se = float(b.flatten(1).mean(1).std()) / len(b) ** 0.5
    mean_ok = abs(float(g.mean() - b.mean())) < 0.1 * float(b.std()) + 3 * 2**0.5 * se
    return mean_ok and abs(float(g.std() / b.std()) - 1) < 0.1


@pytest.mark.slow  # about 15 s of CPU, over 20 s on a loaded machine
def test_cyclegan_learns_an_affine_change_of_domain_in_distribution_from_unpaired_data():
    # Domain B is 2u + 1 for u in domain A, the two halves of one sample set split by the
    # unpaired loader. Only the distribution of G(a) is identifiable: u and −u have the same
    # law, so 1 − 2u is as good a translation as 1 + 2u and the pairing is not asserted.
    # Negative controls: the untrained generator (zero output) and the identity map.
    a, a_test = (smooth_fields(n, 16, seed=s).float() for n, s in ((1024, 0), (256, 1)))
    b_test = 2 * a_test + 1
    data = UnpairedDataset(list(a), list(2 * a + 1), seed=0)
    torch.manual_seed(0)
    model = CycleGAN([1, 16, 16], [1, 16, 16], channels=[8, 16], critic_channels=[8, 16],
                     periodic=True, identity_weight=0.0)  # fmt: skip
    assert not _matches_in_distribution(model.sample(256, a_test), b_test)
    assert not _matches_in_distribution(a_test, b_test)
    fit(model, data, steps=200, batch_size=16, lr=2e-3, progress=False, seed=0)
    assert _matches_in_distribution(model.sample(256, a_test), b_test)
