"""Occupancy-grid ray marching (Instant-NGP style): fixed steps inside the scene box, skipping empty cells and
stopping where the ray is already opaque.

Samples come back padded to ``(R, S)`` with a validity mask, ``S`` being the most samples any ray in the batch
kept, so the field runs only on valid samples and the volume renderer composites rows as usual.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nerfexp.cameras import RayBundle, ray_box
from nerfexp.config import check_number
from nerfexp.kernels import cpu_kernels
from nerfexp.renderers.volume import compositing_weights
from nerfexp.samplers.base import GeometryFn, RaySamples, RenderedPass, front_slots, scatter_to_grid

def compact(t: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Move each row's masked entries to its front, keeping their order; trims to the longest row."""
    rows, cols = mask.nonzero(as_tuple=True)
    slot, packed = front_slots(mask, rows, cols)
    return scatter_to_grid(t[rows, cols], rows, slot, packed.shape), packed


class OccupancySampler(nn.Module):
    """Occupancy grid over ``[-bound, bound]^3`` and the ray marcher that uses it.

    Args:
        bound: half side of the scene box (world units).
        resolution: cells per side of the grid.
        diagonal_steps: marching steps along the box diagonal, the most samples a ray can get (sets the step).
        render_step_size: marching step in world units (overrides ``diagonal_steps``).
        occ_threshold: a cell is occupied while ``1 - exp(-density * step)`` exceeds this (capped by the mean).
        ema_decay: per update after warm-up, a cell's density is ``max(decay * old, new)`` (in warm-up: ``new``).
        update_every: steps between grid updates in training.
        warmup_steps: before this step every cell is re-evaluated; after it a quarter at random plus the occupied.
        early_stop_eps: drop samples behind transmittance below this.
        alpha_threshold: drop samples whose own opacity is below this.
        front_to_back: when rendering (not training), the pipeline queries the marched samples a few per ray at a
            time and stops each ray where it turns opaque (:mod:`nerfexp.samplers.front_to_back`): one field query
            per kept sample. Otherwise, and always in training, a no-gradient density query at every marched sample
            finds the kept ones first (in training's small batches the rounds cost more than they save: measured
            0.65x the steps/s on lego_fast). Both keep the same samples.
        perturb: jitter the first step per ray in training.
        max_batch_samples: in training, keep only as many rays (in batch order, which is random) as fit this many
            samples, so early steps, before the grid has emptied, cost no more than later ones (null: no cap).
        cpu_kernel: march with the C++ CPU kernel when it builds (same samples as the PyTorch code, faster).
    """

    geometry = "density"
    n_passes = 1

    def __init__(self, bound: float = 1.5, resolution: int = 64, diagonal_steps: int = 512,
                 render_step_size: float | None = None, occ_threshold: float = 0.01, ema_decay: float = 0.95,
                 update_every: int = 16, warmup_steps: int = 256, early_stop_eps: float = 1e-4, alpha_threshold: float = 0.0,
                 perturb: bool = True, max_batch_samples: int | None = None, cpu_kernel: bool = True,
                 front_to_back: bool = True):
        super().__init__()
        check_number("bound", bound, float, low=0, low_open=True)
        for key, value, low in (("resolution", resolution, 1), ("diagonal_steps", diagonal_steps, 1),
                                ("update_every", update_every, 1), ("warmup_steps", warmup_steps, 0)):
            check_number(key, value, int, low=low)
        check_number("render_step_size", render_step_size, float, low=0, low_open=True, nullable=True)
        check_number("occ_threshold", occ_threshold, float, low=0, high=0.999)
        check_number("ema_decay", ema_decay, float, low=0, high=1)
        check_number("early_stop_eps", early_stop_eps, float, low=0, high=1)
        check_number("alpha_threshold", alpha_threshold, float, low=0, high=0.999)
        check_number("max_batch_samples", max_batch_samples, int, low=1, nullable=True)
        self.bound, self.resolution = float(bound), int(resolution)
        self.step_size = float(render_step_size or 2.0 * math.sqrt(3.0) * bound / diagonal_steps)
        self.occ_threshold, self.ema_decay = occ_threshold, ema_decay
        self.update_every, self.warmup_steps = update_every, warmup_steps
        self.early_stop_eps, self.alpha_threshold, self.perturb = early_stop_eps, alpha_threshold, perturb
        self.max_batch_samples = max_batch_samples
        self.use_cpu_kernel = cpu_kernel
        self.front_to_back = bool(front_to_back)
        self.register_buffer("density", torch.zeros(self.resolution ** 3))
        self.register_buffer("occupied", torch.ones(self.resolution ** 3, dtype=torch.bool))
        self._last: RaySamples | None = None  # the last batch's samples (their mask narrows after a front-to-back query)

    @property
    def last_samples_per_ray(self) -> float:
        """Samples per ray the last batch kept."""
        if self._last is None:
            return 0.0
        return float(self._last.mask.sum()) / max(len(self._last.mask), 1)

    # -- the grid -------------------------------------------------------------------------------------------------
    def cell_index(self, pts: Tensor) -> Tensor:
        """Flat cell index of world points ``(..., 3)`` (clamped into the box)."""
        g = ((pts + self.bound) * (self.resolution / (2 * self.bound))).long().clamp(0, self.resolution - 1)
        return g[..., 0] + self.resolution * (g[..., 1] + self.resolution * g[..., 2])

    def cell_centers(self, idx: Tensor, jitter: bool) -> Tensor:
        """World positions inside cells ``idx`` (centres, or uniform within the cell)."""
        r = self.resolution
        g = torch.stack([idx % r, (idx // r) % r, idx // (r * r)], dim=-1).float()
        g = g + (torch.rand_like(g) if jitter else 0.5)
        return g / r * (2 * self.bound) - self.bound

    @torch.no_grad()
    def update(self, step: int, geometry_fn: GeometryFn, chunk: int = 65536) -> bool:
        """Refresh the grid every ``update_every`` steps (call once per training step); True when it did."""
        if step % self.update_every:
            return False
        n = self.resolution ** 3
        if step < self.warmup_steps:
            idx = torch.arange(n, device=self.density.device)
        else:
            uniform = torch.randint(0, n, (n // 4,), device=self.density.device)
            occupied = self.occupied.nonzero().squeeze(-1)
            if len(occupied) > n // 4:
                occupied = occupied[torch.randint(0, len(occupied), (n // 4,), device=occupied.device)]
            idx = torch.cat([uniform, occupied])
        new = torch.cat([geometry_fn(self.cell_centers(idx[k:k + chunk], jitter=True))
                         for k in range(0, len(idx), chunk)])
        # in warm-up every cell is re-evaluated, so the grid takes the field as it is now: a decaying maximum
        # would keep the fresh field's uniform density for ~8 updates (128 steps) and every cell occupied with it
        decayed = self.density * (self.ema_decay if step >= self.warmup_steps else 0.0)
        decayed[idx] = torch.maximum(decayed[idx], new.float())
        self.density.copy_(decayed)
        threshold = min(-math.log1p(-self.occ_threshold) / self.step_size, float(self.density.mean()))
        self.occupied.copy_(self.density > threshold)
        return True

    def occupancy_fraction(self) -> float:
        return float(self.occupied.float().mean())

    def state(self) -> dict[str, float]:
        return {"samples_per_ray": self.last_samples_per_ray, "occupancy": self.occupancy_fraction()}

    # -- marching -------------------------------------------------------------------------------------------------
    def sample(self, rays: RayBundle, training: bool, geometry_fn: GeometryFn,
               previous: RenderedPass | None = None) -> RaySamples:
        """Steps along ``rays`` in occupied cells, without those behind opaque matter (``geometry_fn``: world
        points -> density): ``t``, ``deltas`` and ``mask`` ``(R, S)``, ``S`` the most any ray kept."""
        t0, t1 = ray_box(rays, self.bound)
        dt = self.step_size / rays.directions.norm(dim=-1, keepdim=True)  # step in ray-parameter units
        offset = torch.rand_like(t0) if (training and self.perturb) else torch.full_like(t0, 0.5)
        kernels = cpu_kernels() if (self.use_cpu_kernel and t0.device.type == "cpu") else None
        if kernels is not None:
            t, mask = kernels.march_occupied(rays.origins, rays.directions, t0.squeeze(-1), t1.squeeze(-1),
                                             dt.squeeze(-1), offset.squeeze(-1), self.occupied, self.bound,
                                             self.resolution)
        else:
            t, mask = self.march_torch(rays, t0, t1, dt, offset)
        kept = None
        if training and self.max_batch_samples and int(mask.sum()) > self.max_batch_samples:
            fits = mask.sum(-1).cumsum(0) <= self.max_batch_samples
            fits[0] = True
            kept = fits.nonzero().squeeze(-1)
            rays, t, mask, dt = rays[kept], t[kept], mask[kept], dt[kept]
        stops = self.early_stop_eps > 0 or self.alpha_threshold > 0
        deferred = stops and not training and self.front_to_back  # the pipeline queries them front to back
        if stops and not deferred:
            t, mask = self.prune_opaque(rays, t, mask, geometry_fn)
        samples = RaySamples(t, mask * self.step_size, mask=mask, ray_index=kept)
        if deferred:
            samples.early_stop_eps, samples.alpha_threshold = self.early_stop_eps, self.alpha_threshold
        self._last = samples
        return samples

    def march_torch(self, rays: RayBundle, t0: Tensor, t1: Tensor, dt: Tensor,
                    offset: Tensor) -> tuple[Tensor, Tensor]:
        """Occupied steps of each ray, packed to the front of ``(R, S)`` (what the CPU kernel computes)."""
        span = ((t1 - t0) / dt).clamp(min=0)
        n_steps = max(int(math.ceil(float(span.max()))) if len(rays) else 0, 1)
        t = t0 + (torch.arange(n_steps, device=t0.device, dtype=t0.dtype) + offset) * dt
        mask = t < t1
        rows, cols = mask.nonzero(as_tuple=True)
        pts = rays.points(t[rows, cols], rows)
        keep = self.occupied[self.cell_index(pts)]
        mask[rows[~keep], cols[~keep]] = False
        return compact(t, mask)

    @torch.no_grad()
    def prune_opaque(self, rays: RayBundle, t: Tensor, mask: Tensor,
                     density_fn: GeometryFn) -> tuple[Tensor, Tensor]:
        """Keep samples that can still be seen (transmittance above eps) and are not transparent themselves."""
        rows, cols = mask.nonzero(as_tuple=True)
        sigma = torch.zeros_like(t)
        if len(rows):
            pts, footprint = rays.points(t[rows, cols], rows), rays.footprint_at(t[rows, cols], rows)
            sigma[rows, cols] = (density_fn(pts) if footprint is None else density_fn(pts, footprint)).float()
        _, trans = compositing_weights(sigma, mask * self.step_size)
        keep = mask & (trans > self.early_stop_eps)
        if self.alpha_threshold > 0:
            keep &= (1.0 - torch.exp(-sigma * self.step_size)) > self.alpha_threshold
        return compact(t, keep)
