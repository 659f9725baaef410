"""NeuS up-sampling for SDF fields: uniform samples, then rounds of importance samples drawn from the opacity a
fixed, growing sharpness gives the current SDF, so samples gather at the surface before the field is queried."""
from __future__ import annotations

import torch
from torch import Tensor

from nerfexp.cameras import RayBundle, sphere_near_far
from nerfexp.config import check_number
from nerfexp.renderers.neus import alpha_weights, neus_alpha
from nerfexp.samplers.base import GeometryFn, RaySamples, RenderedPass, StatelessSampler, interval_lengths
from nerfexp.samplers.hierarchical import sample_pdf
from nerfexp.samplers.stratified import stratified_t


def section_alpha(t: Tensor, sdf: Tensor, inside: Tensor, inv_s: float) -> Tensor:
    """Opacity ``(R, S - 1)`` of the sections between samples ``t`` ``(R, S)`` with SDF values ``sdf``, the slope
    estimated from neighbouring samples (never positive: up-sampling looks for surfaces the ray enters)."""
    mid = 0.5 * (sdf[:, 1:] + sdf[:, :-1])
    dist = t[:, 1:] - t[:, :-1]
    slope = (sdf[:, 1:] - sdf[:, :-1]) / (dist + 1e-5)
    prev_slope = torch.cat([torch.zeros_like(slope[:, :1]), slope[:, :-1]], dim=-1)
    slope = torch.minimum(prev_slope, slope).clamp(-1e3, 0.0) * inside
    # a slope <= 0 per unit t is NeuS's (annealed) cosine term itself
    return neus_alpha(mid, slope, dist, inv_s)


class NeuSUpSampler(StatelessSampler):
    """For SDF fields: rays clipped to the sphere of radius ``bound``, ``n_samples`` uniform samples, then
    ``up_sample_steps`` rounds that each add ``n_importance / up_sample_steps`` samples by inverse-CDF sampling of
    the sections' opacity at sharpness ``base_inv_s * 2^round`` (the field's own sharpness is not used: it is small
    early in training). The samples returned are the midpoints of the sections between those points; the last
    section ends where the ray leaves the sphere.

    Args:
        bound: radius of the sphere the SDF lives in (``dataset.bound``).
        n_samples: uniform samples per ray.
        n_importance: up-sampled samples per ray (0: none).
        up_sample_steps: rounds.
        base_inv_s: sharpness of the first round.
        perturb: jitter the uniform samples in training.
    """

    geometry = "sdf"

    def __init__(self, bound: float = 1.0, n_samples: int = 64, n_importance: int = 64, up_sample_steps: int = 4,
                 base_inv_s: float = 64.0, perturb: bool = True):
        check_number("bound", bound, float, low=0, low_open=True)
        check_number("n_samples", n_samples, int, low=2)
        check_number("n_importance", n_importance, int, low=0)
        check_number("up_sample_steps", up_sample_steps, int, low=1)
        check_number("base_inv_s", base_inv_s, float, low=0, low_open=True)
        if n_importance and (up_sample_steps < 1 or n_importance % up_sample_steps):
            raise ValueError(f"sampler.n_importance={n_importance} must be a multiple of "
                             f"sampler.up_sample_steps={up_sample_steps}")
        self.bound = float(bound)
        self.n_samples, self.n_importance = n_samples, n_importance
        self.up_sample_steps, self.base_inv_s, self.perturb = up_sample_steps, base_inv_s, perturb
        self.last_samples_per_ray = float(n_samples + n_importance)

    def sample(self, rays: RayBundle, training: bool, geometry_fn: GeometryFn,
               previous: RenderedPass | None = None) -> RaySamples:
        """Section midpoints ``t (R, n_samples + n_importance)`` with world-unit section lengths; ``geometry_fn``
        maps world points ``(..., 3)`` to their SDF."""
        rays = sphere_near_far(rays, self.bound)
        t, importance, sdf = self.section_starts(rays, geometry_fn, training)
        # sections between samples; the last one ends where the ray leaves the sphere
        dists = interval_lengths(t, rays.far)
        deltas = dists * rays.directions.norm(dim=-1, keepdim=True)
        return RaySamples(t + 0.5 * dists, deltas, importance=importance, section_sdf=None if training else sdf)

    @torch.no_grad()
    def section_starts(self, rays: RayBundle, sdf_fn: GeometryFn,
                       training: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        """Sorted points ``(R, n_samples + n_importance)``, which of them were up-sampled, and the SDF at them
        (the last round's points interpolated between their neighbours: they are never queried here), or None
        without up-sampling."""
        t = stratified_t(rays.near, rays.far, self.n_samples, perturb=self.perturb and training)
        upsampled = torch.zeros_like(t, dtype=torch.bool)
        if not self.n_importance:
            return t, upsampled, None
        sdf = sdf_fn(rays.points(t))
        per_round = self.n_importance // self.up_sample_steps
        for k in range(self.up_sample_steps):
            inside = (rays.points(t).norm(dim=-1) < self.bound).to(t.dtype)
            inside = torch.maximum(inside[:, 1:], inside[:, :-1])
            alpha = section_alpha(t, sdf, inside, self.base_inv_s * 2 ** k)
            t_new = sample_pdf(t, alpha_weights(alpha), per_round, deterministic=True)
            if k + 1 < self.up_sample_steps:
                sdf_new = sdf_fn(rays.points(t_new))
            else:  # the last round's SDF is not needed for sampling: interpolated for whoever reads it
                sdf_new = interpolate_between(t, sdf, t_new)
            t, order = torch.sort(torch.cat([t, t_new], dim=-1), dim=-1)
            upsampled = torch.cat([upsampled, torch.ones_like(t_new, dtype=torch.bool)], dim=-1).gather(-1, order)
            sdf = torch.cat([sdf, sdf_new], dim=-1).gather(-1, order)
        return t, upsampled, sdf


def interpolate_between(t: Tensor, values: Tensor, t_new: Tensor) -> Tensor:
    """``values`` known at sorted ``t`` ``(R, S)``, linearly interpolated at ``t_new`` ``(R, K)`` (held constant
    outside ``t``'s range)."""
    hi = torch.searchsorted(t.contiguous(), t_new.contiguous()).clamp(1, t.shape[-1] - 1)
    lo = hi - 1
    t_lo, t_hi = t.gather(-1, lo), t.gather(-1, hi)
    v_lo, v_hi = values.gather(-1, lo), values.gather(-1, hi)
    frac = ((t_new - t_lo) / (t_hi - t_lo).clamp(min=1e-10)).clamp(0.0, 1.0)
    return v_lo + frac * (v_hi - v_lo)
