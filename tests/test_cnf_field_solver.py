"""A field CNF's default solve: smooth in time, so dopri5 at its default tolerance is cheap and
within a stated error of a tight-tolerance reference."""

from __future__ import annotations

import pytest
import torch

from physgen.likelihood import ode_log_prob, trace_probes
from physgen.models.cnf import CNF, FIELD_TIME_SCALE, FlowMatching
from physgen.nn.embeddings import SinusoidalEmbedding

#: The stated accuracy of the default solve (dopri5, rtol = atol = 1e-5) on a 16-point field,
#: in nats per sample; measured at most 6.7e-4 (4 samples) on this test's network.
STATED_NATS = 1e-3


def _field_cnf(**overrides: object) -> CNF:
    """The default 16-point field CNF in float64, its last layer drawn at random (it starts at
    zero, a constant flow) so the velocity is O(1), like a trained one's."""
    torch.manual_seed(0)
    model = CNF.for_shape((1, 16), **overrides).double()
    torch.nn.init.normal_(model.net.conv_out.weight, std=0.1)
    return model


def _log_prob(model: CNF, x: torch.Tensor, **ode: object) -> tuple[torch.Tensor, int]:
    """``log p(x)`` and the number of velocity evaluations, one fixed Hutchinson probe."""
    probes = trace_probes(x, "hutchinson", "rademacher", torch.Generator().manual_seed(1))
    with torch.no_grad():
        res = ode_log_prob(
            lambda y, t: model.net(y, t, None), x, model._base_log_prob, probes=probes,
            **{**model.ode, **ode},
        )  # fmt: skip
    return res.log_prob, res.nfe


def test_field_cnf_embeds_time_smoothly_and_overrides_win() -> None:
    scales = lambda m: {e.scale for e in m.modules() if isinstance(e, SinusoidalEmbedding)}  # noqa: E731
    assert scales(CNF.for_shape((1, 16))) == {FIELD_TIME_SCALE}
    assert CNF.for_shape((1, 16)).config["time_scale"] == FIELD_TIME_SCALE  # kept in checkpoints
    assert scales(CNF.for_shape((1, 16), time_scale=1000.0)) == {1000.0}
    assert scales(CNF((1, 16))) == {1000.0}  # the constructor's default is unchanged
    assert scales(CNF.for_shape((2,))) == set()  # vectors keep their Fourier time features
    assert scales(FlowMatching.for_shape((1, 16))) == {1000.0}  # trained without the ODE


def test_field_cnf_default_solve_is_within_the_stated_accuracy() -> None:
    model = _field_cnf()
    assert model.ode["method"] == "dopri5" and model.ode["rtol"] == model.ode["atol"] == 1e-5
    x = torch.randn(2, 1, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref, _ = _log_prob(model, x, rtol=1e-8, atol=1e-8)
    # Two references by different methods agree far below the bound, so their own error is
    # negligible (measured 8e-7 nats apart).
    ref_rk4, _ = _log_prob(model, x, method="rk4", steps=32)
    assert (ref - ref_rk4).abs().max() < STATED_NATS / 100
    default, nfe = _log_prob(model, x)
    assert (default - ref).abs().max() <= STATED_NATS
    assert nfe <= 100  # measured 50; the U-Net's scale of 1000 needed ~600 on this field
    # Negative control: a coarse solve (rk4, 4 steps; measured 9e-3 nats off) fails the bound.
    coarse, _ = _log_prob(model, x, method="rk4", steps=4)
    assert (coarse - ref).abs().max() > STATED_NATS


@pytest.mark.slow
def test_the_unet_default_time_scale_is_costlier_and_less_accurate() -> None:
    """Negative control of the default: the same network with the time embedded at 1000
    (DDPM's scale) needs many more evaluations at the same tolerance and errs beyond the bound."""
    model = _field_cnf(time_scale=1000.0)
    x = torch.randn(2, 1, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref, _ = _log_prob(model, x, rtol=1e-8, atol=1e-8)
    default, nfe = _log_prob(model, x)
    assert nfe > 300
    assert (default - ref).abs().max() > STATED_NATS
