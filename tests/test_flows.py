"""Flow models: distribution interface, exact invertibility, pass counts, robustness, training."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import Tensor, nn

from physgen.models.base import get_model_class
from physgen.models.flows import IAF, MAF, Flow, RealNVP
from physgen.models.flows_glow import Glow
from physgen.nn.made import MADE
from physgen.training import fit

DT = torch.float64

# (name, constructor kwargs, sample shape, cond shape)
CASES = [
    ("realnvp", dict(features=5, transforms=3, hidden=[16]), (5,), None),
    (
        "realnvp-spline-field-context",
        dict(features=4, transforms=2, hidden=[16], bins=4, cond_shape=[1, 6]),
        (4,),
        (1, 6),
    ),
    ("realnvp-half-mask", dict(features=5, transforms=2, hidden=[16], mask="half"), (5,), None),
    ("maf", dict(features=4, transforms=2, hidden=[16], cond_shape=[3]), (4,), (3,)),
    ("iaf", dict(features=4, transforms=2, hidden=[16]), (4,), None),
    (
        "glow-1d-odd-periodic",
        dict(shape=[2, 7], hidden=8, periodic=True, cond_shape=[2]),
        (2, 7),
        (2,),
    ),
    (
        "glow-2d-odd-field-context",
        dict(shape=[1, 5, 6], hidden=8, cond_shape=[1, 3, 3]),
        (1, 5, 6),
        (1, 3, 3),
    ),
]
CLASSES = {"realnvp": RealNVP, "maf": MAF, "iaf": IAF, "glow": Glow}


def build(name: str, kwargs: dict) -> Flow:
    torch.manual_seed(0)
    model = CLASSES[name.split("-")[0]](**kwargs)
    # Move every conditioner off its zero initialisation so the maps are not the identity.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def data(shape: tuple[int, ...], cond: tuple[int, ...] | None, n: int = 3, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, *shape, generator=g, dtype=dtype)
    c = None if cond is None else torch.randn(n, *cond, generator=g, dtype=dtype)
    return x, c


@pytest.mark.parametrize(("name", "kwargs", "shape", "cond"), CASES, ids=[c[0] for c in CASES])
def test_distribution_interface(name: str, kwargs: dict, shape: tuple, cond: tuple | None) -> None:
    model = build(name, kwargs)
    x, c = data(shape, cond)
    dist = model(c)
    assert isinstance(dist, torch.distributions.Distribution)
    lp = dist.log_prob(x)
    assert lp.shape == (3,) and torch.isfinite(lp).all() and lp.requires_grad
    torch.testing.assert_close(model.log_prob(x, c), lp)
    torch.testing.assert_close(model.loss(x, c), -lp)
    # Gradients reach every parameter.
    model.zero_grad()
    lp.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing
    # Shapes of samples, with a batch of contexts and with sample dims in front of it.
    assert model.sample(3, c).shape == (3, *shape)
    assert dist.sample((2,)).shape == ((2, *shape) if c is None else (2, 3, *shape))
    assert dist.log_prob(dist.sample((2,))).shape == ((2,) if c is None else (2, 3))
    # rsample is differentiable with respect to the parameters.
    model.zero_grad()
    dist = model(c)  # a fresh graph: the one above was freed by backward()
    dist.rsample().square().sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # Samples and their log-density from the same pass match log_prob of those samples.
    xs, lps = dist.rsample_and_log_prob()
    torch.testing.assert_close(lps, dist.log_prob(xs), atol=1e-4, rtol=1e-4)
    # Train and eval modes agree; save -> load (config + state dict) gives the same outputs.
    model.eval()
    torch.testing.assert_close(model.log_prob(x, c), lp.detach())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    clone = type(model).from_config(model.config)
    clone.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(clone.log_prob(x, c), lp.detach())
    torch.manual_seed(5)
    s1 = model.sample(2, None if c is None else c[:1])
    torch.manual_seed(5)
    torch.testing.assert_close(clone.sample(2, None if c is None else c[:1]), s1)


@pytest.mark.parametrize(("name", "kwargs", "shape", "cond"), CASES, ids=[c[0] for c in CASES])
def test_whole_flow_is_exactly_invertible_with_autograd_log_det(
    name: str, kwargs: dict, shape: tuple, cond: tuple | None
) -> None:
    model = build(name, kwargs).to(DT)
    x, c = data(shape, cond, n=2, dtype=DT)
    model.log_prob(x, c)  # ActNorm layers initialise on the first batch
    t = model.transform(c)
    z, ladj = t.call_and_ladj(x)
    torch.testing.assert_close(t.inv(z), x, atol=1e-9, rtol=1e-9)
    jac = torch.autograd.functional.jacobian(lambda v: t(v).reshape(2, -1), x)
    jac = jac.reshape(2, -1, 2, x[0].numel())
    blocks = torch.stack([jac[i, :, i] for i in range(2)])
    torch.testing.assert_close(ladj, torch.linalg.slogdet(blocks)[1], atol=1e-8, rtol=1e-8)


class _Counter:
    """Counts MADE evaluations: full passes (forward hooks) and single-feature passes (step)."""

    def __init__(self, model: nn.Module) -> None:
        self.calls = 0
        for m in model.modules():
            if isinstance(m, MADE):
                m.register_forward_hook(self._hook)
                m.step = self._counted(m.step)  # instance attribute, this test only

    def _hook(self, *_: object) -> None:
        self.calls += 1

    def _counted(self, step):
        def wrapper(*args, **kwargs):
            self.calls += 1
            return step(*args, **kwargs)

        return wrapper


@pytest.mark.parametrize("cls", [MAF, IAF])
def test_network_passes_maf_density_and_iaf_sampling(cls: type[Flow]) -> None:
    features, transforms = 6, 3
    model = cls(features=features, transforms=transforms, hidden=[16])
    counter = _Counter(model)
    model.log_prob(torch.randn(10, features))
    density_calls, counter.calls = counter.calls, 0
    model.sample(10)
    sample_calls = counter.calls
    one_pass, sequential = transforms, transforms * features
    if cls is MAF:
        assert (density_calls, sample_calls) == (one_pass, sequential)
    else:
        assert (density_calls, sample_calls) == (sequential, one_pass)


@pytest.mark.parametrize(("name", "kwargs", "shape", "cond"), CASES, ids=[c[0] for c in CASES])
def test_no_nan_or_inf_far_outside_training_range(
    name: str, kwargs: dict, shape: tuple, cond: tuple | None
) -> None:
    model = build(name, kwargs)
    x, c = data(shape, cond, n=64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):  # a little training, so the conditioners are not at initialisation
        opt.zero_grad()
        model.loss(0.3 * x + 1, c).mean().backward()
        opt.step()
    with torch.no_grad():
        for scale in (1e2, 1e3):  # 100 and 1000 standard deviations out
            assert torch.isfinite(model.log_prob(scale * x, c)).all()
            z = scale * torch.randn(64, *shape)
            assert torch.isfinite(model(c).transform.inv(z)).all()


@pytest.mark.parametrize("periodic", [True, [True, False], [False, True], False])
def test_periodic_glow_is_invariant_to_circular_shifts_along_periodic_axes(periodic) -> None:
    # Two levels: a shift by 4 is a shift by 2 after the squeeze, which keeps every
    # checkerboard parity, so the density is shift-invariant along exactly the periodic axes.
    flags = [periodic, periodic] if isinstance(periodic, bool) else periodic
    model = build("glow", dict(shape=[1, 8, 8], levels=2, hidden=8, periodic=periodic)).to(DT)
    x = torch.randn(2, 1, 8, 8, dtype=DT, generator=torch.Generator().manual_seed(3))
    lp = model.log_prob(x)
    for axis, wraps in zip((-2, -1), flags, strict=True):
        change = (model.log_prob(torch.roll(x, 4, dims=axis)) - lp).abs().max()
        if wraps:
            assert change < 1e-9
        else:
            assert change > 1e-3  # zero padding sees the edges


def test_bad_inputs_raise_clear_errors() -> None:
    model = MAF(features=3, transforms=1, hidden=[8], cond_shape=[2])
    with pytest.raises(ValueError, match="pass cond"):
        model.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"cond: expected shape \(B, 2\)"):
        model.log_prob(torch.zeros(4, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 3\)"):
        model.log_prob(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="unconditional"):
        MAF(features=3, transforms=1, hidden=[8]).log_prob(torch.zeros(1, 3), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="levels"):
        Glow(shape=[1, 3, 3], levels=3)
    with pytest.raises(ValueError, match="vectors"):
        MAF.for_shape((1, 4, 4))


def test_registered_for_training() -> None:
    for name, cls in CLASSES.items():
        assert get_model_class(name) is cls
        model = cls.for_shape(cls.example_shape, cls.example_cond_shape)
        x, c = cls.example_batch(2)
        assert model.log_prob(x, c).shape == (2,)
        assert model.sample(2, c).shape == (2, *cls.example_shape)


# A banana: x1 = z1, x2 = s z2 + b (z1^2 - 1), z ~ N(0, I). The map has Jacobian
# determinant s, so the entropy is that of N(0, I) plus log s.
BANANA_S, BANANA_B = 0.5, 0.5
BANANA_ENTROPY = math.log(2 * math.pi * math.e) + math.log(BANANA_S)


def banana(n: int, generator: torch.Generator) -> Tensor:
    z = torch.randn(n, 2, generator=generator)
    return torch.stack([z[:, 0], BANANA_S * z[:, 1] + BANANA_B * (z[:, 0] ** 2 - 1)], dim=1)


TOY_MODELS = {
    "realnvp": lambda: RealNVP(features=2, transforms=4, hidden=[64, 64]),
    "maf": lambda: MAF(features=2, transforms=3, hidden=[64, 64]),
    "iaf": lambda: IAF(features=2, transforms=3, hidden=[64, 64]),
    "glow": lambda: Glow(shape=[1, 2], levels=2, steps=2, checker_steps=2, hidden=32),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TOY_MODELS))
def test_trained_test_nll_reaches_the_known_entropy(name: str) -> None:
    torch.manual_seed(0)
    model = TOY_MODELS[name]()
    shape = (1, 2) if name == "glow" else (2,)
    train = banana(400_000, torch.Generator().manual_seed(0)).reshape(-1, *shape)
    fit(model, train, steps=3000, batch_size=512, lr=2e-3, schedule="cosine", progress=False)
    test = banana(50_000, torch.Generator().manual_seed(123)).reshape(-1, *shape)
    with torch.no_grad():
        nll = -model.log_prob(test).mean().item()
    print(f"{name}: test NLL {nll:.4f} nats, entropy {BANANA_ENTROPY:.4f}")
    assert abs(nll - BANANA_ENTROPY) < 0.05
