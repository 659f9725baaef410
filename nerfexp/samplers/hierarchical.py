"""Hierarchical (coarse-to-fine) sampling: importance samples drawn from the coarse pass's weights."""
from __future__ import annotations

import torch
from torch import Tensor

from nerfexp.cameras import RayBundle
from nerfexp.config import check_number
from nerfexp.samplers.base import GeometryFn, RaySamples, RenderedPass
from nerfexp.samplers.stratified import StratifiedSampler


def sample_pdf(bins: Tensor, weights: Tensor, n_samples: int, deterministic: bool = False,
               generator: torch.Generator | None = None) -> Tensor:
    """Inverse-CDF sampling of a piecewise-constant density.

    Args:
        bins: ``(R, B + 1)`` sorted bin edges.
        weights: ``(R, B)`` non-negative bin weights (need not sum to 1).
        n_samples: samples per ray.
        deterministic: evenly spaced quantiles instead of uniform random ones.
    Returns:
        ``(R, n_samples)`` samples distributed with density proportional to ``weights`` inside each bin.
    """
    weights = weights + 1e-5  # keeps the CDF strictly increasing where the coarse pass saw nothing
    pdf = weights / weights.sum(dim=-1, keepdim=True)
    cdf = torch.cumsum(pdf, dim=-1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], dim=-1)  # (R, B + 1)
    if deterministic:
        u = torch.linspace(0.0, 1.0, n_samples, device=bins.device, dtype=bins.dtype).expand(cdf.shape[0], n_samples)
    else:
        u = torch.rand(cdf.shape[0], n_samples, device=bins.device, dtype=bins.dtype, generator=generator)
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True)
    below = (idx - 1).clamp(min=0)
    above = idx.clamp(max=cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_lo, bin_hi = bins.gather(-1, below), bins.gather(-1, above)
    denom = cdf_hi - cdf_lo
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    return bin_lo + (u - cdf_lo) / denom * (bin_hi - bin_lo)


class HierarchicalSampler(StratifiedSampler):
    """Two passes: ``n_samples`` stratified samples, then those plus ``n_importance`` inverse-CDF samples drawn from
    the first pass's weights, sorted, as in NeRF (a coarse and a fine network). ``n_importance`` = 0: one pass.

    Args:
        n_samples: samples per ray of the first (coarse) pass.
        n_importance: samples per ray the second (fine) pass adds.
        lindisp: coarse bins equal in disparity instead of depth.
        perturb: jitter samples in training.
    """

    def __init__(self, n_samples: int = 64, n_importance: int = 128, lindisp: bool = False, perturb: bool = True):
        check_number("n_samples", n_samples, int, low=2)
        check_number("n_importance", n_importance, int, low=0)
        super().__init__(n_samples, lindisp, perturb)
        self.n_importance = n_importance
        self.n_passes = 2 if n_importance > 0 else 1
        self.last_samples_per_ray = float(n_samples + n_importance)

    def sample(self, rays: RayBundle, training: bool, geometry_fn: GeometryFn | None = None,
               previous: RenderedPass | None = None) -> RaySamples:
        """First pass: ``(R, n_samples)`` stratified samples. Second pass: ``(R, n_samples + n_importance)``,
        the first pass's samples and the importance samples (marked in ``importance``)."""
        if previous is None:
            return super().sample(rays, training)
        t_coarse = previous.samples.t
        mids = 0.5 * (t_coarse[:, 1:] + t_coarse[:, :-1])
        t_imp = sample_pdf(mids, previous.weights[:, 1:-1].detach(), self.n_importance,
                           deterministic=not (self.perturb and training)).detach()
        t, order = torch.sort(torch.cat([t_coarse, t_imp], dim=-1), dim=-1)
        return RaySamples.along(rays, t, importance=order >= t_coarse.shape[-1])
