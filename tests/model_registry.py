"""The test suite's own reference models: registered here, never among the package's families."""

from __future__ import annotations

from collections.abc import Callable

from physgen.models import GenerativeModel, register_model
from physgen.models.base import ModelT, lookup_also

__all__ = ["TEST_MODELS", "register_test_model"]

TEST_MODELS: dict[str, type[GenerativeModel]] = {}
lookup_also(TEST_MODELS)  # their checkpoints reload by name, as a family's do


def register_test_model(name: str) -> Callable[[ModelT], ModelT]:
    """``register_model`` into the test registry."""
    return register_model(name, registry=TEST_MODELS)
