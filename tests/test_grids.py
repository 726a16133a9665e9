"""Grid geometry: spacing and coordinates per centring and boundary condition, validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from physgen.grids import Grid


def test_cell_grid_coordinates() -> None:
    g = Grid((4,), domain=((0.0, 2.0),), bc="dirichlet", centering="cell")
    assert g.spacing == (0.5,)
    np.testing.assert_allclose(g.coords(0), [0.25, 0.75, 1.25, 1.75])


def test_node_grid_stores_both_ends_unless_periodic() -> None:
    walls = Grid((401,), domain=((-1.0, 1.0),), bc="dirichlet", centering="node")
    assert walls.spacing == pytest.approx((2 / 400,))
    assert walls.coords(0)[0] == -1.0 and walls.coords(0)[-1] == pytest.approx(1.0)
    torus = Grid((8,), bc="periodic", centering="node")
    np.testing.assert_allclose(torus.coords(0), np.arange(8) / 8)


def test_per_axis_boundary_conditions_and_attrs() -> None:
    g = Grid((8, 6), domain=((0, 1), (0, 3)), bc=("periodic", "neumann"))
    assert g.bc == ("periodic", "neumann") and not g.periodic
    assert g.spacing == (0.125, 0.5)
    x, y = g.mesh()
    assert x.shape == (8, 6) and np.all(x[:, 0] == g.coords(0)) and np.all(y[0] == g.coords(1))
    attrs = g.attrs()
    assert attrs["bc_x"] == "periodic" and attrs["bc_y"] == "neumann"
    assert attrs["domain"] == [0, 1, 0, 3] and attrs["grid"] == "cell_centered"
    assert g.cell_volume() == pytest.approx(0.0625)


def test_grid_is_frozen_and_hashable() -> None:
    g = Grid((8, 8))
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.shape = (4, 4)  # type: ignore[misc]
    assert hash(g) == hash(Grid([8, 8], domain=((0, 1), (0, 1)), bc=("periodic", "periodic")))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (8, 8, 8, 8)}, "1 to 3 axes"),
        ({"shape": (8,), "domain": ((1.0, 0.0),)}, "hi > lo"),
        ({"shape": (8,), "bc": "robin"}, "bc must be"),
        ({"shape": (8, 8), "bc": ("periodic",)}, "bc must be"),
        ({"shape": (8,), "centering": "edge"}, "centering"),
        ({"shape": (1,)}, "at least"),
    ],
)
def test_bad_grids_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Grid(**kwargs)
