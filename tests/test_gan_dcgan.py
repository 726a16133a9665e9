"""DCGAN on 1-D and 2-D fields: shapes on odd grids, a batch-independent critic, spectral norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from physgen.models.dcgan import DCGAN
from physgen.models.gan_losses import gradient_penalty


@pytest.mark.parametrize("shape", [(1, 24), (2, 17), (1, 12, 10), (3, 9, 7)])
def test_dcgan_generates_and_scores_fields_of_any_grid_size(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = DCGAN(sample_shape=shape, latent_dim=4, channels=[8, 16])
    x = torch.randn(3, *shape)
    assert model.sample(3).shape == (3, *shape)
    assert model.discriminator_loss(x).shape == (3,)
    assert model.generator_loss(x).shape == (3,)


def test_dcgan_penalty_is_computed_sample_by_sample() -> None:
    # The batched penalty must equal the penalty of each sample on its own (same alpha):
    # the conv critic has no batch coupling, so one backward of D(x).sum() is exact.
    torch.manual_seed(0)
    model = DCGAN(sample_shape=(2, 11, 9), latent_dim=4, channels=[8, 16], objective="wasserstein")
    real, fake = torch.randn(2, 5, 2, 11, 9)
    batched = gradient_penalty(model.score, real, fake, generator=torch.Generator().manual_seed(3))
    alpha = torch.rand(5, generator=torch.Generator().manual_seed(3))
    single = []
    for i in range(5):
        mixed = (alpha[i] * real[i : i + 1] + (1 - alpha[i]) * fake[i : i + 1]).requires_grad_(True)
        (grad,) = torch.autograd.grad(model.score(mixed).sum(), mixed)
        single.append((grad.norm() - 1) ** 2)
    torch.testing.assert_close(batched, torch.stack(single), rtol=1e-5, atol=1e-6)
    assert model.lipschitz == "gp"


def test_dcgan_spectral_norm_covers_conv_layers() -> None:
    model = DCGAN(sample_shape=(1, 16, 16), latent_dim=4, channels=[8, 16], spectral_norm=True)
    convs = [m for m in model.critic_net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    gens = [m for m in model.generator_net.modules() if isinstance(m, nn.Conv2d)]
    assert gens and not any(hasattr(m, "parametrizations") for m in gens)


def test_dcgan_refuses_vectors_and_conditioning() -> None:
    with pytest.raises(ValueError, match="fields"):
        DCGAN(sample_shape=[5])
    with pytest.raises(ValueError, match="unconditional"):
        DCGAN.for_shape((1, 8), cond_shape=(2,))


def test_physics_term_is_added_to_the_generator_loss_on_generated_fields() -> None:
    """PI-GAN on fields: generator loss + λ·P(G(z)), evaluated on the same fake batch."""
    model = DCGAN((2, 8, 8), latent_dim=4, channels=(4, 8), physics_weight=0.7)
    seen: list[torch.Tensor] = []

    def penalty(fake: torch.Tensor) -> torch.Tensor:
        seen.append(fake.detach().clone())
        return fake.pow(2).flatten(1).mean(1)

    x = torch.randn(5, 2, 8, 8)
    torch.manual_seed(0)
    plain = model.generator_loss(x)
    model.physics_penalty = penalty
    torch.manual_seed(0)
    informed = model.generator_loss(x)
    torch.testing.assert_close(informed - plain, 0.7 * seen[0].pow(2).flatten(1).mean(1))
    assert DCGAN.from_config(model.config).physics_weight == 0.7
    with pytest.raises(ValueError, match="physics_weight"):
        DCGAN((2, 8, 8), physics_weight=-1.0)
