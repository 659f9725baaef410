"""What every sampler returns (:class:`RaySamples`) and the one interface every sampler has (:class:`Sampler`).

A pipeline renders ``sampler.n_passes`` passes. Each pass asks the sampler for samples, giving it the previous
pass (its samples and compositing weights, None in the first) and the current geometry (density or SDF of world
points), queries a field at the samples and composites them with the renderer. Stateful samplers (an occupancy
grid) refresh their state in :meth:`Sampler.update`, once per training step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from torch import Tensor

from nerfexp.cameras import RayBundle


class GeometryFn(Protocol):
    """World points ``(..., 3)`` -> density or SDF ``(...)``; ``footprint`` ``(..., 1)``: the pixel footprint of
    each point where it lies on a camera ray (:meth:`RayBundle.footprint_at`), for encodings that integrate over it."""

    def __call__(self, pts: Tensor, footprint: Tensor | None = None) -> Tensor:
        ...


FAR_DELTA = 1e10  # an unbounded scene's last interval: everything behind the last sample, as in NeRF


def interval_lengths(t_vals: Tensor, far: Tensor | None) -> Tensor:
    """Length in ray-parameter units of the interval each sample stands for: from it to the next sample.

    Args:
        t_vals: ``(R, S)`` sorted sample depths (ray parameter).
        far: ``(R, 1)`` where each ray ends (bounded scenes: the last interval ends there, so a ray through empty
            space shows the background), or None for unbounded / NDC scenes, where the last interval is
            ``FAR_DELTA`` long and stands for everything behind it.
    Returns:
        ``(R, S)`` non-negative lengths.
    """
    deltas = t_vals[:, 1:] - t_vals[:, :-1]
    if far is None:
        last = torch.full_like(deltas[:, :1], FAR_DELTA)
    else:
        last = (far.to(t_vals.dtype) - t_vals[:, -1:]).clamp(min=0.0)
    return torch.cat([deltas, last], dim=-1)


def sample_deltas(t_vals: Tensor, directions: Tensor, far: Tensor | None) -> Tensor:
    """:func:`interval_lengths` in world units, for ray ``directions`` ``(R, 3)`` of any length: ``(R, S)``."""
    return interval_lengths(t_vals, far) * directions.norm(dim=-1, keepdim=True)


def scatter_to_grid(values: Tensor, rows: Tensor, cols: Tensor, shape: tuple[int, int]) -> Tensor:
    """Zeros of ``(*shape, *values.shape[1:])`` holding ``values[i]`` at ``(rows[i], cols[i])`` (samples queried
    at some cells of an ``(R, S)`` grid, back in the grid). One copy along a flat index: 5x faster on the CPU than
    indexing with the two index tensors. Differentiable in ``values``."""
    out = torch.zeros(shape[0] * shape[1], *values.shape[1:], dtype=values.dtype, device=values.device)
    return out.index_copy(0, rows * shape[1] + cols, values).view(*shape, *values.shape[1:])


def front_slots(mask: Tensor, rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
    """Where the set cells ``(rows, cols)`` of ``mask (R, S)`` go when each row's move to its front in order: their
    columns there, and the packed mask ``(R, K)``, ``K`` the longest row (at least 1)."""
    counts = mask.sum(-1)
    width = max(int(counts.max()), 1) if mask.numel() else 1
    slot = (mask.cumsum(-1) - 1)[rows, cols]
    return slot, torch.arange(width, device=mask.device) < counts[:, None]


@dataclass
class RaySamples:
    """Samples along ``R`` rays, ``S`` per ray (rows padded where rays keep different numbers).

    Attributes:
        t: ``(R, S)`` sorted ray parameters of the samples (``origin + t * direction``).
        deltas: ``(R, S)`` world-unit length of the interval each sample stands for (0: padding, nothing there).
        mask: ``(R, S)`` bool, the valid samples; None when every sample is valid.
        importance: ``(R, S)`` bool, samples placed by importance sampling (plots tell them apart); or None.
        ray_index: ``(R,)`` which input rays these rows are, when the sampler kept only some (a sample budget).
        early_stop_eps: when set, samples behind transmittance below it are still to be dropped: the pipeline
            queries them front to back (:func:`nerfexp.samplers.front_to_back.query_front_to_back`) and narrows
            ``mask`` and ``deltas`` to those kept.
        alpha_threshold: with ``early_stop_eps``, samples whose own opacity is at or below this are dropped too.
        section_sdf: ``(R, S)`` SDF at the start of each sample's section, where an SDF sampler found it on its way
            (rendering only): a renderer can tell from it which sections no light comes from, before the field
            is queried there.
    """

    t: Tensor
    deltas: Tensor
    mask: Tensor | None = None
    importance: Tensor | None = None
    ray_index: Tensor | None = None
    early_stop_eps: float | None = None
    alpha_threshold: float = 0.0
    section_sdf: Tensor | None = None

    @classmethod
    def along(cls, rays: RayBundle, t: Tensor, importance: Tensor | None = None) -> "RaySamples":
        """Samples at sorted ``t`` ``(R, S)``, each standing for the interval up to the next one; a bounded
        scene's last interval ends at the ray's ``far``, an unbounded scene's goes on (see :func:`sample_deltas`)."""
        return cls(t, sample_deltas(t, rays.directions, rays.far_or_none()), importance=importance)


@dataclass
class RenderedPass:
    """One pass of a pipeline, as the next pass's sampler sees it: its samples and their compositing weights
    ``(R, S)``."""

    samples: RaySamples
    weights: Tensor


class Sampler(Protocol):
    """Where to query the field along each ray.

    Attributes:
        geometry: what ``geometry_fn`` must return for this sampler: ``"density"``, ``"sdf"``, or None when it
            does not read the geometry at all (the pipeline refuses a sampler whose geometry it does not have).
        n_passes: field passes per batch (coarse + fine: 2).
    """

    geometry: ClassVar[str | None]
    n_passes: int

    def sample(self, rays: RayBundle, training: bool, geometry_fn: GeometryFn,
               previous: RenderedPass | None = None) -> RaySamples:
        """Samples for the next pass of ``R`` rays (``previous``: the pass before, None for the first)."""
        ...

    def update(self, step: int, geometry_fn: GeometryFn) -> bool:
        """Per-training-step upkeep of the sampler's state (nothing for stateless samplers). Returns whether the
        state changed (the ranks of a data-parallel run then all take rank 0's)."""
        ...

    def state(self) -> dict[str, float]:
        """Numbers worth a curve (e.g. samples per ray of the last batch, occupied fraction of a grid)."""
        ...


class StatelessSampler:
    """Base of samplers with no state to update: :meth:`Sampler.update` does nothing."""

    geometry: ClassVar[str | None] = None
    n_passes: int = 1
    last_samples_per_ray: float = 0.0

    def update(self, step: int, geometry_fn: GeometryFn) -> bool:
        return False

    def state(self) -> dict[str, float]:
        return {"samples_per_ray": self.last_samples_per_ray}
