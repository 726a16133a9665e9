"""Under bf16 autocast the delicate terms stay float32 and match a float32 computation.

CPU autocast runs matmuls and convolutions in bfloat16, as CUDA autocast does in training.
Networks may run in bf16; log-determinants, KL terms, divergences and gradient penalties must
come out float32 and, given the same inputs (the same network outputs), agree with the
all-float32 computation to float32 rounding. Each test checks first that autocast really
turns the network's output into bf16, so it would catch a term left in bf16.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from physgen.likelihood import divergence, hutchinson_probes, ode_log_prob
from physgen.models.flows import RealNVP
from physgen.models.flows_glow import Glow, _ConvConditioner
from physgen.models.gan_losses import gradient_penalty
from physgen.models.vae import gaussian_kl, gaussian_log_prob
from physgen.nn import MLP
from physgen.training.amp import fp32


def _bf16() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _mlp(d_in: int, d_out: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 32), nn.Tanh(), nn.Linear(32, d_out))


def _replay(nets: list[nn.Module], run: Callable[[], Tensor]) -> tuple[Tensor, Tensor]:
    """``run()`` under autocast, then again in float32 with every network in ``nets``
    returning what it returned under autocast (cast to float32): the second pass sees the
    same network outputs as the first and does everything else in float32."""
    recorded: list[Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: recorded.append(out.detach())) for m in nets
    ]
    with _bf16():
        amp = run()
    for h in hooks:
        h.remove()
    assert recorded and all(r.dtype == torch.bfloat16 for r in recorded)
    replay = iter(recorded)
    hooks = [m.register_forward_hook(lambda _m, _i, _out: next(replay).float()) for m in nets]
    reference = run()
    for h in hooks:
        h.remove()
    assert next(replay, None) is None  # both passes called the networks alike
    assert reference.dtype == torch.float32
    return amp, reference


def test_fp32_context_disables_autocast() -> None:
    x = torch.randn(4, 3)
    with _bf16():
        assert (x @ x.T).dtype == torch.bfloat16
        with fp32():
            assert (x @ x.T).dtype == torch.float32


@pytest.mark.parametrize("bins", [0, 4], ids=["affine", "spline"])
def test_realnvp_log_prob_keeps_log_det_in_fp32(bins: int) -> None:
    torch.manual_seed(0)
    flow = RealNVP(features=6, transforms=4, hidden=[32], bins=bins)
    x = torch.randn(16, 6)
    nets = [m for m in flow.modules() if isinstance(m, MLP)]
    amp, reference = _replay(nets, lambda: flow.log_prob(x))
    assert amp.dtype == torch.float32
    torch.testing.assert_close(amp, reference)


def test_glow_log_prob_keeps_state_and_log_det_in_fp32() -> None:
    torch.manual_seed(0)
    flow = Glow(shape=[1, 8, 8], levels=2, steps=2, hidden=8)
    x = 1.5 + 2.0 * torch.randn(8, 1, 8, 8)
    flow.initialize(x)  # ActNorm from data, in float32, before either pass
    nets = [m.net for m in flow.modules() if isinstance(m, _ConvConditioner)]
    amp, reference = _replay(nets, lambda: flow.log_prob(x))
    assert amp.dtype == torch.float32
    torch.testing.assert_close(amp, reference)


def test_vae_kl_and_gaussian_log_likelihood_in_fp32() -> None:
    torch.manual_seed(0)
    head = _mlp(5, 2 * 8)
    x = torch.randn(16, 5)
    with _bf16():
        mu, logvar = head(x).chunk(2, dim=1)
        assert mu.dtype == torch.bfloat16
        kl = gaussian_kl(mu, logvar)
        kl_prior = gaussian_kl(mu, logvar, mu.flip(0), logvar.flip(0))
        log_p = gaussian_log_prob(x[:, :4], mu[:, :4], logvar[:, :4])
    mu32, logvar32 = mu.float(), logvar.float()
    for value, reference in [
        (kl, 0.5 * (logvar32.exp() + mu32**2 - 1 - logvar32).sum(-1)),
        (kl_prior, gaussian_kl(mu32, logvar32, mu32.flip(0), logvar32.flip(0))),
        (log_p, torch.distributions.Normal(mu32[:, :4], (0.5 * logvar32[:, :4]).exp())
         .log_prob(x[:, :4]).sum(-1)),
    ]:  # fmt: skip
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, reference)


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_divergence_in_fp32(trace: str) -> None:
    net = _mlp(4, 4)
    x = torch.randn(8, 4)
    probes = None
    if trace == "hutchinson":
        probes = hutchinson_probes(x, 3, generator=torch.Generator().manual_seed(1))
    with _bf16():
        assert net(x).dtype == torch.bfloat16
        out, div = divergence(net, x, probes)
    ref_out, ref_div = divergence(net, x, probes)
    assert out.dtype == div.dtype == torch.float32
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(div, ref_div)
    if trace == "exact":  # the exact trace of the Jacobian, from autograd in float64
        jac = torch.func.vmap(torch.func.jacrev(net.double()))(x.double())
        torch.testing.assert_close(div.double(), jac.diagonal(dim1=1, dim2=2).sum(-1),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip


def test_ode_log_prob_in_fp32() -> None:
    net = _mlp(3, 2)

    def velocity(y: Tensor, t: Tensor) -> Tensor:
        return net(torch.cat([y, t[:, None]], dim=1))

    x = torch.randn(8, 2)
    normal = torch.distributions.Normal(0.0, 1.0)

    def base(z: Tensor) -> Tensor:
        return normal.log_prob(z).sum(-1)

    probes = hutchinson_probes(x, 1, generator=torch.Generator().manual_seed(2))
    with _bf16():
        amp = ode_log_prob(velocity, x, base, probes=probes, method="rk4", steps=4)
    ref = ode_log_prob(velocity, x, base, probes=probes, method="rk4", steps=4)
    assert amp.log_prob.dtype == amp.z.dtype == torch.float32
    torch.testing.assert_close(amp.log_prob, ref.log_prob)
    torch.testing.assert_close(amp.z, ref.z)


def test_gradient_penalty_in_fp32() -> None:
    critic_net = _mlp(6, 1)

    def critic(x: Tensor, cond: Tensor | None) -> Tensor:
        return critic_net(x).squeeze(-1)

    real, fake = torch.randn(8, 6), torch.randn(8, 6)
    with _bf16():
        assert critic(real, None).dtype == torch.bfloat16
        amp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    ref = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    assert amp.dtype == torch.float32
    torch.testing.assert_close(amp, ref)
