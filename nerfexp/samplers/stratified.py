"""Stratified sampling of depths between near and far, uniform in depth or in disparity."""
from __future__ import annotations

import torch
from torch import Tensor

from nerfexp.cameras import RayBundle
from nerfexp.config import check_number
from nerfexp.samplers.base import GeometryFn, RaySamples, RenderedPass, StatelessSampler


def stratified_t(near: Tensor, far: Tensor, n_samples: int, lindisp: bool = False, perturb: bool = False,
                 generator: torch.Generator | None = None) -> Tensor:
    """Sample depths in ``n_samples`` equal bins between near and far.

    Args:
        near, far: ``(R, 1)``.
        lindisp: bins equal in disparity (1/t) instead of depth.
        perturb: one uniform sample inside each bin between midpoints (training); otherwise the
            deterministic ``linspace(near, far, n)`` of NeRF, which includes near and far.
    Returns:
        ``(R, n_samples)`` sorted depths.
    """
    steps = torch.linspace(0.0, 1.0, n_samples, device=near.device, dtype=near.dtype)
    if lindisp:
        t = 1.0 / (1.0 / near * (1.0 - steps) + 1.0 / far * steps)
    else:
        t = near * (1.0 - steps) + far * steps
    if perturb:
        mids = 0.5 * (t[:, 1:] + t[:, :-1])
        upper = torch.cat([mids, t[:, -1:]], dim=-1)
        lower = torch.cat([t[:, :1], mids], dim=-1)
        u = torch.rand(t.shape, device=t.device, dtype=t.dtype, generator=generator)
        t = lower + (upper - lower) * u
    return t


class StratifiedSampler(StatelessSampler):
    """``n_samples`` stratified samples per ray, one pass, one network.

    Args:
        n_samples: samples per ray.
        lindisp: bins equal in disparity instead of depth.
        perturb: jitter samples in training.
    """

    def __init__(self, n_samples: int = 64, lindisp: bool = False, perturb: bool = True):
        check_number("n_samples", n_samples, int, low=1)
        self.n_samples, self.lindisp, self.perturb = n_samples, lindisp, perturb
        self.last_samples_per_ray = float(n_samples)

    def sample(self, rays: RayBundle, training: bool, geometry_fn: GeometryFn | None = None,
               previous: RenderedPass | None = None) -> RaySamples:
        """``(R, n_samples)`` stratified samples between each ray's near and far."""
        return RaySamples.along(rays, stratified_t(rays.near, rays.far, self.n_samples, self.lindisp,
                                                   self.perturb and training))
