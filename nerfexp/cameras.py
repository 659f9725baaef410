"""Pinhole cameras and ray generation.

Conventions (used everywhere in nerfexp):
- camera-to-world matrices ``c2w`` are OpenGL style: the camera looks down its local -z axis, +y is up, +x right;
- pixel (column ``i``, row ``j``) has its centre at image coordinates ``(i + 0.5, j + 0.5)``, so that an image
  area-averaged by an integer factor keeps its rays through the centres of the averaged blocks;
- ray directions are *not* normalised (their camera-space z is -1), so a sample at ``t`` lies at camera depth ``t``;
  ``viewdirs`` are the unit-length directions fed to view-dependent fields.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def scaled(self, factor: float) -> "Intrinsics":
        """Intrinsics of the same camera for an image downscaled by ``factor`` (area averaging)."""
        return Intrinsics(self.fx / factor, self.fy / factor, self.cx / factor, self.cy / factor,
                          int(self.width // factor), int(self.height // factor))

    def as_tensor(self) -> Tensor:
        """(4,) tensor ``[fx, fy, cx, cy]``."""
        return torch.tensor([self.fx, self.fy, self.cx, self.cy], dtype=torch.float32)


@dataclass
class RayBundle:
    """A batch of rays. Shapes: origins/directions/viewdirs ``(N, 3)``, near/far ``(N, 1)``.

    ``unbounded``: the scene goes on behind ``far`` (NDC / forward-facing captures), so the last sample of a ray
    stands for everything behind it; in a bounded scene a ray ends at ``far`` and what it does not hit before
    shows the background.

    ``footprint``: ``(N, 2)``, how wide the pixel a ray stands for is where it samples: the standard deviation (world
    units, across the ray) of the pixel's area at ``t`` is ``footprint[:, 0] + footprint[:, 1] * t`` (a pinhole
    camera: ``[0, 1 / (f sqrt(12))]``, the pixel's cone; NDC: a constant). None: rays without pixels (a point's
    footprint is 0)."""

    origins: Tensor
    directions: Tensor
    viewdirs: Tensor
    near: Tensor
    far: Tensor
    unbounded: bool = False
    footprint: Tensor | None = None

    def __len__(self) -> int:
        return self.origins.shape[0]

    def __getitem__(self, idx) -> "RayBundle":
        return RayBundle(self.origins[idx], self.directions[idx], self.viewdirs[idx], self.near[idx], self.far[idx],
                         self.unbounded, None if self.footprint is None else self.footprint[idx])

    def to(self, device: torch.device | str) -> "RayBundle":
        return RayBundle(*(t.to(device) for t in (self.origins, self.directions, self.viewdirs, self.near, self.far)),
                         unbounded=self.unbounded,
                         footprint=None if self.footprint is None else self.footprint.to(device))

    def with_near_far(self, near: Tensor, far: Tensor) -> "RayBundle":
        """The same rays between new ``near`` and ``far`` ``(N, 1)``."""
        return RayBundle(self.origins, self.directions, self.viewdirs, near, far, self.unbounded, self.footprint)

    def far_or_none(self) -> Tensor | None:
        """``far`` where rays end there (bounded scenes), None where the scene goes on behind it."""
        return None if self.unbounded else self.far

    def points(self, t: Tensor, rows: Tensor | None = None) -> Tensor:
        """Points at ray parameters ``t``: ``(N, S)`` samples per ray -> ``(N, S, 3)``; with ``rows`` ``(K,)``,
        one sample of ray ``rows[k]`` at ``t[k]`` -> ``(K, 3)``."""
        if rows is None:
            return self.origins.unsqueeze(1) + self.directions.unsqueeze(1) * t.unsqueeze(-1)
        # index_select, not [rows]: ATen's advanced indexing is several times slower for a row gather on the CPU
        return self.origins.index_select(0, rows) + self.directions.index_select(0, rows) * t.unsqueeze(-1)

    def footprint_at(self, t: Tensor, rows: Tensor | None = None) -> Tensor | None:
        """Std of the pixel's footprint at the points :meth:`points` gives for the same arguments: ``(N, S, 1)``
        or ``(K, 1)``; None without a footprint."""
        if self.footprint is None:
            return None
        if rows is None:
            return (self.footprint[:, :1] + self.footprint[:, 1:] * t).unsqueeze(-1)
        fp = self.footprint.index_select(0, rows)
        return (fp[:, 0] + fp[:, 1] * t).unsqueeze(-1)


def pixel_directions(i: Tensor, j: Tensor, intrinsics: Tensor) -> Tensor:
    """Camera-space directions through pixel centres.

    Args:
        i, j: ``(N,)`` integer column and row indices.
        intrinsics: ``(N, 4)`` or ``(4,)`` ``[fx, fy, cx, cy]``.
    Returns:
        ``(N, 3)`` directions with z = -1 (OpenGL camera frame).
    """
    k = intrinsics.expand(i.shape[0], 4) if intrinsics.dim() == 1 else intrinsics
    x = (i.to(k.dtype) + 0.5 - k[:, 2]) / k[:, 0]
    y = -(j.to(k.dtype) + 0.5 - k[:, 3]) / k[:, 1]
    return torch.stack([x, y, -torch.ones_like(x)], dim=-1)


def rays_from_pixels(c2w: Tensor, intrinsics: Tensor, i: Tensor, j: Tensor, near: Tensor | float,
                     far: Tensor | float) -> RayBundle:
    """World-space rays for a batch of pixels, each from its own camera.

    Args:
        c2w: ``(N, 3|4, 4)`` camera-to-world of each pixel's camera (or ``(3|4, 4)`` shared).
        intrinsics: ``(N, 4)`` or ``(4,)`` ``[fx, fy, cx, cy]``.
        i, j: ``(N,)`` column and row indices.
        near, far: scalars or ``(N,)`` / ``(N, 1)`` tensors, in units of the ray parameter ``t``.
    """
    n = i.shape[0]
    dirs_cam = pixel_directions(i, j, intrinsics)
    if c2w.dim() == 2:
        c2w = c2w.unsqueeze(0).expand(n, *c2w.shape)
    rot = c2w[:, :3, :3].to(dirs_cam.dtype)
    directions = torch.einsum("nij,nj->ni", rot, dirs_cam)
    origins = c2w[:, :3, 3].to(dirs_cam.dtype).expand(n, 3).contiguous()
    viewdirs = directions / directions.norm(dim=-1, keepdim=True)
    near_t = torch.as_tensor(near, dtype=dirs_cam.dtype).reshape(-1, 1).expand(n, 1).contiguous()
    far_t = torch.as_tensor(far, dtype=dirs_cam.dtype).reshape(-1, 1).expand(n, 1).contiguous()
    # a pixel is 1/f wide at camera depth 1 (= t); a uniform square of side w has std w / sqrt(12) per axis
    k = intrinsics.expand(n, 4) if intrinsics.dim() == 1 else intrinsics
    slope = 1.0 / (torch.sqrt(k[:, 0] * k[:, 1]) * math.sqrt(12.0))
    footprint = torch.stack([torch.zeros_like(slope), slope], dim=-1).to(dirs_cam.dtype)
    return RayBundle(origins, directions, viewdirs, near_t, far_t, footprint=footprint)


def image_rays(c2w: Tensor, intrinsics: Intrinsics, near: float, far: float) -> RayBundle:
    """Rays for every pixel of one image, row-major: ray ``j * width + i`` goes through pixel ``(i, j)``."""
    jj, ii = torch.meshgrid(torch.arange(intrinsics.height), torch.arange(intrinsics.width), indexing="ij")
    return rays_from_pixels(c2w.float(), intrinsics.as_tensor(), ii.reshape(-1), jj.reshape(-1), near, far)


def focal_from_fov(width: int, camera_angle_x: float) -> float:
    """Focal length in pixels from a horizontal field of view in radians."""
    return 0.5 * width / math.tan(0.5 * camera_angle_x)


def sphere_near_far(rays: RayBundle, radius: float) -> RayBundle:
    """Clip each ray's [near, far] to where it crosses the sphere of ``radius`` around the origin.

    In a bounded scene a ray that misses the sphere gets ``far = near`` (nothing to sample: it shows the
    background); in an unbounded one it keeps its near/far. ``t`` is in units of the (unnormalised) direction."""
    o, d = rays.origins, rays.directions
    a = (d * d).sum(-1, keepdim=True)
    b = 2.0 * (o * d).sum(-1, keepdim=True)
    c = (o * o).sum(-1, keepdim=True) - radius**2
    disc = b * b - 4.0 * a * c
    hit = disc > 0
    root = torch.sqrt(disc.clamp(min=0.0))
    t0, t1 = (-b - root) / (2.0 * a), (-b + root) / (2.0 * a)
    near = torch.where(hit, torch.maximum(t0, rays.near), rays.near)
    crossed = hit & (t1 > near)
    far = torch.where(crossed, torch.minimum(t1, rays.far), rays.far if rays.unbounded else near)
    return rays.with_near_far(near, torch.maximum(far, near))


def ray_box(rays: RayBundle, bound: float) -> tuple[Tensor, Tensor]:
    """Ray parameters ``(R, 1)`` where each ray enters and leaves ``[-bound, bound]^3``, clipped to near/far;
    enter >= leave for rays that miss."""
    inv = 1.0 / torch.where(rays.directions.abs() < 1e-9, torch.full_like(rays.directions, 1e-9), rays.directions)
    t_a = (-bound - rays.origins) * inv
    t_b = (bound - rays.origins) * inv
    t_enter = torch.minimum(t_a, t_b).amax(-1, keepdim=True)
    t_leave = torch.maximum(t_a, t_b).amin(-1, keepdim=True)
    return torch.maximum(t_enter, rays.near), torch.minimum(t_leave, rays.far)


def box_near_far(rays: RayBundle, bound: float) -> RayBundle:
    """Clip each ray's [near, far] to the box ``[-bound, bound]^3``; a ray that misses it gets ``far = near``
    (no length to sample: it shows the background)."""
    near, far = ray_box(rays, bound)
    return rays.with_near_far(near, torch.maximum(far, near))


def ndc_rays(rays: RayBundle, focal: float, width: int, height: int, near_plane: float = 1.0) -> RayBundle:
    """Map rays of a forward-facing camera to normalised device coordinates (NeRF's LLFF setting).

    Origins are first moved to the plane ``z = -near_plane``; in NDC the whole frustum beyond it maps to
    ``z in [-1, 1]`` and the returned rays span ``t in [0, 1]`` (near = 0, far = 1).
    Valid for poses in the frame where cameras look roughly down -z (after LLFF recentring).
    """
    o, d = rays.origins, rays.directions
    t = -(near_plane + o[:, 2]) / d[:, 2]
    o = o + t.unsqueeze(-1) * d
    ox, oy, oz = o.unbind(-1)
    dx, dy, dz = d.unbind(-1)
    ax, ay = -2.0 * focal / width, -2.0 * focal / height
    o_ndc = torch.stack([ax * ox / oz, ay * oy / oz, 1.0 + 2.0 * near_plane / oz], dim=-1)
    d_ndc = torch.stack([ax * (dx / dz - ox / oz), ay * (dy / dz - oy / oz), -2.0 * near_plane / oz], dim=-1)
    n = o.shape[0]
    # NDC maps the frustum to a cube: a pixel is 2/width x 2/height across at every depth
    side = 2.0 / math.sqrt(width * height) / math.sqrt(12.0)
    footprint = torch.tensor([side, 0.0], dtype=o.dtype, device=o.device).expand(n, 2)
    return RayBundle(o_ndc, d_ndc, rays.viewdirs, torch.zeros(n, 1, dtype=o.dtype, device=o.device),
                     torch.ones(n, 1, dtype=o.dtype, device=o.device), unbounded=True, footprint=footprint)
