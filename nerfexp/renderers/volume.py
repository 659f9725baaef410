"""Volume rendering: alpha compositing of samples along rays, as pure functions with documented shapes."""
from __future__ import annotations

import torch
from torch import Tensor

from nerfexp.cameras import RayBundle
from nerfexp.config import check_number
from nerfexp.fields.base import FieldOutputs
from nerfexp.samplers.base import RaySamples


def compositing_weights(sigmas: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
    """Weights ``w_i = T_i (1 - exp(-sigma_i delta_i))`` with ``T_i = exp(-sum_{j<i} sigma_j delta_j)``.

    Args:
        sigmas, deltas: ``(R, S)`` densities (1/world unit) and interval lengths (world units).
    Returns:
        weights ``(R, S)`` and transmittance ``(R, S)`` before each sample.
    """
    tau = sigmas * deltas
    alphas = 1.0 - torch.exp(-tau)
    # exclusive cumulative sum in log space: exact and stable, unlike cumprod of (1 - alpha + eps)
    accum = torch.cumsum(tau, dim=-1)
    trans = torch.exp(-torch.cat([torch.zeros_like(accum[:, :1]), accum[:, :-1]], dim=-1))
    return alphas * trans, trans


def composite(rgbs: Tensor, sigmas: Tensor, t_vals: Tensor, deltas: Tensor,
              background: Tensor | None) -> dict[str, Tensor]:
    """Composite samples along rays.

    Args:
        rgbs: ``(R, S, 3)`` sample colours; sigmas: ``(R, S)``; t_vals: ``(R, S)`` sorted depths;
        deltas: ``(R, S)`` world-unit interval of each sample (:func:`nerfexp.samplers.base.sample_deltas`; ray
            marchers give their own, 0 for padding);
        background: ``(3,)`` or ``(R, 3)`` colour behind the scene, or None (black).
    Returns:
        dict with ``rgb (R, 3)``, ``depth (R,)`` (expected ray parameter t, in camera depth units for
        z=-1 directions), ``disp (R,)``, ``acc (R,)`` accumulated opacity, ``weights (R, S)``.
    """
    weights, _ = compositing_weights(sigmas, deltas)
    acc = weights.sum(dim=-1)
    rgb = (weights.unsqueeze(-1) * rgbs).sum(dim=-2)
    if background is not None:
        rgb = rgb + (1.0 - acc).unsqueeze(-1) * background
    depth = (weights * t_vals).sum(dim=-1)
    # disparity of the expected depth, normalised by opacity so empty rays do not divide by zero
    disp = 1.0 / torch.clamp(depth / torch.clamp(acc, min=1e-10), min=1e-10)
    return {"rgb": rgb, "depth": depth, "disp": disp, "acc": acc, "weights": weights}


class VolumeRenderer:
    """NeRF's density volume renderer (see :class:`nerfexp.renderers.base.Renderer`).

    Args:
        density_noise_std: std of Gaussian noise added in training to the field's raw density output, before its
            activation (NeRF's ``raw_noise_std``); the pipeline hands it to the field.
    """

    geometry = "density"

    def __init__(self, density_noise_std: float = 0.0):
        check_number("density_noise_std", density_noise_std, float, low=0)
        self.density_noise_std = float(density_noise_std)

    def __call__(self, field_out: FieldOutputs, samples: RaySamples, rays: RayBundle, background: Tensor | None,
                 training: bool = False) -> dict[str, Tensor]:
        """Composite ``field_out.rgb`` and ``field_out.density`` at ``samples``; see :func:`composite`."""
        return composite(field_out.rgb, field_out.density, samples.t, samples.deltas, background)

    def update(self, step: int) -> None:
        return None

    def state(self) -> dict[str, float]:
        return {}
