"""Volume rendering: alpha compositing of samples along rays, as pure functions with documented shapes."""
from __future__ import annotations

import torch
from torch import Tensor

FAR_DELTA = 1e10  # the last interval extends to infinity, as in NeRF


def sample_deltas(t_vals: Tensor, directions: Tensor) -> Tensor:
    """Distances between consecutive samples in world units.

    Args:
        t_vals: ``(R, S)`` sorted sample depths (ray parameter).
        directions: ``(R, 3)`` ray directions (not necessarily unit length).
    Returns:
        ``(R, S)``; the last interval is ``FAR_DELTA``.
    """
    deltas = t_vals[:, 1:] - t_vals[:, :-1]
    deltas = torch.cat([deltas, torch.full_like(deltas[:, :1], FAR_DELTA)], dim=-1)
    return deltas * directions.norm(dim=-1, keepdim=True)


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


def composite(rgbs: Tensor, sigmas: Tensor, t_vals: Tensor, directions: Tensor,
              background: Tensor | None, deltas: Tensor | None = None) -> dict[str, Tensor]:
    """Composite samples along rays.

    Args:
        rgbs: ``(R, S, 3)`` sample colours; sigmas: ``(R, S)``; t_vals: ``(R, S)`` sorted depths;
        directions: ``(R, 3)``; background: ``(3,)`` or ``(R, 3)`` colour behind the scene, or None (black);
        deltas: ``(R, S)`` world-unit interval of each sample when samples are not contiguous (ray marching,
            0 for padding); default: the gaps between consecutive ``t_vals``.
    Returns:
        dict with ``rgb (R, 3)``, ``depth (R,)`` (expected ray parameter t, in camera depth units for
        z=-1 directions), ``disp (R,)``, ``acc (R,)`` accumulated opacity, ``weights (R, S)``.
    """
    if deltas is None:
        deltas = sample_deltas(t_vals, directions)
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
    """NeRF's density volume renderer.

    Args:
        density_noise_std: std of Gaussian noise added to raw densities during training (NeRF's ``raw_noise_std``);
            applied in density space before the activation only by fields that expose it, here to sigma itself.
    """

    def __init__(self, density_noise_std: float = 0.0):
        self.density_noise_std = density_noise_std

    def __call__(self, rgbs: Tensor, sigmas: Tensor, t_vals: Tensor, directions: Tensor,
                 background: Tensor | None, training: bool = False, deltas: Tensor | None = None) -> dict[str, Tensor]:
        if training and self.density_noise_std > 0:
            sigmas = torch.relu(sigmas + torch.randn_like(sigmas) * self.density_noise_std)
        return composite(rgbs, sigmas, t_vals, directions, background, deltas)
