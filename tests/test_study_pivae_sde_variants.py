"""The PI-VAE study's set-aside MMD variants (``studies/pivae_sde/variants.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_pivae import _sde_model

from physgen.models.pivae import mmd_rows
from physgen.models.pivae_sde import SDEPIVAE
from physgen.paths import load_module_from_path

VARIANTS = Path(__file__).parents[1] / "studies" / "pivae_sde" / "variants.py"
StudySDEPIVAE = load_module_from_path(VARIANTS, "pivae_sde_study_variants").StudySDEPIVAE


def _study_model(decoder: str, **kw: object) -> SDEPIVAE:
    return _sde_model(decoder, StudySDEPIVAE, **kw)


def test_with_its_defaults_the_study_model_is_the_public_one() -> None:
    """Same parameters, same draws, same loss; a set-aside option changes the loss (control)."""
    public = _sde_model("chebyshev", form="flux", k_transform="exp", mmd_k="log")
    study = _study_model("chebyshev", form="flux", k_transform="exp", mmd_k="log")
    for name, value in public.state_dict().items():
        torch.testing.assert_close(study.state_dict()[name], value, rtol=0, atol=0)
    x = public.sample(8)
    torch.manual_seed(5)
    expected = public.loss(x)
    torch.manual_seed(5)
    torch.testing.assert_close(study.loss(x), expected, rtol=0, atol=0)
    options = {"form": "flux", "k_transform": "exp", "mmd_k": "log"}
    varied = _study_model("chebyshev", moment_weight=1.0, **options)
    torch.manual_seed(5)
    assert not torch.allclose(varied.loss(x), expected)


def test_uniform_sensor_scale_leaves_the_mmd_unchanged() -> None:
    """The bandwidth follows the mean pairwise distance, so the MMD is scale-invariant."""
    plain = _study_model("chebyshev")
    scaled = _study_model("chebyshev", sensor_scale=[3.0] * 22)
    scaled.load_state_dict(plain.state_dict())
    x = plain.sample(6)
    torch.manual_seed(3)
    a = plain.loss(x)
    torch.manual_seed(3)
    torch.testing.assert_close(scaled.loss(x), a)
    with pytest.raises(ValueError, match="sensor_scale needs 22 positive"):
        _study_model("chebyshev", sensor_scale=[1.0] * 5)


def test_per_field_mmd_terms_add_each_varying_field() -> None:
    model = _study_model("chebyshev", mmd_terms="joint+fields")
    x = model.sample(6)
    x[:, :2] = 0.0  # u pinned at the walls in the data: that field is skipped
    torch.manual_seed(4)
    loss = model.loss(x)
    torch.manual_seed(4)
    mu, logvar = model.encode(x)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    recon = model.sensors(z)
    expected = mmd_rows(recon, x) + mmd_rows(z, torch.randn_like(z))
    expected = expected + mmd_rows(recon[:, 2:11], x[:, 2:11]) + mmd_rows(recon[:, 11:], x[:, 11:])
    torch.testing.assert_close(loss, expected)


def test_forcing_integrals_compare_log_k_and_the_running_integral_of_f() -> None:
    """Trapezoid integral of a linear f is exact; blocks are scaled by the data's spread."""
    model = _study_model("chebyshev", form="flux", k_transform="exp", forcing_integrals=1)
    g = torch.Generator().manual_seed(2)
    xf = model.f_coords
    slope, offset = torch.randn(6, 1, generator=g, dtype=torch.float64), 0.5
    k = torch.rand(6, model.n_k, generator=g, dtype=torch.float64) + 0.5
    data = torch.cat([torch.zeros(6, 2, dtype=torch.float64), k, offset + slope * xf], dim=1)
    source, target = model._integrated_readings(data.flip(0), data)
    integral = offset * (xf - xf[0]) + 0.5 * slope * (xf**2 - xf[0] ** 2)  # ∫_{x0}^x f
    rms = lambda b: torch.cdist(b, b).pow(2).mean().sqrt()  # noqa: E731
    torch.testing.assert_close(target[:, : model.n_k], k.log() / rms(k.log()))
    torch.testing.assert_close(target[:, model.n_k :], integral / rms(integral))
    torch.testing.assert_close(source, target.flip(0))
    # The loss adds exactly that MMD (same random draws with and without the term).
    plain = _study_model("chebyshev", form="flux", k_transform="exp")
    plain.load_state_dict(model.state_dict())
    torch.manual_seed(3)
    with_term = model.loss(data)
    torch.manual_seed(3)
    without = plain.loss(data)
    torch.manual_seed(3)
    mu, logvar = model.encode(data)
    recon = model.sensors(mu + (0.5 * logvar).exp() * torch.randn_like(mu))
    expected = mmd_rows(*model._integrated_readings(recon, data), kernel_num=model.kernel_num)
    torch.testing.assert_close(with_term - without, expected)
    assert expected.mean() > 0
    bad = data.clone()
    bad[0, 2] = -1.0
    with pytest.raises(ValueError, match="positive k"):
        model.loss(bad)
    with pytest.raises(ValueError, match="forcing_integrals"):
        _study_model("mlp", forcing_integrals=-1)
