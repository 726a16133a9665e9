"""The one protocol every generative family implements, and the registry of families."""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from physgen.sde import SDE

__all__ = [
    "DensityModel",
    "GenerativeModel",
    "ScoreBasedModel",
    "TwoPlayerModel",
    "available_models",
    "get_model_class",
    "lookup_also",
    "register_model",
    "registered_name",
]

ModelT = TypeVar("ModelT", bound=type["GenerativeModel"])

_REGISTRY: dict[str, type[GenerativeModel]] = {}
_LOOKUPS: list[dict[str, type[GenerativeModel]]] = []  # other registries (lookup_also)


class GenerativeModel(nn.Module, ABC):
    """A generative model of fields ``(B, C, *grid)`` or vectors ``(B, D)``.

    The training loop knows only this interface:

    * ``loss(x, cond)`` returns the **per-sample** training loss, shape ``(B,)``
      (negative ELBO, negative log-likelihood, denoising loss, ...);
    * ``sample(n, cond, **options)`` returns ``n`` samples on the model's device;
    * ``config`` is a JSON-able dict of constructor keyword arguments, and
      ``type(model).from_config(model.config)`` rebuilds an identical architecture, so a
      checkpoint holds config + state dicts and never pickled code.

    ``config`` is captured once, by one mechanism: the arguments the outermost constructor
    was called with, defaults filled in and ``**options`` merged (like diffusers'
    ``register_to_config``). A family calls ``super().__init__()`` and never repeats its
    keyword list; names in ``config_exclude`` (objects such as a physics penalty) are left
    out and passed again after loading. The base checks that the rest is JSON-able.

    ``example_shape`` (and ``example_cond_shape`` for conditional families) name a small
    sample shape the family supports; the contract test and ``physgen train`` use
    ``for_shape`` to build a default-sized model for given data.
    """

    example_shape: ClassVar[tuple[int, ...]] = (2,)
    example_cond_shape: ClassVar[tuple[int, ...] | None] = None
    #: Constructor arguments that are not configuration (callables, tensors): not captured.
    config_exclude: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _capturing_config(cls.__dict__["__init__"])  # type: ignore[method-assign]

    def __init__(self, **config: Any) -> None:
        super().__init__()
        captured = self.__dict__.pop("_captured_config", None)
        if not config and captured is not None:
            config = {k: v for k, v in captured.items() if k not in type(self).config_exclude}
        try:
            # Round-trip through JSON so tuples become lists exactly as they will on reload.
            self._config = json.loads(json.dumps(config, default=_plain_array))
        except TypeError as err:
            raise TypeError(
                f"{type(self).__name__}: constructor arguments must be JSON-able "
                f"(numbers, strings, lists, dicts); got {config!r}"
            ) from err

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments; ``from_config(config)`` rebuilds the model."""
        return json.loads(json.dumps(self._config))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GenerativeModel:
        """Build a model of this class from ``config`` (as returned by ``.config``)."""
        return cls(**config)

    @classmethod
    @abstractmethod
    def for_shape(
        cls,
        sample_shape: tuple[int, ...],
        cond_shape: tuple[int, ...] | None = None,
        **overrides: Any,
    ) -> GenerativeModel:
        """A model with sensible default sizes for samples of ``sample_shape`` (no batch dim)."""

    @classmethod
    def example_batch(
        cls, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``n`` samples of ``example_shape`` (and conditions) that this family accepts.

        Standard normal draws by default; families whose data are constrained (binary,
        bounded, quantized) override this, so the contract test feeds them valid inputs.
        """
        x = torch.randn(n, *cls.example_shape, generator=generator)
        if cls.example_cond_shape is None:
            return x, None
        return x, torch.randn(n, *cls.example_cond_shape, generator=generator)

    @abstractmethod
    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-sample training loss of shape ``(B,)``.

        It must also run under ``torch.no_grad()`` (validation does): a loss that needs
        autograd internally (derivatives of outputs) wraps that part in
        ``torch.enable_grad()``.
        """

    @abstractmethod
    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:
        """Draw ``n`` samples, shape ``(n, *sample_shape)``.

        Every random draw comes from ``generator`` when one is given (keyword-only in every
        family), so a seeded generator reproduces a sample set exactly.
        """

    def initialize(self, x: Tensor, cond: Tensor | None = None) -> None:
        """Data-dependent initialisation from the first global training batch (default: none).

        ``fit`` calls it once before the first step of a fresh run, on every process with the
        same whole batch, so layers that set themselves from data (ActNorm) start identical
        on every rank of a data-parallel run and identical to a single-process run.
        """

    @property
    def device(self) -> torch.device:
        """The device of the model's first parameter or buffer (CPU when it has none)."""
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")


