"""The contract every registered family honours, checked over the whole registry.

The contract is the interface of ``physgen.models.GenerativeModel`` (per-sample ``loss``,
``sample``, a JSON-able ``config`` that rebuilds the model, ``for_shape``), plus ``log_prob``
for density models and ``discriminator_loss``/``generator_loss`` for two-player models.

Each family is built with ``cls.for_shape(cls.example_shape, cls.example_cond_shape)`` and fed
``cls.example_batch``. Two tiny reference models defined here (a conditional Gaussian density
and a two-player model) keep the test meaningful before, and alongside, the real families.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from model_registry import register_test_model
from torch import Tensor, nn

from physgen.models import (
    DensityModel,
    GenerativeModel,
    TwoPlayerModel,
    available_models,
)
from physgen.training import fit, load_checkpoint, save_checkpoint
from physgen.training.checkpoint import model_entries

BATCH = 4


@register_test_model("_contract-gaussian")
class _CondGaussian(DensityModel):
    """p(x | c) = N(x; W c + b, diag(exp(2 s)))."""

    example_shape = (3,)
    example_cond_shape = (2,)

    def __init__(self, dim: int = 3, cond_dim: int = 2) -> None:
        super().__init__(dim=dim, cond_dim=cond_dim)
        self.mean = nn.Linear(cond_dim, dim)
        self.log_scale = nn.Parameter(torch.zeros(dim))

    @classmethod
    def for_shape(
        cls, sample_shape: tuple[int, ...], cond_shape: tuple[int, ...] | None = None, **kw: int
    ) -> _CondGaussian:
        return cls(dim=sample_shape[0], cond_dim=cond_shape[0], **kw)

    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        z = (x - self.mean(cond)) * torch.exp(-self.log_scale)
        return (-0.5 * z**2 - self.log_scale - 0.5 * math.log(2 * math.pi)).sum(-1)

    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **options: object,
    ) -> Tensor:
        eps = torch.randn(n, self.log_scale.numel(), generator=generator, device=self.device)
        return self.mean(cond) + torch.exp(self.log_scale) * eps


@register_test_model("_contract-gan")
class _TinyGAN(TwoPlayerModel):
    """Non-saturating GAN with a linear generator and a logistic critic."""

    example_shape = (2,)

    def __init__(self, dim: int = 2, latent: int = 2) -> None:
        super().__init__(dim=dim, latent=latent)
        self.generator = nn.Linear(latent, dim)
        self.critic = nn.Sequential(nn.Linear(dim, 8), nn.Tanh(), nn.Linear(8, 1))

    @classmethod
    def for_shape(
        cls, sample_shape: tuple[int, ...], cond_shape: tuple[int, ...] | None = None, **kw: int
    ) -> _TinyGAN:
        return cls(dim=sample_shape[0], **kw)

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        return self.generator.parameters()

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        return self.critic.parameters()

    def sample(
        self,
        n: int,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **options: object,
    ) -> Tensor:
        z = torch.randn(n, self.generator.in_features, generator=generator, device=self.device)
        return self.generator(z)

    def discriminator_loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        fake = self.sample(len(x)).detach()
        real_logit, fake_logit = self.critic(x)[:, 0], self.critic(fake)[:, 0]
        return nn.functional.softplus(-real_logit) + nn.functional.softplus(fake_logit)

    def generator_loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return nn.functional.softplus(-self.critic(self.sample(len(x)))[:, 0])


def _cases() -> dict[str, type[GenerativeModel]]:
    """Every real family (names without a leading underscore) plus the reference models."""
    real = available_models()
    return {**real, "_contract-gaussian": _CondGaussian, "_contract-gan": _TinyGAN}


CASES = _cases()
# Families whose sample is a deterministic map of the condition (no noise to draw).
_DETERMINISTIC = {"cyclegan"}
names = pytest.mark.parametrize("name", sorted(CASES))


def _build(
    name: str, device: torch.device | str = "cpu"
) -> tuple[GenerativeModel, Tensor, Tensor | None]:
    cls = CASES[name]
    torch.manual_seed(0)
    model = cls.for_shape(cls.example_shape, cls.example_cond_shape).to(device)
    x, cond = cls.example_batch(BATCH, generator=torch.Generator().manual_seed(1))
    return model, x.to(device), None if cond is None else cond.to(device)


def _seeded(fn: Callable[[], Tensor], seed: int = 7) -> Tensor:
    torch.manual_seed(seed)
    return fn()


def _check_loss(model: GenerativeModel, x: Tensor, cond: Tensor | None) -> Tensor:
    loss = model.loss(x, cond)
    assert loss.shape == (len(x),), f"loss must be per-sample, got shape {tuple(loss.shape)}"
    assert loss.dtype.is_floating_point
    assert torch.isfinite(loss).all(), f"non-finite loss {loss}"
    assert loss.device == x.device
    return loss


def _unreached(loss: Tensor, params: list[nn.Parameter], model: nn.Module) -> list[str]:
    """Names of ``params`` that the gradient of ``loss`` does not reach."""
    grads = torch.autograd.grad(loss.sum(), params, allow_unused=True)
    by_id = {id(p): n for n, p in model.named_parameters()}
    for p, g in zip(params, grads, strict=True):
        if g is not None:
            assert torch.isfinite(g).all(), f"non-finite gradient for {by_id[id(p)]}"
    return [by_id[id(p)] for p, g in zip(params, grads, strict=True) if g is None]


@names
def test_loss_is_per_sample_and_finite(name: str) -> None:
    model, x, cond = _build(name)
    _check_loss(model, x, cond)


@names
def test_gradients_reach_every_parameter(name: str) -> None:
    model, x, cond = _build(name)
    params = [p for p in model.parameters() if p.requires_grad]
    assert params, "a trainable model needs parameters"
    if isinstance(model, TwoPlayerModel):
        g_params = list(model.generator_parameters())
        d_params = list(model.discriminator_parameters())
        ids_g, ids_d = {id(p) for p in g_params}, {id(p) for p in d_params}
        assert not ids_g & ids_d, "generator and discriminator parameters overlap"
        assert ids_g | ids_d == {id(p) for p in params}, "some parameters belong to no player"
        missing_d = _unreached(_seeded(lambda: model.discriminator_loss(x, cond)), d_params, model)
        missing_g = _unreached(_seeded(lambda: model.generator_loss(x, cond)), g_params, model)
        assert not missing_d, f"discriminator_loss does not reach {missing_d}"
        assert not missing_g, f"generator_loss does not reach {missing_g}"
    else:
        missing = _unreached(_seeded(lambda: model.loss(x, cond)), params, model)
        assert not missing, f"loss does not reach {missing}"


@names
def test_sample_shape_and_device(name: str, device: torch.device) -> None:
    model, _, _ = _build(name, device)
    cls = CASES[name]
    n = 3
    cond = cls.example_batch(n, generator=torch.Generator().manual_seed(2))[1]
    cond = None if cond is None else cond.to(device)
    with torch.no_grad():
        out = model.eval().sample(n, cond)
    assert out.shape == (n, *cls.example_shape)
    assert out.device.type == device.type
    assert torch.isfinite(out).all()


@names
def test_sample_draws_only_from_its_keyword_only_generator(name: str) -> None:
    """``sample(n, cond, *, generator=...)``: the same seeded generator gives the same samples
    whatever the global RNG state; another seed gives others (the negative control)."""
    parameter = inspect.signature(CASES[name].sample).parameters.get("generator")
    assert parameter is not None and parameter.kind is inspect.Parameter.KEYWORD_ONLY
    model, _, _ = _build(name)
    cond = CASES[name].example_batch(3, generator=torch.Generator().manual_seed(2))[1]
    weights = torch.Generator().manual_seed(3)
    with torch.no_grad():  # zero-initialised output layers would hide the noise
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=weights))

    def draw(seed: int, global_seed: int) -> Tensor:
        torch.manual_seed(global_seed)
        with torch.no_grad():
            return model.eval().sample(3, cond, generator=torch.Generator().manual_seed(seed))

    first = draw(seed=5, global_seed=0)
    torch.testing.assert_close(draw(seed=5, global_seed=123), first, rtol=0, atol=0)
    if name not in _DETERMINISTIC:
        assert not torch.equal(draw(seed=6, global_seed=0), first)


@names
def test_config_is_the_captured_constructor_call(name: str) -> None:
    """One mechanism records ``config``: every named constructor argument (defaults filled
    in) but the excluded objects, and nothing else unless the constructor takes ``**``."""
    model, _, _ = _build(name)
    parameters = inspect.signature(type(model).__init__).parameters
    named = {
        p for p, spec in parameters.items() if p != "self" and spec.kind is not spec.VAR_KEYWORD
    }
    takes_options = any(spec.kind is spec.VAR_KEYWORD for spec in parameters.values())
    expected = named - set(type(model).config_exclude)
    assert expected <= set(model.config), sorted(expected - set(model.config))
    assert takes_options or set(model.config) <= expected, sorted(set(model.config) - expected)
    assert not set(type(model).config_exclude) & set(model.config)


@names
def test_loss_under_no_grad_matches(name: str) -> None:
    """Validation computes losses under ``no_grad``; they must equal the training-time values."""
    model, x, cond = _build(name)
    model.eval()
    with_grad = _seeded(lambda: _check_loss(model, x, cond))
    with torch.no_grad():
        without = _seeded(lambda: _check_loss(model, x, cond))
    torch.testing.assert_close(without, with_grad.detach())


@names
def test_checkpoint_round_trip_gives_identical_outputs(name: str, tmp_path: Path) -> None:
    model, x, cond = _build(name)
    # One optimizer step first, so the state differs from a fresh initialization.
    fit(model, (x, cond) if cond is not None else x, steps=1, batch_size=BATCH, progress=False)
    model.eval()
    path = save_checkpoint(tmp_path / "model.pt", model_entries(model))
    loaded = load_checkpoint(path)
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    n = 3
    cond_n = None if cond is None else cond[:n]
    assert torch.equal(_seeded(lambda: loaded.loss(x, cond)), _seeded(lambda: model.loss(x, cond)))
    with torch.no_grad():
        assert torch.equal(
            _seeded(lambda: loaded.sample(n, cond_n)), _seeded(lambda: model.sample(n, cond_n))
        )


def _has_mode_dependent_layers(model: nn.Module) -> bool:
    kinds = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
    return any(isinstance(m, kinds) for m in model.modules())


@names
def test_log_prob_is_the_same_in_train_and_eval_mode(name: str) -> None:
    model, x, cond = _build(name)
    if not isinstance(model, DensityModel):
        pytest.skip("no log_prob")
    if _has_mode_dependent_layers(model):
        pytest.skip("batch-norm or dropout layers make train-mode densities differ by design")
    model.train()
    _seeded(lambda: model.log_prob(x, cond))  # lets data-dependent initializations happen
    train = _seeded(lambda: model.log_prob(x, cond))
    model.eval()
    evaluation = _seeded(lambda: model.log_prob(x, cond))
    assert train.shape == (len(x),)
    torch.testing.assert_close(evaluation, train)


@names
def test_fit_updates_every_player_and_stays_finite(name: str) -> None:
    model, x, cond = _build(name)
    if isinstance(model, TwoPlayerModel):
        players = [list(model.generator_parameters()), list(model.discriminator_parameters())]
    else:
        players = [list(model.parameters())]
    before = [[p.detach().clone() for p in params] for params in players]
    result = fit(
        model, (x, cond) if cond is not None else x, steps=2, batch_size=BATCH, progress=False
    )
    assert result.step == 2 and result.skipped == 0
    for params, old in zip(players, before, strict=True):
        assert any(not torch.equal(p, q) for p, q in zip(params, old, strict=True)), (
            "two optimizer steps left a player's parameters unchanged"
        )
    for key, value in model.state_dict().items():
        if value.dtype.is_floating_point:
            assert torch.isfinite(value).all(), f"{key} became non-finite"


@pytest.mark.gpu
@names
def test_contract_on_cuda(name: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model, x, cond = _build(name, "cuda")
    _check_loss(model, x, cond).mean().backward()
    result = fit(
        model,
        (x, cond) if cond is not None else x,
        steps=2,
        batch_size=BATCH,
        device="cuda",
        amp=True,
        progress=False,
    )
    assert result.skipped == 0
    cls = CASES[name]
    with torch.no_grad():
        out = model.eval().sample(3, None if cond is None else cond[:3])
    assert out.shape == (3, *cls.example_shape) and out.device.type == "cuda"
