"""ConFIG: the conflict-free gradient combination and its use in ``fit``."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from physgen.models.base import GenerativeModel
from physgen.training import conflict_free_direction, fit

F64 = torch.float64


def _cosines(g: Tensor, grads: list[Tensor]) -> Tensor:
    return torch.stack([g @ h / (g.norm() * h.norm()) for h in grads])


def test_two_conflicting_gradients_both_decrease() -> None:
    g1, g2 = torch.tensor([1.0, 0.0], dtype=F64), torch.tensor([-2.0, 0.5], dtype=F64)
    assert float(g1 @ (g1 + g2)) < 0  # negative control: the plain sum raises loss 1
    g = conflict_free_direction([g1, g2])
    assert float(g @ g1) > 0 and float(g @ g2) > 0
    cos = _cosines(g, [g1, g2])
    torch.testing.assert_close(cos[0], cos[1], rtol=0, atol=1e-12)
    # Its length is the summed projection of the raw gradients on the unit direction.
    unit = g / g.norm()
    torch.testing.assert_close(g.norm(), g1 @ unit + g2 @ unit, rtol=1e-12, atol=0)


def test_equal_angles_with_many_gradients() -> None:
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(10, generator=gen, dtype=F64) for _ in range(3)]
    g = conflict_free_direction(grads)
    cos = _cosines(g, grads)
    torch.testing.assert_close(cos, cos.mean().expand(3), rtol=0, atol=1e-10)
    assert bool((cos > 0).all())


def test_aligned_gradients_add_and_a_single_one_is_returned() -> None:
    g = torch.tensor([[0.3, -1.0], [2.0, 0.5]], dtype=F64)  # any shape is flattened and restored
    torch.testing.assert_close(conflict_free_direction([g, 2 * g]), 3 * g)
    torch.testing.assert_close(conflict_free_direction([g]), g)


def test_a_zero_gradient_is_left_out() -> None:
    g = torch.tensor([1.0, 2.0, -1.0], dtype=F64)
    torch.testing.assert_close(conflict_free_direction([g, torch.zeros(3, dtype=F64)]), g)
    torch.testing.assert_close(
        conflict_free_direction([torch.zeros(3, dtype=F64)] * 2), torch.zeros(3, dtype=F64)
    )


def test_shape_mismatch_is_named() -> None:
    with pytest.raises(ValueError, match="gradient 1 has shape"):
        conflict_free_direction([torch.zeros(3), torch.zeros(4)])


class _TwoQuadratics(GenerativeModel):
    """Two losses ½‖w − a‖² and ½‖w − b‖² whose gradients conflict at w = 0 along x."""

    def __init__(self, gradient_combination: str = "sum") -> None:
        super().__init__(gradient_combination=gradient_combination)
        self.gradient_combination = gradient_combination
        self.w = nn.Parameter(torch.zeros(2))
        self.a, self.b = torch.tensor([1.0, 0.0]), torch.tensor([-4.0, 1.0])

    @classmethod
    def for_shape(cls, sample_shape, cond_shape=None, **overrides):
        return cls(**overrides)

    def loss_terms(self, x: Tensor, cond: Tensor | None = None) -> dict[str, Tensor]:
        one = x.new_ones(x.shape[0])
        return {
            "first": 0.5 * (self.w - self.a).pow(2).sum() * one,
            "second": 0.5 * (self.w - self.b).pow(2).sum() * one,
        }

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return sum(self.loss_terms(x, cond).values())

    def sample(self, n: int, cond: Tensor | None = None, **options: object) -> Tensor:
        return self.w.expand(n, 2)


@pytest.mark.parametrize("combination", ["config", "sum"])
def test_fit_step_decreases_every_term_only_with_config(combination: str) -> None:
    model = _TwoQuadratics(combination)
    before = {k: float(v[0].detach()) for k, v in model.loss_terms(torch.zeros(1, 1)).items()}
    fit(model, torch.zeros(4, 1), steps=1, batch_size=4, optimizer="sgd", lr=0.01,
        betas=(0.0, 0.0), progress=False)  # fmt: skip
    after = {k: float(v[0].detach()) for k, v in model.loss_terms(torch.zeros(1, 1)).items()}
    decreased = [after[k] < before[k] for k in before]
    # ConFIG lowers both losses; the summed gradient (negative control) raises the first.
    assert all(decreased) == (combination == "config")


def test_unknown_combination_is_refused() -> None:
    with pytest.raises(ValueError, match="gradient_combination must be 'sum' or 'config'"):
        fit(_TwoQuadratics("mean"), torch.zeros(4, 1), steps=1, batch_size=4, progress=False)