def _plain_array(value: Any) -> Any:
    """Arrays and tensors (sensor positions, say) as lists; anything else is refused."""
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _capturing_config(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a family's ``__init__`` so that its outermost call records the call's arguments.

    The record (``self._captured_config``: bound arguments with defaults, ``**options``
    merged) is what :class:`GenerativeModel` keeps as ``config``; constructors further down
    a subclass chain leave it alone, and one taking ``*args`` leaves it to the constructor
    it forwards to.
    """
    signature = inspect.signature(init)
    # A constructor taking *args forwards its call (a thin subclass): the one it calls records.
    forwards = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())

    @functools.wraps(init)
    def capturing_init(self: GenerativeModel, *args: Any, **kwargs: Any) -> None:
        if not forwards and "_captured_config" not in self.__dict__:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            config: dict[str, Any] = {}
            for name, value in list(bound.arguments.items())[1:]:  # without self
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    config.update(value)
                else:
                    config[name] = value
            object.__setattr__(self, "_captured_config", config)  # before nn.Module.__init__
        init(self, *args, **kwargs)

    return capturing_init


class DensityModel(GenerativeModel):
    """A generative model with a tractable (or ODE-computable) log-density.

    The default training loss is the per-sample negative log-likelihood ``-log p(x | cond)``.
    """

    @abstractmethod
    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Log-density in nats, shape ``(B,)``."""

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return -self.log_prob(x, cond)


class ScoreBasedModel(DensityModel):
    r"""A density model defined by a forward SDE and a learned score: a prior for guidance.

    The contract guided inverse solvers (:func:`physgen.inverse.solve`) read: the forward
    SDE ``sde`` (:math:`dx = f(x, t)\,dt + g(t)\,dW`), the score
    :math:`s_\theta(x, t) \approx \nabla_x \log p_t(x)` and ``eps``, the smallest time the
    reverse-time integration reaches (the score is not trained below it).
    """

    sde: SDE
    eps: float

    @abstractmethod
    def score(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """The score of the time-``t`` marginal at ``x``, shape of ``x``; ``t`` is ``(B,)``."""


class TwoPlayerModel(GenerativeModel):
    """A generator and a critic trained by alternating steps (GANs).

    ``fit`` gives each player its own optimizer over ``generator_parameters()`` and
    ``discriminator_parameters()``, takes ``n_critic`` discriminator steps per generator
    step, and calls the two losses explicitly. ``loss`` is the generator loss, so the
    contract test and validation logs see the same per-sample shape as other families.
    """

    n_critic: int = 1

    @abstractmethod
    def generator_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters updated by the generator step."""

    @abstractmethod
    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters updated by the discriminator (critic) step."""

    @abstractmethod
    def discriminator_loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-sample critic loss on a real batch ``x`` and as many generated samples."""

    @abstractmethod
    def generator_loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-sample generator loss; ``x`` is a real batch (sets batch size and device)."""

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.generator_loss(x, cond)


def register_model(
    name: str, registry: dict[str, type[GenerativeModel]] | None = None
) -> Callable[[ModelT], ModelT]:
    """Class decorator: make a family available as ``name`` to the CLI and contract test.

    ``registry`` is another mapping to register in (a test suite's own models, say), which
    :func:`available_models` never lists; :func:`lookup_also` makes checkpoints of its
    models loadable by name.
    """
    target = _REGISTRY if registry is None else registry

    def decorate(cls: ModelT) -> ModelT:
        if name in target and target[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {target[name]}")
        target[name] = cls
        return cls

    return decorate


def lookup_also(registry: dict[str, type[GenerativeModel]]) -> None:
    """Let :func:`get_model_class` find the models of ``registry`` too (after the families).

    For models that are not families of the package, such as a test suite's reference
    models: their checkpoints reload by name, while the package's list of families
    (:func:`available_models`, the CLI's help) stays free of them.
    """
    if all(registry is not other for other in _LOOKUPS):
        _LOOKUPS.append(registry)


def _import_families() -> None:
    """Import every module of ``physgen.models`` so their ``register_model`` calls run."""
    package = importlib.import_module("physgen.models")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"physgen.models.{info.name}")


def available_models() -> dict[str, type[GenerativeModel]]:
    """Registered families by name (imports the family modules on first call)."""
    _import_families()
    return dict(sorted(_REGISTRY.items()))


def registered_name(cls: type[GenerativeModel]) -> str | None:
    """The name ``cls`` is registered under (families first, then :func:`lookup_also`)."""
    for registry in (available_models(), *_LOOKUPS):
        for name, registered in registry.items():
            if registered is cls:
                return name
    return None


def get_model_class(name: str) -> type[GenerativeModel]:
    """The registered class called ``name``; a clear error lists the known names."""
    models = available_models()
    if name in models:
        return models[name]
    for registry in _LOOKUPS:
        if name in registry:
            return registry[name]
    raise KeyError(f"unknown model {name!r}; registered models: {', '.join(models) or 'none'}")
