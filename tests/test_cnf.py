"""CNF and flow matching: change of variables, Hutchinson, adjoint, training, conditioning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from physgen.likelihood import solve_ode
from physgen.models.cnf import CNF, FlowMatching


def _random_cnf(tol: float = 1e-9, **kwargs: object) -> CNF:
    torch.manual_seed(0)
    model = CNF((2,), hidden=(16, 16), rtol=tol, atol=tol, **kwargs).double()
    for p in model.parameters():
        nn.init.normal_(p, std=0.55)  # a clearly non-trivial flow
    return model


def test_log_prob_is_the_change_of_variables_of_the_flow_map(generator: torch.Generator) -> None:
    model = _random_cnf(tol=1e-8)
    x = torch.randn(2, 2, generator=generator, dtype=torch.float64)

    def flow_map(y: torch.Tensor) -> torch.Tensor:
        return solve_ode(lambda v, t: model.velocity(v, t), y[None], 0.0, 1.0,
                         rtol=1e-9, atol=1e-9)[0][0]  # fmt: skip

    with torch.no_grad():
        lp = model.log_prob(x)
    normal = torch.distributions.Normal(0.0, 1.0)
    for b in range(2):
        z = flow_map(x[b])
        jac = torch.autograd.functional.jacobian(flow_map, x[b])  # (2, 2)
        ref = normal.log_prob(z).sum() + torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(lp[b], ref, rtol=0, atol=1e-5)
        # The volume change is 500x the tolerance: dropping the trace would fail.
        assert abs(float(torch.linalg.slogdet(jac)[1])) > 5e-3


def test_hutchinson_log_prob_is_unbiased(generator: torch.Generator) -> None:
    model = _random_cnf()
    model.ode.update(rtol=1e-5, atol=1e-5)
    x = torch.randn(1, 2, generator=generator, dtype=torch.float64).expand(500, 2)
    with torch.no_grad():
        exact = model.log_prob(x[:1])
        est = model.log_prob(x, trace="hutchinson", generator=generator)
    assert est.std() > 1e-3
    assert abs(est.mean() - exact[0]) < 4 * est.std() / math.sqrt(500)


def test_sampling_inverts_the_density_map(generator: torch.Generator) -> None:
    model = _random_cnf(tol=1e-6)
    z = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    x, _ = solve_ode(model.velocity, z, 1.0, 0.0, rtol=1e-9, atol=1e-9)
    back, _ = solve_ode(model.velocity, x, 0.0, 1.0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(back, z, rtol=0, atol=1e-6)
    s = model.sample(7, generator=torch.Generator().manual_seed(3))
    assert s.shape == (7, 2) and s.dtype == torch.float64


def test_adjoint_and_backprop_training_gradients_agree(generator: torch.Generator) -> None:
    x = torch.randn(4, 2, generator=generator, dtype=torch.float64)
    grads = []
    for adjoint in (False, True, "backsolve"):
        model = _random_cnf(tol=1e-7, adjoint=adjoint)
        model.loss(x).mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g_direct, *g_adjoints in zip(*grads, strict=True):
        for g_adjoint in g_adjoints:
            torch.testing.assert_close(g_direct, g_adjoint, rtol=1e-3, atol=1e-5)


def _train(model: nn.Module, data: torch.Tensor, steps: int, lr: float) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        batch = data[torch.randint(0, data.shape[0], (256,), generator=g)]
        opt.zero_grad()
        model.loss(batch).mean().backward()
        opt.step()


def _gaussian_data(n: int) -> tuple[torch.Tensor, torch.distributions.Distribution]:
    dist = torch.distributions.MultivariateNormal(
        torch.tensor([1.0, -0.5]), torch.tensor([[0.6, 0.3], [0.3, 0.4]])
    )
    torch.manual_seed(0)
    return dist.sample((n,)), dist


@pytest.mark.parametrize("model_cls", [pytest.param(CNF, marks=pytest.mark.slow), FlowMatching])
def test_training_approaches_the_true_likelihood(model_cls: type) -> None:
    """Both objectives bring the NLL of held-out Gaussian data toward the entropy floor."""
    data, dist = _gaussian_data(4096)
    torch.manual_seed(0)
    kwargs = {"rtol": 1e-4, "atol": 1e-4, "hidden": (32, 32)}
    model = model_cls((2,), **kwargs)
    test = data[:512]
    floor = float(-dist.log_prob(test).mean())
    with torch.no_grad():
        before = float(-model.log_prob(test).mean())
    _train(model, data, 150 if model_cls is CNF else 600, 1e-2 if model_cls is CNF else 3e-3)
    with torch.no_grad():
        after = float(-model.log_prob(test).mean())
    assert before - floor > 1.0
    assert after - floor < 0.15, f"NLL {after:.3f} vs floor {floor:.3f} (start {before:.3f})"


def test_conditional_flow_uses_its_context(generator: torch.Generator) -> None:
    torch.manual_seed(0)
    model = FlowMatching((2,), cond_shape=(3,), hidden=(16,))
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    x = torch.randn(4, 2, generator=generator)
    c1, c2 = torch.randn(4, 3, generator=generator), torch.randn(4, 3, generator=generator)
    with torch.no_grad():
        assert not torch.allclose(model.log_prob(x, c1), model.log_prob(x, c2))
    assert model.sample(4, c1).shape == (4, 2)
    with pytest.raises(ValueError, match="expected cond"):
        model.log_prob(x)
    with pytest.raises(ValueError, match=r"expected cond of shape \(B, \*\(3,\)\), got shape"):
        model.log_prob(x, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="expected cond"):
        model(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="expected cond"):
        model.sample(4, torch.zeros(4, 3, 1))
    with pytest.raises(ValueError, match="trace"):
        CNF((2,), trace="approx")
    with pytest.raises(ValueError, match="probe must be"):
        CNF((2,), probe="normal")
    with pytest.raises(ValueError, match="sigma_min applies to the 'linear' path"):
        FlowMatching((2,), path="vp", sigma_min=0.1)
    with pytest.raises(ValueError, match="trace must be"):
        model.log_prob(x, c1, trace="approx")


def test_config_round_trip_and_paths() -> None:
    model = FlowMatching((1, 8), path="vp", channels=(8, 16))
    clone = FlowMatching.from_config(model.config)
    clone.load_state_dict(model.state_dict())
    x = torch.randn(3, 1, 8)
    torch.manual_seed(0)
    a = model.loss(x)
    torch.manual_seed(0)
    torch.testing.assert_close(clone.loss(x), a)
    assert type(clone.path).__name__ == "VPInterpolant"


def test_model_of_cond_is_a_torch_distribution(generator: torch.Generator) -> None:
    torch.manual_seed(0)
    model = FlowMatching((2,), cond_shape=(3,), hidden=(16,), rtol=1e-7, atol=1e-7).double()
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    c = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    x = torch.randn(4, 2, generator=generator, dtype=torch.float64)
    dist = model(c)
    assert isinstance(dist, torch.distributions.Distribution) and dist.batch_shape == (4,)
    with torch.no_grad():
        torch.testing.assert_close(dist.log_prob(x), model.log_prob(x, c))
        xs, lp = dist.rsample_and_log_prob((3,))  # (3, 4, 2): contexts broadcast
        assert xs.shape == (3, 4, 2)
        torch.testing.assert_close(lp, dist.log_prob(xs), rtol=0, atol=1e-5)


def test_ot_pairing_is_the_optimal_assignment(generator: torch.Generator) -> None:
    from itertools import permutations

    from physgen.models.cnf import ot_pairing

    x = torch.randn(6, 2, 2, generator=generator, dtype=torch.float64)
    y = torch.randn(6, 2, 2, generator=generator, dtype=torch.float64)

    def cost(p: list[int]) -> float:
        return float((x - y[list(p)]).pow(2).sum())

    best = min(cost(list(p)) for p in permutations(range(6)))
    assert cost(ot_pairing(x, y).tolist()) == pytest.approx(best)
    assert sorted(ot_pairing(x, y).tolist()) == list(range(6))
    model = FlowMatching((2, 2), coupling="ot", hidden=(8,))
    assert model.loss(x.float()).shape == (6,)
    with pytest.raises(ValueError, match="coupling"):
        FlowMatching((2,), coupling="sinkhorn")


def test_ot_coupling_trains_on_optimally_paired_data_and_noise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``coupling="ot"`` the loss interpolates each data point with its noise draw under
    the optimal assignment: the same draws as the independent coupling's, rearranged to the
    least total squared distance (scipy's exact assignment; float64 sums: 1e-12)."""
    from scipy.optimize import linear_sum_assignment

    seen: dict[str, list[torch.Tensor]] = {}
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x[::2] += 3.0  # two clusters: the optimal pairing is far from the identity
    for coupling in ("independent", "ot"):
        model = FlowMatching((2,), coupling=coupling, hidden=(8,)).double()
        sample = model.path.sample

        def record(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, c=coupling, s=sample):
            seen[c] = [x0, noise]
            return s(x0, noise, t)

        monkeypatch.setattr(model.path, "sample", record)
        torch.manual_seed(0)
        model.loss(x)
    (x_ind, noise_ind), (x_ot, noise_ot) = seen["independent"], seen["ot"]
    assert torch.equal(x_ind, x) and torch.equal(x_ot, x)
    match = (noise_ot[:, None] == noise_ind[None]).all(2)  # (16, 16): row i is draw j
    assert (match.sum(0) == 1).all() and (match.sum(1) == 1).all()  # the same draws
    cost = (x[:, None] - noise_ind[None]).pow(2).sum(2).numpy()
    rows, cols = linear_sum_assignment(cost)
    best = float(cost[rows, cols].sum())
    assert float((x - noise_ot).pow(2).sum()) == pytest.approx(best, rel=1e-12)
    # Negative controls: the independent pairing, and the inverse of the optimal permutation
    # (what swapping the arguments of the assignment gives; not an involution here), are
    # measurably worse.
    assert float(cost.trace()) > best * (1 + 1e-3)
    inverse = np.argsort(cols)
    assert float(cost[rows, inverse].sum()) > best * (1 + 1e-3)
