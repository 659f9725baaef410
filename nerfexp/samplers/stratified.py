"""Stratified sampling of depths between near and far, uniform in depth or in disparity."""
from __future__ import annotations

import torch
from torch import Tensor

from nerfexp.cameras import RayBundle
from nerfexp.config import check_number


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


class StratifiedSampler:
    """Coarse samples only (``n_importance`` = 0): one network, ``n_samples`` points per ray."""

    def __init__(self, n_samples: int = 64, lindisp: bool = False, perturb: bool = True, n_importance: int = 0):
        check_number("n_samples", n_samples, int, low=1)
        if n_importance != 0:
            raise ValueError(f"sampler.n_importance={n_importance}: the stratified sampler has no fine pass; "
                             "use sampler=hierarchical")
        self.n_samples, self.lindisp, self.perturb = n_samples, lindisp, perturb
        self.n_importance = 0

    def coarse(self, rays: RayBundle, training: bool) -> Tensor:
        """``(R, n_samples)`` depths for the first pass."""
        return stratified_t(rays.near, rays.far, self.n_samples, self.lindisp, self.perturb and training)

    def fine(self, rays: RayBundle, t_coarse: Tensor, weights: Tensor, training: bool) -> Tensor | None:
        """No fine pass."""
        return None
