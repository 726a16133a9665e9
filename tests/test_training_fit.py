"""``fit``: convergence to a closed-form optimum, non-finite losses, schedules, EMA, data order."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_contract import _CondGaussian, _TinyGAN
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from physgen.training import EMA, NonFiniteLossError, fit, fp32, lr_factor
from physgen.training.data import BatchOrder, batches


def _linear_gaussian_data(n: int = 512) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(n, 2, generator=g)
    w = torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]])
    x = cond @ w.T + torch.tensor([1.0, 2.0, -1.0]) + 0.3 * torch.randn(n, 3, generator=g)
    return x, cond


def test_full_batch_fit_reaches_the_maximum_likelihood_estimate() -> None:
    """For p(x|c) = N(Wc + b, diag σ²) the MLE is least squares plus the residual variance."""
    x, cond = _linear_gaussian_data()
    torch.manual_seed(0)
    model = _CondGaussian()
    fit(model, (x, cond), steps=600, batch_size=len(x), lr=0.05, progress=False)
    design = torch.cat([cond, torch.ones(len(x), 1)], 1)  # (N, 3)
    coef = torch.linalg.lstsq(design, x).solution  # (3, D)
    sigma = (x - design @ coef).std(0, correction=0)
    torch.testing.assert_close(model.mean.weight.detach(), coef[:2].T, atol=2e-3, rtol=0)
    torch.testing.assert_close(model.mean.bias.detach(), coef[2], atol=2e-3, rtol=0)
    torch.testing.assert_close(model.log_scale.exp().detach(), sigma, atol=2e-3, rtol=0)


class _Exploding(_CondGaussian):
    """Its loss is NaN on the training calls numbered in ``bad`` (counting from 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls, self.bad = 0, range(0)

    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        lp = super().log_prob(x, cond)
        if self.training:
            self.calls += 1
            if self.calls - 1 in self.bad:
                return lp * math.nan
        return lp


def test_nonfinite_loss_stops_with_the_step_named_and_weights_intact() -> None:
    x, cond = _linear_gaussian_data(64)
    model = _Exploding()
    model.load_state_dict(_fresh_state())
    model.bad = range(3, 100)
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        fit(model, (x, cond), steps=10, batch_size=16, progress=False)
    # The weights are exactly those after steps 0, 1, 2: compare with a run stopped there.
    reference = _Exploding()
    reference.load_state_dict(_fresh_state())
    fit(reference, (x, cond), steps=3, batch_size=16, progress=False)
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.isfinite(a).all()
        assert torch.equal(a, b)


def _fresh_state() -> dict[str, Tensor]:
    torch.manual_seed(0)
    return _Exploding().state_dict()


def test_nonfinite_skip_counts_and_skips_updates(tmp_path: Path) -> None:
    x, cond = _linear_gaussian_data(64)
    model = _Exploding()
    model.load_state_dict(_fresh_state())
    model.bad = range(2, 4)
    result = fit(
        model,
        (x, cond),
        steps=6,
        batch_size=16,
        nonfinite="skip",
        log_file=tmp_path / "log",
        log_every=1,
        progress=False,
    )
    assert result.skipped == 2
    records = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    assert [r["skipped"] for r in records] == [0, 0, 1, 2, 2, 2]
    assert records[2]["loss"] is None  # NaN is written as null: every line stays valid JSON
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_loss_with_wrong_shape_is_rejected() -> None:
    class Summed(_CondGaussian):
        def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
            return super().loss(x, cond).sum()

    x, cond = _linear_gaussian_data(32)
    with pytest.raises(ValueError, match=r"one loss per sample, shape \(16,\); got \(\)"):
        fit(Summed(), (x, cond), steps=1, batch_size=16, progress=False)


def test_schedules() -> None:
    assert [lr_factor("constant", s, 10, warmup=2) for s in (0, 1, 5)] == [0.5, 1.0, 1.0]
    assert lr_factor("cosine", 2, 10, warmup=2) == 1.0
    assert lr_factor("cosine", 6, 10, warmup=2) == pytest.approx(0.5)
    assert lr_factor("linear", 7, 12, warmup=2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor("step", 0, 10)


def test_logged_learning_rate_follows_the_schedule(tmp_path: Path) -> None:
    x, cond = _linear_gaussian_data(64)
    fit(
        _CondGaussian(),
        (x, cond),
        steps=8,
        batch_size=16,
        lr=0.1,
        schedule="cosine",
        warmup_steps=2,
        log_every=1,
        log_file=tmp_path / "log.jsonl",
        progress=False,
    )
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))
    expected = [0.1 * lr_factor("cosine", s, 8, 2) for s in range(8)]
    assert [r["lr"] for r in records] == pytest.approx(expected)
    assert all(r["samples_per_s"] > 0 and math.isfinite(r["grad_norm"]) for r in records)


def test_ema_is_the_exponential_average_of_the_iterates() -> None:
    net = nn.Linear(1, 1, bias=False)
    ema = EMA(net, decay=0.75)
    w0 = net.weight.item()
    values = [1.0, 2.0, -1.0]
    expected = w0
    for v in values:
        net.weight.data.fill_(v)
        ema.update(net)
        expected = 0.75 * expected + 0.25 * v
    assert ema.module.weight.item() == pytest.approx(expected)


def test_batch_order_is_a_permutation_per_epoch_and_a_function_of_the_seed() -> None:
    order = BatchOrder(10, batch_size=3, seed=4)
    assert order.per_epoch == 3
    for epoch in range(3):
        seen = torch.cat([order(epoch * 3 + j) for j in range(3)])
        assert len(set(seen.tolist())) == 9  # no repeats within an epoch (one sample dropped)
    assert torch.equal(BatchOrder(10, 3, seed=4)(7), order(7))
    assert not torch.equal(BatchOrder(10, 3, seed=5)(0), BatchOrder(10, 3, seed=4)(0))
    assert not torch.equal(order(0), order(3))  # a fresh permutation each epoch


