"""The U-Net's fused attention: the reference attention's values and gradients, and a second
derivative where a training divergence needs one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from physgen.likelihood import divergence
from physgen.nn.unet import UNet, _Attention
from physgen.paths import load_module_from_path

# The written-out attention of the benchmark, ``softmax(q kᵀ / √d) v``: the reference here.
_BENCH = Path(__file__).parents[1] / "studies" / "benchmarks" / "attention_bench.py"
_reference = load_module_from_path(_BENCH, "physgen_attention_bench").written_out


def test_fused_attention_matches_the_reference_values_and_gradients() -> None:
    torch.manual_seed(0)
    block = _Attention(64).double()  # 2 heads of width 32
    x = torch.randn(3, 64, 6, 5, dtype=torch.float64, requires_grad=True)
    fused, reference = block(x), _reference(block, x)
    torch.testing.assert_close(fused, reference, rtol=0, atol=1e-12)
    weights = torch.randn_like(fused)
    params = [x, *block.parameters()]
    grads = torch.autograd.grad((fused * weights).sum(), params)
    expected = torch.autograd.grad((reference * weights).sum(), params)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def _net() -> UNet:
    torch.manual_seed(1)
    net = UNet(ndim=2, in_channels=1, channels=[32], attention=[True]).double()
    with torch.no_grad():  # zero-initialised output layers would hide the attention
        for parameter in net.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return net


def test_a_kept_divergence_through_attention_differentiates_again() -> None:
    """Training a CNF differentiates its divergence: the fused kernel has no second
    derivative (the control), ``divergence`` selects one that has, with the reference's value."""
    net = _net()
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    t = torch.full((2,), 0.3, dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    probes = torch.randn(2, *x.shape, dtype=torch.float64, generator=g)
    params = list(net.parameters())
    _, div = divergence(lambda y: net(y, t), x, probes, create_graph=True)
    grads = torch.autograd.grad(div.sum(), params, allow_unused=True, materialize_grads=True)

    fused_forward = _Attention.forward
    try:  # the same computation with the attention written out
        _Attention.forward = _reference  # type: ignore[method-assign]
        _, div_ref = divergence(lambda y: net(y, t), x, probes, create_graph=True)
        grads_ref = torch.autograd.grad(
            div_ref.sum(), params, allow_unused=True, materialize_grads=True
        )
    finally:
        _Attention.forward = fused_forward  # type: ignore[method-assign]
    torch.testing.assert_close(div, div_ref, rtol=0, atol=1e-10)
    assert div.abs().min() > 1e-3  # the check compares something
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-9)

    y = x.clone().requires_grad_(True)  # control: the fused kernel, differentiated twice
    (vjp,) = torch.autograd.grad((net(y, t) * probes[0]).sum(), y, create_graph=True)
    attention_weight = net.mid[1].qkv.weight
    with pytest.raises(RuntimeError, match="not implemented"):
        torch.autograd.grad(vjp.sum(), attention_weight)
