"""pix2pix: the PatchGAN's receptive field, the generator's loss, learning a known paired map."""

from __future__ import annotations

import pytest
import torch
from smooth_fields import smooth_fields

from physgen.models import get_model_class
from physgen.models.gan_losses import generator_objective
from physgen.models.pix2pix import Pix2Pix
from physgen.nn.patchgan import PatchGAN, patch_receptive_field
from physgen.training import fit


def _support(net: PatchGAN, shape: tuple[int, ...]) -> list[int]:
    """Extent per axis of the input points whose value moves one central output logit."""
    x = torch.randn(1, 2, *shape, dtype=torch.float64, requires_grad=True)
    out = net(x)
    centre = (0, 0, *(n // 2 for n in out.shape[2:]))
    (grad,) = torch.autograd.grad(out[centre], x)
    hit = grad[0].abs().sum(0) > 0  # (*grid)
    extents = []
    for axis in range(hit.ndim):
        others = tuple(a for a in range(hit.ndim) if a != axis)
        line = hit.any(dim=others) if others else hit
        idx = torch.nonzero(line).flatten()
        assert len(idx) == int(idx[-1] - idx[0] + 1), "the support is not one block"
        extents.append(len(idx))
    return extents


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_patchgan_receptive_field_is_the_documented_size_by_gradient_support(levels):
    torch.manual_seed(levels)
    net = PatchGAN(1, 2, [4] * levels).double()
    measured = _support(net, (256,))
    assert measured == [patch_receptive_field(levels)] == [net.receptive_field]
    if levels > 1:  # negative control: one level fewer sees a smaller patch
        assert measured[0] > patch_receptive_field(levels - 1)


def test_patchgan_receptive_field_in_two_dimensions_matches_the_paper():
    assert [patch_receptive_field(n) for n in (2, 3, 4)] == [16, 34, 70]  # the module docstring
    torch.manual_seed(0)
    net = PatchGAN(2, 2, [4, 4, 4]).double()
    assert _support(net, (80, 72)) == [34, 34]


def test_generator_loss_is_adversarial_plus_l1_plus_physics():
    torch.manual_seed(0)
    model = Pix2Pix([1, 16, 12], [2, 16, 12], channels=[8], critic_channels=[8, 8], l1_weight=7.0)
    model.physics_weight = 0.5
    model.physics_penalty = lambda f: f.square().flatten(1).sum(1)
    torch.nn.init.normal_(model.generator_net.conv_out.weight)  # a nonzero generator output
    x, cond = torch.randn(4, 1, 16, 12), torch.randn(4, 2, 16, 12)
    torch.manual_seed(3)
    loss = model.generator_loss(x, cond)
    torch.manual_seed(3)
    fake = model.generate(model.latent(4, x.device), cond)  # the same noise
    adversarial = generator_objective(model.patch_logits(fake, cond), "non_saturating").mean(1)
    l1 = (fake - x).abs().flatten(1).mean(1)
    expected = adversarial + 7.0 * l1 + 0.5 * fake.square().flatten(1).sum(1)
    torch.testing.assert_close(loss, expected)
    assert float((7.0 * l1).detach().min()) > 1e-3  # the L1 term is not vanishing


def test_pix2pix_is_registered_and_refuses_mismatched_grids():
    assert get_model_class("pix2pix") is Pix2Pix
    with pytest.raises(ValueError, match="grid"):
        Pix2Pix([1, 16, 16], [1, 16, 12])
    with pytest.raises(ValueError, match="cond-fields"):
        Pix2Pix.for_shape((1, 16, 16), None)
    with pytest.raises(ValueError, match="too small"):
        Pix2Pix([1, 8, 8], [1, 8, 8], critic_channels=[8, 8, 8, 8])


@pytest.mark.slow  # about 12 s of CPU, over 20 s on a loaded machine
def test_pix2pix_learns_a_scaled_sign_flip_of_smooth_fields_on_held_out_pairs():
    # The paired map y = −2x is deterministic and exactly representable, so the L1 term
    # drives the held-out error far below the best constant (zero) forecast, E|y|, and the
    # identity's 1.5 E|y|. It is not its own inverse, so a model that learned the map the
    # other way (x from y: −y/2, off by 0.75 E|y|) fails too. Negative control: the untrained
    # generator (zero-initialized output layer) sits at the zero forecast.
    x, x_test = (smooth_fields(n, 16, seed=s).float() for n, s in ((512, 0), (64, 1)))
    y, y_test = -2 * x, -2 * x_test
    torch.manual_seed(0)
    model = Pix2Pix([1, 16, 16], [1, 16, 16], channels=[8, 16], critic_channels=[8, 16],
                    periodic=True)  # fmt: skip

    def held_out_l1() -> float:
        return float((model.sample(64, x_test) - y_test).abs().mean())

    zero = float(y_test.abs().mean())
    assert float((x_test - y_test).abs().mean()) == pytest.approx(1.5 * zero)  # the identity
    assert held_out_l1() > 0.9 * zero
    fit(model, (y, x), steps=200, batch_size=16, lr=2e-3, progress=False, seed=0)
    assert held_out_l1() < 0.3 * zero
