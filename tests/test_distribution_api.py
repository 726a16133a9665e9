"""Discrete flows, continuous flows and diffusion share one sampling and distribution API."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from physgen.models.base import GenerativeModel
from physgen.models.cnf import CNF, FlowMatching
from physgen.models.diffusion import Diffusion
from physgen.models.flows import MAF, RealNVP

SHAPE, COND = (3,), (2,)
ODE = {"method": "rk4", "steps": 8}  # fixed grid: per-sample results independent of the batch

MODELS: dict[str, Callable[[], GenerativeModel]] = {
    "realnvp": lambda: RealNVP(features=3, cond_shape=COND, transforms=2, hidden=[8]),
    "maf": lambda: MAF(features=3, cond_shape=COND, transforms=2, hidden=[8]),
    "cnf": lambda: CNF(SHAPE, COND, hidden=(8,), **ODE),
    "flow-matching": lambda: FlowMatching(SHAPE, COND, hidden=(8,), **ODE),
    "diffusion": lambda: Diffusion(SHAPE, COND, hidden=(8,)),
}
DISTRIBUTIONS = ["realnvp", "maf", "cnf", "flow-matching"]


def _build(name: str) -> GenerativeModel:
    torch.manual_seed(0)
    model = MODELS[name]()
    with torch.no_grad():  # off the zero initialisations, so contexts and noise matter
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("name", list(MODELS))
def test_sample_takes_a_generator_and_one_or_n_contexts(name: str) -> None:
    model = _build(name)
    c = torch.randn(1, *COND, generator=torch.Generator().manual_seed(1))
    draw = [model.sample(4, c, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert draw[0].shape == (4, *SHAPE)
    torch.testing.assert_close(draw[0], draw[1])  # the generator alone fixes the draw
    other = model.sample(4, c, generator=torch.Generator().manual_seed(8))
    assert not torch.allclose(draw[0], other)
    per_sample = model.sample(4, c.expand(4, *COND), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(per_sample, draw[0])  # one context for all = n equal ones
    with pytest.raises(ValueError, match="cond: batch must be 1 or n=4"):
        model.sample(4, torch.zeros(3, *COND))


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_model_of_a_context_batch_is_a_batched_distribution(name: str) -> None:
    model = _build(name)
    c = torch.randn(5, *COND, generator=torch.Generator().manual_seed(2))
    dist = model(c)
    assert isinstance(dist, torch.distributions.Distribution)
    assert dist.batch_shape == (5,) and dist.event_shape == SHAPE
    with torch.no_grad():
        xs = dist.sample((2,))
        assert xs.shape == (2, 5, *SHAPE)
        lp = dist.log_prob(xs)
        assert lp.shape == (2, 5)
        # Row b of the batched distribution is model(c[b]).
        torch.testing.assert_close(
            lp[:, 1], model(c[1:2]).log_prob(xs[:, 1:2]).squeeze(1), rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(lp[0], model.log_prob(xs[0], c), rtol=1e-5, atol=1e-5)
