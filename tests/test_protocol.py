"""The model protocol's own rules: JSON-able configs and a registry that refuses clashes."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from physgen.models import GenerativeModel, base, get_model_class, register_model
from physgen.utils import append_dims


class _Gaussian(GenerativeModel):
    def __init__(self, dim: int = 2, scale: float = 1.0) -> None:
        super().__init__(dim=dim, scale=scale)
        self.mean = torch.nn.Parameter(torch.zeros(dim))

    @classmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: object,
    ) -> _Gaussian:
        return cls(dim=sample_shape[0], **overrides)

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return 0.5 * ((x - self.mean) ** 2).sum(-1)

    def sample(self, n: int, cond: Tensor | None = None, **options: object) -> Tensor:
        return self.mean + torch.randn(n, self.mean.numel())


def test_config_round_trip_rebuilds_same_architecture() -> None:
    model = _Gaussian(dim=3, scale=2.0)
    clone = type(model).from_config(model.config)
    assert clone.config == {"dim": 3, "scale": 2.0}
    assert clone.mean.shape == (3,)


def test_non_json_config_is_refused() -> None:
    class Bad(_Gaussian):
        def __init__(self) -> None:
            GenerativeModel.__init__(self, fn=print)

    with pytest.raises(TypeError, match="JSON-able"):
        Bad()


def test_registry_refuses_a_second_class_under_one_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # A copy of the full registry: swapping in an empty one before every family module is
    # imported would let those modules register into the throwaway dict, and the families
    # would be missing for every later test once the original is restored.
    monkeypatch.setattr(base, "_REGISTRY", dict(base.available_models()))
    register_model("_test-gaussian")(_Gaussian)
    assert get_model_class("_test-gaussian") is _Gaussian
    with pytest.raises(ValueError, match="already registered"):
        register_model("_test-gaussian")(type("Other", (_Gaussian,), {}))
    with pytest.raises(KeyError, match="unknown model"):
        get_model_class("no-such-model")


def test_test_models_load_by_name_but_are_not_families() -> None:
    """The suite's reference models resolve by name (checkpoints reload) and stay out of
    the families the package lists; a family is never shadowed by another registry."""
    from model_registry import TEST_MODELS, register_test_model

    register_test_model("_protocol-gaussian")(_Gaussian)
    assert TEST_MODELS["_protocol-gaussian"] is _Gaussian
    assert get_model_class("_protocol-gaussian") is _Gaussian
    families = base.available_models()
    assert not any(name.startswith("_") for name in families), sorted(families)
    assert get_model_class("vae") is families["vae"]


@pytest.mark.parametrize("ndim", [2, 3, 4, 5])
def test_append_dims_broadcasts_per_sample_scalars(ndim: int) -> None:
    t = torch.arange(3.0)
    x = torch.ones(3, *([2] * (ndim - 1)))
    y = append_dims(t, ndim) * x
    assert y.shape == x.shape
    assert torch.equal(y[2], 2 * x[2])
