"""Minibatch OT pairing: every back end returns an optimal permutation."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from physgen import pairing
from physgen.pairing import ot_pairing, pot_available

needs_pot = pytest.mark.skipif(not pot_available(), reason="POT (the 'ot' extra) not installed")


def _costs(x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor) -> tuple[float, float]:
    """(cost of ``perm``, scipy's optimal cost), both from the float64 squared distances."""
    xs, ys = x.flatten(1).numpy(), y.flatten(1).numpy()
    cost = ((xs[:, None] - ys[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    assert sorted(perm.tolist()) == list(range(x.shape[0]))  # a permutation
    return float(cost[np.arange(len(perm)), perm.numpy()].sum()), float(cost[rows, cols].sum())


def _problem(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    # Clustered targets (two blobs) make the assignment far from the identity.
    y = torch.randn(n, d, generator=g, dtype=torch.float64) + 2.0 * (torch.arange(n) % 2)[:, None]
    return x, y


BACKENDS = ["auto", "scipy", pytest.param("pot", marks=needs_pot)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("n", "d"), [(7, 2), (64, 3), (300, 2), (120, 16), (50, 1)])
def test_pairing_cost_is_the_optimum(backend: str, n: int, d: int) -> None:
    """Equal optimal costs (float64 sums of n·d terms of size ~10: 1e-12 relative is
    rounding), and the identity pairing (negative control) is measurably worse."""
    for seed in range(3):
        x, y = _problem(n, d, seed)
        got, best = _costs(x, y, ot_pairing(x, y, backend))
        assert got == pytest.approx(best, rel=1e-12)
        identity, _ = _costs(x, y, torch.arange(n))
        assert identity > best * (1 + 1e-3)


@pytest.mark.parametrize("n", [1, 9, 200])
def test_sort_backend_is_optimal_in_1d(n: int) -> None:
    x, y = _problem(n, 1, 5)
    got, best = _costs(x, y, ot_pairing(x, y, "sort"))
    assert got == pytest.approx(best, rel=1e-12)
    with pytest.raises(ValueError, match="1-D"):
        ot_pairing(*_problem(4, 2, 0), "sort")


def test_auto_choice_and_fallback_without_pot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pairing, "pot_available", lambda: True)
    assert pairing._pick(2, 512) == "pot" and pairing._pick(2, 128) == "scipy"
    assert pairing._pick(3, 512) == "scipy" and pairing._pick(1, 512) == "sort"
    monkeypatch.setattr(pairing, "pot_available", lambda: False)
    assert pairing._pick(2, 512) == "scipy"
    x, y = _problem(300, 2, 1)
    got, best = _costs(x, y, ot_pairing(x, y))
    assert got == pytest.approx(best, rel=1e-12)
    with pytest.raises(ValueError, match="needs POT"):
        ot_pairing(x, y, "pot")


def test_unproven_network_simplex_falls_back_to_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A network simplex stopped by its iteration cap (result code 2) returns a feasible but
    non-optimal plan; here a fake one returns the identity, which must not be used."""

    def emd(a: np.ndarray, b: np.ndarray, cost: np.ndarray, **kwargs: object) -> tuple:
        return np.eye(len(a)), {"result_code": 2}

    monkeypatch.setitem(sys.modules, "ot", types.SimpleNamespace(emd=emd))
    x, y = _problem(300, 2, 2)
    got, best = _costs(x, y, ot_pairing(x, y, "pot"))
    assert got == pytest.approx(best, rel=1e-12)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        ot_pairing(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="backend must be"):
        ot_pairing(torch.zeros(3, 2), torch.zeros(3, 2), "lapjv")
