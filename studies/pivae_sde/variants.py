r"""The MMD variants the PI-VAE study tried and set aside, as a study-only model.

The study's README lists them among the variants that did not close the gap to the paper's
numbers; they stay here so its ablation rows can be rerun, not in the public
:class:`physgen.models.pivae_sde.SDEPIVAE`:

* ``sensor_scale``: divide each sensor value by this scale inside the MMD (e.g. the data's
  per-sensor std), so the 21 weakly varying f readings, which carry the physics, weigh as
  much as the k readings;
* ``mmd_terms="joint+fields"``: add the MMD of each field's readings (u, k, f) alone to the
  joint one, so each field's distribution is matched with bandwidths of its own scale;
* ``moment_weight``: add this weight × a degree-2 polynomial kernel on standardised readings
  to the sensor MMD (see :func:`physgen.models.pivae.mmd_rows`), so the MMD also matches the
  covariance of the readings — in particular that k and f are uncorrelated, which decides the
  spread of u when u is seen only at the walls;
* ``forcing_integrals = m`` > 0: add the MMD between decodings and data of
  :math:`[\log k,\ I^m f]`, with :math:`I` the running trapezoid integral over the f sensors
  and each block divided by its spread in the data batch. The solution of −c(k u′)′ = f sees
  f through two integrations (mode ω damped by ~1/(cω²)), but in the raw readings f's low
  modes hold a small share of f's variance, so a Gaussian kernel on raw readings barely
  notices a wrong spread in them, and u's spread follows it. With ``m = 2`` the f block
  weighs modes as u does.

With every option at its default the model is :class:`SDEPIVAE` exactly (same parameters,
same random draws, same loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from physgen.models.pivae import mmd_rows
from physgen.models.pivae_sde import SDEPIVAE

__all__ = ["StudySDEPIVAE"]


class StudySDEPIVAE(SDEPIVAE):
    """:class:`SDEPIVAE` with the study's set-aside MMD variants (see the module docstring)."""

    def __init__(
        self,
        u_sensors: Sequence[float],
        k_sensors: Sequence[float],
        f_sensors: Sequence[float],
        *,
        sensor_scale: Sequence[float] | None = None,
        mmd_terms: str = "joint",
        moment_weight: float = 0.0,
        forcing_integrals: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(u_sensors, k_sensors, f_sensors, **options)
        if mmd_terms not in ("joint", "joint+fields"):
            raise ValueError(f"mmd_terms must be 'joint' or 'joint+fields', got {mmd_terms!r}")
        if forcing_integrals < 0 or (forcing_integrals and len(f_sensors) < 2):
            raise ValueError(
                f"forcing_integrals must be >= 0 and needs >= 2 f sensors, got "
                f"{forcing_integrals} with {len(f_sensors)} f sensors"
            )
        self.mmd_terms, self.moment_weight = mmd_terms, moment_weight
        self.forcing_integrals = forcing_integrals
        d = self.n_u + self.n_k + self.n_f
        scale = torch.ones(d) if sensor_scale is None else torch.tensor(sensor_scale)
        if scale.shape != (d,) or not torch.all(scale > 0):
            raise ValueError(f"sensor_scale needs {d} positive entries (one per sensor value)")
        self.register_buffer("sensor_scale", scale)

    def sensor_mmd(self, recon: Tensor, x: Tensor) -> Tensor:
        """The joint MMD on scaled readings, plus the per-field and integrated-f terms."""
        if self.forcing_integrals:
            extra = mmd_rows(*self._integrated_readings(recon, x), self.kernel_mul, self.kernel_num)
        if self.mmd_k == "log":
            recon, x = self._log_k(recon), self._log_k(x)
        recon, x = recon / self.sensor_scale, x / self.sensor_scale
        total = mmd_rows(recon, x, self.kernel_mul, self.kernel_num, self.moment_weight)
        if self.mmd_terms == "joint+fields":
            # Each field's readings on their own, with bandwidths set by that field's spread.
            for part, ref in zip(
                recon.split([self.n_u, self.n_k, self.n_f], dim=1),
                x.split([self.n_u, self.n_k, self.n_f], dim=1),
                strict=True,
            ):
                if ref.var(0).sum() > 1e-12:  # readings pinned by the data (u at the walls) skip
                    total = total + mmd_rows(part, ref, self.kernel_mul, self.kernel_num)
        if self.forcing_integrals:
            total = total + extra
        return total

    def _integrated_readings(self, recon: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[log k, ∫…∫ f]`` of decodings and data, each block scaled by the data's spread.

        f is integrated ``forcing_integrals`` times by the trapezoid rule over the f-sensor
        positions (from the first one); the two blocks are divided by the root-mean-square
        pairwise distance of the data batch's block, so both weigh alike in the kernel.
        """
        if not (
            torch.all(x[:, self.n_u : self.n_u + self.n_k] > 0)
            and torch.all(recon[:, self.n_u : self.n_u + self.n_k] > 0)
        ):
            raise ValueError("forcing_integrals needs positive k readings (log k is compared)")
        gaps = self.f_coords.diff().to(x.dtype)  # (n_f − 1,)
        blocks = []
        for v in (recon, x):
            _, k, f = v.split([self.n_u, self.n_k, self.n_f], dim=1)
            for _ in range(self.forcing_integrals):
                steps = 0.5 * (f[:, 1:] + f[:, :-1]) * gaps  # (B, n_f − 1)
                f = torch.cat([torch.zeros_like(f[:, :1]), steps.cumsum(1)], dim=1)
            blocks.append((k.log(), f))
        scales = [
            torch.cdist(b, b).pow(2).mean().sqrt().detach().clamp_min(1e-12) for b in blocks[1]
        ]
        recon_k, recon_f = blocks[0]
        data_k, data_f = blocks[1]
        source = torch.cat([recon_k / scales[0], recon_f / scales[1]], dim=1)
        target = torch.cat([data_k / scales[0], data_f / scales[1]], dim=1)
        return source, target
