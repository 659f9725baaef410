"""The SDF rendering pipeline: rays -> up-sampling on the SDF -> SDF field (+ normals) -> NeuS renderer."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nerfexp.cameras import RayBundle, sphere_near_far
from nerfexp.pipeline import NeRFPipeline
from nerfexp.render_neus import eikonal_loss


class SDFPipeline(NeRFPipeline):
    """NeuS: one SDF field, sampled where the SDF crosses zero, composited with the unbiased SDF opacity.

    Rays are clipped to the renderer's sphere; the field is queried at section midpoints.
    The training output carries ``regularizer`` (the eikonal term times its weight), which the trainer adds to
    the loss, and every output carries ``normal`` for normal maps.

    Args:
        pos_encoder, dir_encoder: encoders with an ``out_dim``.
        field: an :class:`nerfexp.fields.sdf.SDFField`.
        sampler: object with ``sample(rays, sdf_fn, radius, training) -> t (R, S)``.
        renderer: a :class:`nerfexp.render_neus.NeuSRenderer`.
    """

    render_keys = ("rgb", "depth", "disp", "acc", "normal")
    mesh_level = 0.0  # the zero level set

    def __init__(self, pos_encoder: nn.Module, dir_encoder: nn.Module, field: nn.Module, sampler, renderer):
        super().__init__(pos_encoder, dir_encoder, field, None, sampler, renderer)

    def sdf_fn(self, pts: Tensor) -> Tensor:
        """SDF at world points ``(..., 3)``."""
        return self.coarse_field.sdf(pts, self.pos_encoder)

    def density_fn(self, field: nn.Module):
        """``-sdf``: positive inside, so marching cubes at level 0 finds the surface with the density's
        orientation (used by mesh export). Outside the renderer's sphere, where no ray ever trained the SDF,
        it is negative: nothing is solid there."""
        radius = self.renderer.radius
        return lambda pts: torch.minimum(-field.sdf(pts, self.pos_encoder), radius - pts.norm(dim=-1))

    def point_colors(self, pts: Tensor, view_dirs: Tensor) -> Tensor:
        """Colour ``(N, 3)`` at points ``(N, 3)`` seen along unit ``view_dirs`` (mesh vertex colours)."""
        field = self.coarse_field
        sdf, feat, grad = field.geometry_with_gradient(pts, self.pos_encoder, training=False)
        return field.color(pts, torch.nn.functional.normalize(grad, dim=-1), self.dir_encoder(view_dirs), feat)

    def update_state(self, step: int) -> None:
        self.renderer.update(step)

    def forward(self, rays: RayBundle, background: Tensor | None, training: bool = False) -> dict[str, Tensor]:
        """Render rays: ``rgb, depth, disp, acc, normal, weights`` (+ ``regularizer`` in training)."""
        rays = sphere_near_far(rays, self.renderer.radius)
        t = self.sampler.sample(rays, self.sdf_fn, self.renderer.radius, training)
        # sections between samples; the last one ends where the ray leaves the sphere
        dists = torch.cat([t[:, 1:] - t[:, :-1], (rays.far - t[:, -1:]).clamp(min=0.0)], dim=-1)
        t_mid = t + 0.5 * dists
        pts = rays.points(t_mid)
        field = self.coarse_field
        sdf, feat, grad = field.geometry_with_gradient(pts, self.pos_encoder, training)
        d_enc = self.dir_encoder(rays.viewdirs).unsqueeze(1).expand(*pts.shape[:-1], -1)
        rgb = field.color(pts, torch.nn.functional.normalize(grad, dim=-1), d_enc, feat)
        out = self.renderer(rgb, sdf, grad, t_mid, dists, rays.directions, background, training)
        if training:
            inside = (pts.norm(dim=-1) < self.renderer.radius) & (dists > 0)
            out["regularizer"] = self.renderer.eikonal_weight * eikonal_loss(grad, inside)
        return out
