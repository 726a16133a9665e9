"""Under bf16 autocast the delicate terms stay float32 and match a float32 computation.

CPU autocast runs matmuls and convolutions in bfloat16, as CUDA autocast does in training.
Networks may run in bf16; log-determinants, KL terms, divergences and gradient penalties must
come out float32 and, given the same inputs (the same network outputs), agree with the
all-float32 computation to float32 rounding. Each test checks first that autocast really
turns the network's output into bf16, so it would catch a term left in bf16.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from physgen.models.gan_losses import gradient_penalty
from physgen.training.amp import fp32


def _bf16() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _mlp(d_in: int, d_out: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 32), nn.Tanh(), nn.Linear(32, d_out))


def test_fp32_context_disables_autocast() -> None:
    x = torch.randn(4, 3)
    with _bf16():
        assert (x @ x.T).dtype == torch.bfloat16
        with fp32():
            assert (x @ x.T).dtype == torch.float32


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
