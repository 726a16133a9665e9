"""GAN objectives, the per-sample gradient penalty, Lipschitz controls and mode coverage."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from physgen.metrics.modes import mode_coverage, ring_centers, sample_ring
from physgen.models.gan import GAN, WGAN, WGANGP, ConditionalGAN
from physgen.models.gan_losses import critic_objective, generator_objective, gradient_penalty
from physgen.training import fit


def test_gradient_penalty_of_linear_critic_is_per_sample_norm(generator: torch.Generator) -> None:
    # D(x) = <w, x> + b has gradient w at every point, so each sample's penalty is
    # (|w| - 1)^2. A norm over the whole batch would give (sqrt(B)|w| - 1)^2 instead, and a
    # per-pixel norm (|w_j| - 1)^2 entrywise.
    batch, shape = 6, (2, 5, 3)
    w = torch.randn(*shape, generator=generator, dtype=torch.float64)

    def critic(x: Tensor, cond: Tensor | None) -> Tensor:
        return (x * w).flatten(1).sum(1) + 0.3

    real = torch.randn(batch, *shape, generator=generator)
    fake = torch.randn(batch, *shape, generator=generator)
    penalty = gradient_penalty(critic, real, fake)
    expected = (w.norm() - 1) ** 2
    assert penalty.shape == (batch,)
    torch.testing.assert_close(penalty.double(), expected.expand(batch), rtol=1e-5, atol=1e-6)
    batch_norm_version = (math.sqrt(batch) * w.norm() - 1) ** 2
    assert not torch.allclose(penalty.double(), batch_norm_version.expand(batch), rtol=1e-2)


def test_gradient_penalty_interpolates_with_one_alpha_per_sample() -> None:
    # D(x) = |x|^2 / 2 has gradient x, so P_i = (|a_i x_i + (1 - a_i) y_i| - 1)^2 with one a_i
    # per sample, reproduced here from the same seeded generator.
    batch, shape = 5, (3, 4)
    data = torch.Generator().manual_seed(0)
    real, fake = torch.randn(2, batch, *shape, generator=data)

    def critic(x: Tensor, cond: Tensor | None) -> Tensor:
        return 0.5 * (x**2).flatten(1).sum(1)

    penalty = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    alpha = torch.rand(batch, generator=torch.Generator().manual_seed(7)).reshape(batch, 1, 1)
    mixed = alpha * real + (1 - alpha) * fake
    expected = (mixed.flatten(1).norm(dim=1) - 1) ** 2
    torch.testing.assert_close(penalty, expected, rtol=1e-5, atol=1e-6)


def test_gradient_penalty_stays_fp32_under_autocast() -> None:
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

    def critic(x: Tensor, cond: Tensor | None) -> Tensor:
        return net(x).squeeze(-1)

    real, fake = torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(1))
    reference = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty = gradient_penalty(
            critic, real.bfloat16(), fake.bfloat16(), generator=torch.Generator().manual_seed(3)
        )
    assert penalty.dtype == torch.float32
    # Inputs were rounded to bf16 (relative 4e-3); the penalty itself is computed in fp32.
    torch.testing.assert_close(penalty, reference, rtol=2e-2, atol=1e-3)


def test_gradient_penalty_of_a_float64_critic_is_computed_in_float64() -> None:
    # D(x) = |x|^2 / 2 again: in float64 the penalty matches the formula to round-off.
    real, fake = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(0)).double()

    def critic(x: Tensor, cond: Tensor | None) -> Tensor:
        return 0.5 * (x**2).flatten(1).sum(1)

    penalty = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    alpha = torch.rand(5, generator=torch.Generator().manual_seed(7)).double().reshape(5, 1, 1)
    expected = ((alpha * real + (1 - alpha) * fake).flatten(1).norm(dim=1) - 1) ** 2
    assert penalty.dtype == torch.float64
    torch.testing.assert_close(penalty, expected, rtol=1e-12, atol=1e-12)
    model = WGANGP(sample_shape=[6], latent_dim=2, hidden=[8]).double()
    assert model.discriminator_loss(torch.randn(4, 6, dtype=torch.float64)).dtype == torch.float64


def test_gradient_penalty_gradients_reach_the_critic() -> None:
    net = nn.Linear(3, 1)
    real, fake = torch.randn(2, 4, 3)
    gradient_penalty(lambda x, c: net(x).squeeze(-1), real, fake).sum().backward()
    # d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w| per sample; the bias gets none.
    w = net.weight.detach()
    torch.testing.assert_close(net.weight.grad, 4 * 2 * (w.norm() - 1) * w / w.norm())
    assert net.bias.grad is None or torch.count_nonzero(net.bias.grad) == 0


def test_objectives_match_their_formulas() -> None:
    d_real = torch.linspace(-3, 3, 7, dtype=torch.float64)
    d_fake = torch.linspace(2, -4, 7, dtype=torch.float64)
    sig = torch.sigmoid
    bce = -torch.log(sig(d_real)) - torch.log(1 - sig(d_fake))
    for objective in ("minimax", "non_saturating"):
        torch.testing.assert_close(critic_objective(d_real, d_fake, objective), bce)
    torch.testing.assert_close(generator_objective(d_fake, "minimax"), torch.log(1 - sig(d_fake)))
    torch.testing.assert_close(
        generator_objective(d_fake, "non_saturating"), -torch.log(sig(d_fake))
    )
    torch.testing.assert_close(critic_objective(d_real, d_fake, "wasserstein"), d_fake - d_real)
    torch.testing.assert_close(generator_objective(d_fake, "wasserstein"), -d_fake)
    with pytest.raises(ValueError, match="objective"):
        critic_objective(d_real, d_fake, "hinge")


def test_wgan_critic_weights_are_clipped_before_every_use() -> None:
    model = WGAN(sample_shape=[3], latent_dim=2, hidden=[8], clip_value=0.05)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0).add_(1.0)
    model.discriminator_loss(torch.randn(4, 3))
    for p in model.discriminator_parameters():
        assert torch.all(p == 0.05)
    # The clamp touches only the critic.
    for p in model.generator_parameters():
        assert torch.all(p == 1.0)


def test_spectral_norm_bounds_each_critic_layer() -> None:
    torch.manual_seed(0)
    model = WGANGP(sample_shape=[6], latent_dim=2, hidden=[32, 32], spectral_norm=True)
    x = torch.randn(16, 6)
    for _ in range(30):  # power iterations run on training forwards
        model.score(x)
    model.eval()
    for module in model.critic_net.modules():
        if isinstance(module, nn.Linear):
            sigma = torch.linalg.matrix_norm(module.weight.detach(), ord=2)
            assert sigma == pytest.approx(1.0, abs=1e-3)


def test_conditional_gan_checks_and_uses_its_conditioning() -> None:
    model = ConditionalGAN(sample_shape=[2], cond_shape=[3], latent_dim=2, hidden=[8])
    cond = torch.randn(5, 3)
    z = torch.randn(5, 2)
    assert not torch.allclose(model.generate(z, cond), model.generate(z, cond + 1))
    assert model.discriminator_loss(torch.randn(5, 2), cond).shape == (5,)
    with pytest.raises(ValueError, match="cond"):
        model.sample(5)
    with pytest.raises(ValueError, match="cond"):
        model.sample(5, torch.randn(4, 3))
    with pytest.raises(ValueError, match="cond_shape"):
        ConditionalGAN.for_shape((2,))
    with pytest.raises(ValueError, match="unconditional"):
        GAN(sample_shape=[2]).sample(2, cond)


def test_bad_settings_are_refused_with_their_names() -> None:
    with pytest.raises(ValueError, match="objective"):
        GAN(sample_shape=[2], objective="hinge")
    with pytest.raises(ValueError, match="Wasserstein"):
        GAN(sample_shape=[2], objective="wasserstein")
    with pytest.raises(ValueError, match="lipschitz"):
        ConditionalGAN(sample_shape=[2], cond_shape=[1], lipschitz="weight_decay")
    with pytest.raises(ValueError, match="n_critic"):
        WGANGP(sample_shape=[2], n_critic=0)
    with pytest.raises(ValueError, match="x has shape"):
        WGANGP(sample_shape=[2]).discriminator_loss(torch.randn(3, 4))


def test_mode_coverage_flags_a_collapsed_generator() -> None:
    gen = torch.Generator().manual_seed(0)
    centers, std = ring_centers(8, 2.0), 0.02
    truth = mode_coverage(sample_ring(4000, std=std, generator=gen), centers, std)
    assert truth.n_covered == 8
    # Within 3 std in 2-D: P(chi2_2 <= 9) = 1 - exp(-4.5) = 0.9889.
    assert truth.high_quality_fraction == pytest.approx(1 - math.exp(-4.5), abs=0.01)

    collapsed = centers[3] + std * torch.randn(4000, 2, generator=gen)
    result = mode_coverage(collapsed, centers, std)
    assert result.n_covered == 1 and int(result.counts.argmax()) == 3

    # Modes at angles 0, ±45°, ±90° only, plus a trickle into the other three that must not
    # count as coverage.
    right = sample_ring(4000, std=std, generator=gen)
    keep = torch.atan2(right[:, 1], right[:, 0]).abs() < math.pi / 2 + 0.1
    trickle = sample_ring(40, std=std, generator=gen)
    assert mode_coverage(torch.cat([right[keep], trickle]), centers, std).n_covered == 5

    blurred = sample_ring(4000, std=0.3, generator=gen)  # all modes, low quality
    assert mode_coverage(blurred, centers, std).high_quality_fraction < 0.2


@pytest.mark.slow
def test_wgan_gp_covers_all_eight_ring_modes() -> None:
    std = 0.05
    data = sample_ring(50_000, std=std, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = WGANGP(sample_shape=[2], latent_dim=2, hidden=[64, 64, 64])
    # Adam(1e-3, betas=(0.5, 0.9)) decayed linearly to zero, as in Gulrajani et al. (2017).
    fit(
        model,
        data,
        steps=3000,
        batch_size=256,
        lr=1e-3,
        betas=(0.5, 0.9),
        schedule="linear",
        progress=False,
    )
    samples = model.sample(4000, generator=torch.Generator().manual_seed(1))
    result = mode_coverage(samples, ring_centers(8, 2.0), std)
    print(f"ring: covered {result.n_covered}/8, high-quality {result.high_quality_fraction:.3f}")
    # Every mode holds at least a fifth of its fair share, and 60 % of all samples lie
    # within 3 std of a mode (the data themselves: 98.9 %).
    assert result.n_covered == 8
    assert result.high_quality_fraction >= 0.6


def test_losses_run_under_no_grad_with_the_same_values() -> None:
    model = WGANGP(sample_shape=[3], latent_dim=2, hidden=[8])
    x = torch.randn(5, 3)
    torch.manual_seed(0)
    with_grad = model.discriminator_loss(x)
    with torch.no_grad():
        torch.manual_seed(0)
        without = model.discriminator_loss(x)
    assert not without.requires_grad
    torch.testing.assert_close(without, with_grad.detach())
