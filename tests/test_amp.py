"""Under bf16 autocast the delicate terms stay float32 and match a float32 computation.

CPU autocast runs matmuls and convolutions in bfloat16, as CUDA autocast does in training.
Networks may run in bf16; log-determinants, KL terms, divergences and gradient penalties must
come out float32 and, given the same inputs (the same network outputs), agree with the
all-float32 computation to float32 rounding. Each test checks first that autocast really
turns the network's output into bf16, so it would catch a term left in bf16.
"""

from __future__ import annotations

import torch

from physgen.training.amp import fp32


def _bf16() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_fp32_context_disables_autocast() -> None:
    x = torch.randn(4, 3)
    with _bf16():
        assert (x @ x.T).dtype == torch.bfloat16
        with fp32():
            assert (x @ x.T).dtype == torch.float32