def test_shards_partition_the_global_batch() -> None:
    data = torch.arange(40.0)[:, None]
    order = BatchOrder(40, batch_size=8, seed=0)
    cpu = torch.device("cpu")
    full = [x for x, _ in batches(data, order, 0, 6, device=cpu)]
    shards = [
        [x for x, _ in batches(data, order, 0, 6, device=cpu, rank=r, world_size=2)]
        for r in range(2)
    ]
    for k in range(6):
        assert torch.equal(torch.cat([shards[0][k], shards[1][k]]), full[k])


class _PairDataset(Dataset):
    def __init__(self, x: Tensor, cond: Tensor) -> None:
        self.x, self.cond = x, cond

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.cond[i]


def test_tensors_and_datasets_train_identically() -> None:
    x, cond = _linear_gaussian_data(64)
    finals = []
    for data in ((x, cond), TensorDataset(x, cond), _PairDataset(x, cond)):
        torch.manual_seed(0)
        model = _CondGaussian()
        fit(model, data, steps=7, batch_size=16, progress=False)
        finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(finals[0], finals[1]) and torch.equal(finals[0], finals[2])


class _NoisyGaussian(_CondGaussian):
    """A loss with random draws: its training trajectory depends on the torch RNG stream."""

    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return super().log_prob(x + 0.1 * torch.randn_like(x), cond)


def test_validation_does_not_perturb_training_and_is_reproducible(tmp_path: Path) -> None:
    x, cond = _linear_gaussian_data(96)
    finals, valids = [], []
    for valid in (None, (x[64:], cond[64:])):
        torch.manual_seed(0)
        model = _NoisyGaussian()
        result = fit(
            model,
            (x[:64], cond[:64]),
            steps=6,
            batch_size=16,
            valid_data=valid,
            valid_every=2,
            progress=False,
        )
        finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        valids.append([r["valid_loss"] for r in result.history if "valid_loss" in r])
    assert torch.equal(finals[0], finals[1])
    assert len(valids[1]) == 3
    # Validation noise is fixed, so re-validating the final model reproduces the last value.
    again = fit(
        model,
        (x[:64], cond[:64]),
        steps=6,
        batch_size=16,
        valid_data=(x[64:], cond[64:]),
        checkpoint_dir=None,
        progress=False,
        lr=0.0,
    )
    assert again.history[-1]["valid_loss"] == pytest.approx(valids[1][-1], rel=0, abs=0)


def test_fp32_disables_autocast_inside_bf16_regions() -> None:
    a = torch.randn(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = a @ a
        with fp32():
            high = a @ a
    assert low.dtype == torch.bfloat16 and high.dtype == torch.float32
    torch.testing.assert_close(high, a @ a)


def test_amp_on_cpu_trains_and_keeps_fp32_weights() -> None:
    x, cond = _linear_gaussian_data(64)
    model = _CondGaussian()
    result = fit(model, (x, cond), steps=20, batch_size=32, amp=True, lr=0.05, progress=False)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_two_player_steps_use_separate_optimizers_and_n_critic() -> None:
    class Counting(_TinyGAN):
        d_calls = g_calls = 0

        def discriminator_loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
            if self.training:
                type(self).d_calls += 1
            return super().discriminator_loss(x, cond)

        def generator_loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
            if self.training:
                type(self).g_calls += 1
            return super().generator_loss(x, cond)

    torch.manual_seed(0)
    model = Counting()
    critic = [p.detach().clone() for p in model.discriminator_parameters()]
    gen = [p.detach().clone() for p in model.generator_parameters()]
    result = fit(
        model,
        torch.randn(64, 2),
        steps=4,
        batch_size=8,
        n_critic=3,
        critic_lr=0.0,
        log_every=1,
        progress=False,
    )
    assert (Counting.d_calls, Counting.g_calls) == (12, 4)
    # A zero critic learning rate freezes the critic while the generator still moves.
    assert all(
        torch.equal(a, b) for a, b in zip(critic, model.discriminator_parameters(), strict=True)
    )
    assert not all(
        torch.equal(a, b) for a, b in zip(gen, model.generator_parameters(), strict=True)
    )
    assert {"discriminator_loss", "generator_loss", "grad_norm_generator_loss"} <= set(
        result.history[-1]
    )


def test_bad_arguments_are_named() -> None:
    x = torch.randn(8, 3)
    with pytest.raises(ValueError, match="exactly one of steps= and epochs="):
        fit(_CondGaussian(), x, batch_size=4)
    with pytest.raises(ValueError, match="batch_size 16 exceeds the 8 samples"):
        fit(_CondGaussian(), x, steps=1, batch_size=16)
    with pytest.raises(ValueError, match="nonfinite must be"):
        fit(_CondGaussian(), x, steps=1, nonfinite="ignore")
    with pytest.raises(ValueError, match="x and cond have different numbers of samples"):
        fit(_CondGaussian(), (x, torch.randn(7, 2)), steps=1, batch_size=4)


@pytest.mark.gpu
def test_cuda_bf16_autocast_with_fp32_regions() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    a = torch.randn(8, 8, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = a @ a
        with fp32():
            high = a @ a
    assert low.dtype == torch.bfloat16 and high.dtype == torch.float32
    x, cond = _linear_gaussian_data(256)
    model = _CondGaussian()
    result = fit(
        model, (x, cond), steps=200, batch_size=64, lr=0.05, device="cuda", progress=False
    )  # amp defaults to on for CUDA
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in model.parameters())
    assert result.history[-1]["loss"] < result.history[0]["loss"]
