"""Every transform, forward and inverse: round trip, and log|det J| against autograd slogdet."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from physgen.nn import MLP
from physgen.nn.made import MADE
from physgen.transforms import (
    ActNormTransform,
    AffineCouplingTransform,
    AffineTransform,
    ComposeTransform,
    Conv1x1Transform,
    LogitTransform,
    MaskedAffineCouplingTransform,
    MaskedAutoregressiveTransform,
    MultiScaleTransform,
    PermutationTransform,
    SplineCouplingTransform,
    SqueezeTransform,
    Transform,
    checkerboard_mask,
    rq_spline,
)

DT = torch.float64


def _randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _mlp(n_in: int, n_out: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(n_in, n_out, hidden=(12,), act="tanh").to(DT)


def _conv(c_in: int, c_out: int, d: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    conv = nn.Conv1d if d == 1 else nn.Conv2d
    return nn.Sequential(conv(c_in, 8, 3, padding=1), nn.Tanh(), conv(8, c_out, 3, padding=1)).to(
        DT
    )


CONTEXT = _randn(3, 2, seed=99)  # one context per batch row


def vector_coupling(keep_first: bool, context: bool) -> tuple[Transform, Tensor]:
    net = _mlp((3 if keep_first else 2) + 2 * context, 2 * (2 if keep_first else 3), seed=1)

    def cond(kept: Tensor) -> tuple[Tensor, ...]:
        inp = torch.cat([kept, CONTEXT], -1) if context else kept
        return net(inp).chunk(2, -1)

    return AffineCouplingTransform(cond, split=3, keep_first=keep_first), _randn(3, 5)


def channel_coupling() -> tuple[Transform, Tensor]:
    net = _conv(2, 2 * 2, d=2, seed=2)
    return (
        AffineCouplingTransform(lambda k: net(k).chunk(2, 1), split=2, dim=-3, event_dim=3),
        _randn(2, 4, 3, 3),
    )


def checkerboard(parity: int, context: bool) -> tuple[Transform, Tensor]:
    net = _conv(2 + context, 2 * 2, d=2, seed=3)
    ctx = _randn(2, 1, 3, 4, seed=5)

    def cond(kept: Tensor) -> tuple[Tensor, ...]:
        return net(torch.cat([kept, ctx], 1) if context else kept).chunk(2, 1)

    mask = checkerboard_mask((3, 4), parity)
    return MaskedAffineCouplingTransform(cond, mask, event_dim=3), _randn(2, 2, 3, 4)


def spline_coupling(context: bool) -> tuple[Transform, Tensor]:
    bins = 5
    net = _mlp(2 + 2 * context, 2 * (3 * bins - 1), seed=4)

    def cond(kept: Tensor) -> tuple[Tensor, ...]:
        out = net(torch.cat([kept, CONTEXT], -1) if context else kept).unflatten(-1, (2, -1))
        return out.split([bins, bins, bins - 1], -1)

    x = _randn(3, 4) * 2
    x[0, 3] = 7.5  # one entry in the identity tail
    return SplineCouplingTransform(cond, split=2, bound=3.0), x


def autoregressive(inverse: bool, context: bool, steps: bool = False) -> tuple[Transform, Tensor]:
    torch.manual_seed(6)
    made = MADE(4, 2, context=2 * context, hidden=(16, 16), act="tanh", order=[2, 0, 3, 1]).to(DT)
    c = CONTEXT if context else None
    t = MaskedAutoregressiveTransform(
        lambda x: made(x, c).unbind(-2),
        passes=4,
        step=(lambda x, k: made.step(x, k, c)) if steps else None,
    )
    return (t.inv if inverse else t), _randn(3, 4)


def conv1x1() -> tuple[Transform, Tensor]:
    return Conv1x1Transform(_randn(3, 3, seed=7) + 2 * torch.eye(3, dtype=DT), 3), _randn(
        2, 3, 2, 3
    )


def actnorm(d: int) -> tuple[Transform, Tensor]:
    c = 3
    shape = (c,) + (1,) * d
    t = ActNormTransform(_randn(*shape, seed=8), 0.3 * _randn(*shape, seed=9), event_dim=1 + d)
    return t, _randn(2, c, *([4] * d))


def multiscale(grid: tuple[int, ...]) -> tuple[Transform, Tensor]:
    """Two-level multi-scale map on an odd-sized grid with data-dependent inner maps."""
    d = len(grid)
    ev = 1 + d
    channels = 2**d  # after one squeeze of a single channel
    net_pre = _conv(1, 2, d, seed=10)
    net_post = _conv(channels // 2, 2 * (channels - channels // 2), d, seed=11)
    c_next = channels - channels // 2
    net_next = _conv(c_next, 2 * c_next, d, seed=12)
    pre = MaskedAffineCouplingTransform(
        lambda k: net_pre(k).chunk(2, 1), checkerboard_mask(grid, 0), ev
    )
    post = ComposeTransform(
        [
            Conv1x1Transform(
                _randn(channels, channels, seed=13) + 2 * torch.eye(channels, dtype=DT), ev
            ),
            AffineCouplingTransform(lambda k: net_post(k).chunk(2, 1), channels // 2, -ev, ev),
        ]
    )
    coarse = tuple(n // 2 for n in grid)
    nxt = MultiScaleTransform(
        d,
        MaskedAffineCouplingTransform(
            lambda k: net_next(k).chunk(2, 1), checkerboard_mask(coarse, 1), ev
        ),
    )
    return MultiScaleTransform(d, pre, post, nxt), _randn(2, 1, *grid)


def composed() -> tuple[Transform, Tensor]:
    x = torch.rand(3, 5, generator=torch.Generator().manual_seed(3), dtype=DT)
    t1, _ = vector_coupling(True, False)
    t = ComposeTransform(
        [LogitTransform(alpha=0.05), PermutationTransform(torch.tensor([1, 3, 0, 4, 2])), t1],
        event_dim=1,
    )
    return t, x


def squeeze(d: int) -> tuple[Transform, Tensor]:
    return SqueezeTransform(d), _randn(2, 2, *([4, 6][:d]))


CASES: dict[str, Callable[[], tuple[Transform, Tensor]]] = {
    "affine": lambda: (
        AffineTransform(_randn(4), 3 * _randn(4, seed=1), event_dim=1),
        _randn(3, 4),
    ),
    "logit": lambda: (
        LogitTransform(alpha=0.05, event_dim=1),
        torch.rand(3, 4, generator=torch.Generator().manual_seed(2), dtype=DT),
    ),
    "permutation": lambda: (PermutationTransform(torch.tensor([2, 0, 3, 1])), _randn(3, 4)),
    "channel-permutation": lambda: (
        PermutationTransform(torch.tensor([2, 0, 1]), event_dim=3),
        _randn(2, 3, 2, 2),
    ),
    "squeeze-1d": lambda: squeeze(1),
    "squeeze-2d": lambda: squeeze(2),
    "actnorm-1d": lambda: actnorm(1),
    "actnorm-2d": lambda: actnorm(2),
    "conv1x1": conv1x1,
    "coupling-half-first": lambda: vector_coupling(True, False),
    "coupling-half-second": lambda: vector_coupling(False, False),
    "coupling-conditional": lambda: vector_coupling(False, True),
    "coupling-channel": channel_coupling,
    "checkerboard-even": lambda: checkerboard(0, False),
    "checkerboard-odd-conditional": lambda: checkerboard(1, True),
    "spline-coupling": lambda: spline_coupling(False),
    "spline-coupling-conditional": lambda: spline_coupling(True),
    "maf": lambda: autoregressive(False, False),
    "maf-conditional": lambda: autoregressive(False, True),
    "iaf": lambda: autoregressive(True, False),
    "iaf-conditional": lambda: autoregressive(True, True),
    "maf-conditional-stepwise-inverse": lambda: autoregressive(False, True, steps=True),
    "iaf-stepwise": lambda: autoregressive(True, False, steps=True),
    "multiscale-1d-odd": lambda: multiscale((7,)),
    "multiscale-2d-odd": lambda: multiscale((5, 6)),
    "compose": composed,
}


def _slogdet_per_sample(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """log|det ∂f/∂x| of each sample: diagonal blocks of the dense autograd Jacobian."""
    b = x.shape[0]
    jac = torch.autograd.functional.jacobian(lambda v: f(v).reshape(b, -1), x)
    jac = jac.reshape(b, -1, b, x[0].numel())  # (B, N_out, B, N_in)
    blocks = torch.stack([jac[i, :, i] for i in range(b)])
    same = torch.eye(b, dtype=torch.bool)[:, None, :, None].expand_as(jac)
    assert torch.all(jac[~same] == 0)  # samples do not interact
    sign, logabs = torch.linalg.slogdet(blocks)
    assert torch.all(sign != 0)
    return logabs


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_and_joint_calls(name: str) -> None:
    t, x = CASES[name]()
    y, ladj = t.call_and_ladj(x)
    assert ladj.shape == x.shape[: x.ndim - t.event_dim]
    torch.testing.assert_close(t(x), y)
    torch.testing.assert_close(t.log_abs_det_jacobian(x, y), ladj)
    x_back, ladj_inv = t.inv.call_and_ladj(y)
    torch.testing.assert_close(x_back, x, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(ladj_inv, -ladj, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(t.inv(y), x, atol=1e-9, rtol=1e-9)
    assert t.inv.inv is t
    assert t.inv.event_dim == t.event_dim
    assert tuple(t.forward_shape(x.shape)) == tuple(y.shape)
    assert tuple(t.inverse_shape(y.shape)) == tuple(x.shape)


@pytest.mark.parametrize("name", list(CASES))
def test_log_det_matches_autograd_jacobian(name: str) -> None:
    t, x = CASES[name]()
    y, ladj = t.call_and_ladj(x)
    torch.testing.assert_close(ladj, _slogdet_per_sample(t, x), atol=1e-8, rtol=1e-8)
    _, ladj_inv = t.inv.call_and_ladj(y)
    torch.testing.assert_close(ladj_inv, _slogdet_per_sample(t.inv, y), atol=1e-8, rtol=1e-8)


def test_actnorm_data_dependent_init_whitens_first_batch() -> None:
    x = 3 + 2 * _randn(64, 2, 5, 4)
    loc, log_scale = torch.zeros(2, 1, 1, dtype=DT), torch.zeros(2, 1, 1, dtype=DT)

    def init(v: Tensor) -> tuple[Tensor, Tensor]:
        flat = v.transpose(0, 1).reshape(2, -1)
        return flat.mean(1).reshape(2, 1, 1), flat.std(1).log().reshape(2, 1, 1)

    t = ActNormTransform(loc, log_scale, event_dim=3, initialize=init)
    y, _ = t.call_and_ladj(x)
    per_channel = y.transpose(0, 1).reshape(2, -1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(2, dtype=DT), atol=1e-12, rtol=0)
    torch.testing.assert_close(per_channel.std(1), torch.ones(2, dtype=DT))
    assert t.initialize is None  # the init ran once; the next batch uses the stored values
    y2, _ = t.call_and_ladj(x + 1)
    torch.testing.assert_close(y2, y + (-t.log_scale).exp())


def test_spline_identity_tails_and_no_nan_far_outside() -> None:
    x = torch.tensor([-1e30, -1e6, -3.0001, 3.0001, 50.0, 1e6, 1e30], dtype=DT, requires_grad=True)
    k = 6
    w, h, d = _randn(7, k, seed=1), _randn(7, k, seed=2), _randn(7, k - 1, seed=3)
    for inverse in (False, True):
        y, ladj = rq_spline(x, w * 10, h * 10, d * 10, bound=3.0, inverse=inverse)
        torch.testing.assert_close(y, x.detach(), rtol=0, atol=0)
        assert torch.all(ladj == 0)
        (grad,) = torch.autograd.grad(y.sum() + ladj.sum(), x)
        assert torch.isfinite(grad).all()


def test_spline_is_continuous_and_monotone_at_the_bound() -> None:
    x = torch.linspace(-3.5, 3.5, 2001, dtype=DT)
    k = 8
    w = _randn(1, k, seed=4).expand(2001, k)
    h = _randn(1, k, seed=5).expand(2001, k)
    d = _randn(1, k - 1, seed=6).expand(2001, k - 1)
    y, ladj = rq_spline(x, w, h, d, bound=3.0)
    assert torch.all(y.diff() > 0)
    assert (y.diff().abs() < 5 * 7.0 / 2000 * ladj.exp().max()).all()  # no jump anywhere
    edge = torch.tensor([-3.0, 3.0], dtype=DT)
    torch.testing.assert_close(rq_spline(edge, w[:2], h[:2], d[:2], bound=3.0)[0], edge)


def test_logit_elementwise_log_det_shape() -> None:
    x = torch.rand(3, 4, dtype=DT)
    _, ladj = LogitTransform(alpha=0.01).call_and_ladj(x)
    assert ladj.shape == x.shape
    torch.testing.assert_close(
        ladj.sum(-1), LogitTransform(alpha=0.01, event_dim=1).call_and_ladj(x)[1]
    )


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        SqueezeTransform(2)(torch.zeros(1, 1, 3, 4))
    with pytest.raises(ValueError, match="not a permutation"):
        PermutationTransform(torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="alpha"):
        LogitTransform(alpha=0.5)
    with pytest.raises(ValueError, match="order"):
        MADE(3, order=[0, 1, 1])


def test_made_is_autoregressive_in_its_order() -> None:
    torch.manual_seed(0)
    made = MADE(5, params=2, context=2, hidden=(64, 64), order=[3, 0, 4, 1, 2]).to(DT)
    x, c = _randn(5), _randn(2, seed=1)
    jac = torch.autograd.functional.jacobian(lambda v: made(v, c), x)  # (2, 5, 5)
    order = torch.tensor([3, 0, 4, 1, 2])
    allowed = order[None, :] < order[:, None]  # output i may see input j iff j precedes i
    assert torch.all(jac.abs().sum(0)[~allowed] == 0)
    assert torch.all(jac.abs().sum(0)[allowed] > 0)
    jac_c = torch.autograd.functional.jacobian(lambda v: made(x, v), c)
    assert torch.all(jac_c.abs().sum((0, -1)) > 0)  # every output sees the context


@pytest.mark.parametrize("context", [0, 2])
def test_made_step_is_the_matching_slice_of_a_full_pass(context: int) -> None:
    torch.manual_seed(1)
    order = [3, 0, 4, 1, 2]
    made = MADE(5, params=2, context=context, hidden=(24, 24), order=order).to(DT)
    x, c = _randn(7, 5), (_randn(7, context, seed=2) if context else None)
    full = made(x, c)  # (7, 2, 5)
    for k in range(5):
        i, params = made.step(x, k, c)
        assert order[i] == k
        torch.testing.assert_close(params, full[..., i], atol=1e-12, rtol=1e-12)
