"""NeuS: one SDF field, sampled where the SDF crosses zero, composited with the unbiased SDF opacity."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nerfexp.cameras import RayBundle
from nerfexp.fields.base import FieldOutputs
from nerfexp.pipelines.base import Pipeline
from nerfexp.samplers.base import GeometryFn, RaySamples, scatter_to_grid


class SDFPipeline(Pipeline):
    """One :class:`nerfexp.fields.base.SDFField` for every pass; samplers read its SDF, the renderer its SDF and
    gradient (normals: every output carries ``normal``).

    Args:
        pos_encoder, dir_encoder: encoders with an ``out_dim``.
        field: the SDF field.
        sampler: a :class:`nerfexp.samplers.base.Sampler` (one that reads an SDF, or none).
        renderer: a :class:`nerfexp.renderers.base.Renderer` for SDFs.
        bound: radius of the sphere the SDF lives in (``dataset.bound``): outside it nothing is solid.
    """

    geometry = "sdf"
    render_keys = ("rgb", "depth", "disp", "acc", "normal")
    mesh_level = 0.0  # the zero level set

    def __init__(self, pos_encoder: nn.Module, dir_encoder: nn.Module, field: nn.Module, sampler, renderer,
                 bound: float = 1.0):
        super().__init__(pos_encoder, dir_encoder, sampler, renderer)
        self.coarse_field = field  # the name checkpoints use for a pipeline's first field
        self.bound = float(bound)

    def field_for_pass(self, k: int) -> nn.Module:
        return self.coarse_field

    def sdf_fn(self, pts: Tensor, footprint: Tensor | None = None) -> Tensor:
        """SDF at world points ``(..., 3)`` (an SDF is a function of points: pixel footprints do not enter)."""
        return self.coarse_field.sdf(pts, self.pos_encoder)

    def geometry_fn(self) -> GeometryFn:
        return self.sdf_fn

    def density_fn(self, field: nn.Module) -> GeometryFn:
        """``-sdf``: positive inside, so marching cubes at level 0 finds the surface with the density's
        orientation (used by mesh export). Outside the sphere, where no ray ever trained the SDF, it is negative:
        nothing is solid there."""
        return lambda pts, footprint=None: torch.minimum(-field.sdf(pts, self.pos_encoder),
                                                         self.bound - pts.norm(dim=-1))

    def mesh_density_fn(self) -> GeometryFn:
        return self.density_fn(self.coarse_field)

    def query(self, field: nn.Module, rays: RayBundle, samples: RaySamples, training: bool) -> FieldOutputs:
        """SDF, gradient and colour at the samples: every sample in training; when rendering, only the sections
        the renderer can tell light comes from (:meth:`NeuSRenderer.visible_sections`; the others get no length,
        so they composite to nothing, and ``samples.mask``)."""
        visible = None if training or not hasattr(self.renderer, "visible_sections") else \
            self.renderer.visible_sections(samples)
        if visible is not None:
            return self.query_visible(field, rays, samples, visible)
        pts = rays.points(samples.t)
        sdf, feat, grad = field.geometry_with_gradient(pts, self.pos_encoder, training)
        d_enc = self.dir_encoder(rays.viewdirs).unsqueeze(1).expand(*pts.shape[:-1], -1)
        rgb = field.color(pts, torch.nn.functional.normalize(grad, dim=-1), d_enc, feat)
        return FieldOutputs(rgb=rgb, sdf=sdf, gradient=grad)

    def query_visible(self, field: nn.Module, rays: RayBundle, samples: RaySamples, visible: Tensor) -> FieldOutputs:
        """The field at the ``visible`` ``(R, S)`` samples only; ``samples`` loses the others (zero length,
        ``mask`` false), and their outputs are zero."""
        rows, cols = visible.nonzero(as_tuple=True)
        pts = rays.points(samples.t[rows, cols], rows)
        sdf, feat, grad = field.geometry_with_gradient(pts, self.pos_encoder, False)
        d_enc = self.dir_encoder(rays.viewdirs).index_select(0, rows)
        rgb = field.color(pts, torch.nn.functional.normalize(grad, dim=-1), d_enc, feat)
        samples.mask, samples.deltas = visible, samples.deltas * visible
        shape = visible.shape
        return FieldOutputs(rgb=scatter_to_grid(rgb, rows, cols, shape), sdf=scatter_to_grid(sdf, rows, cols, shape),
                            gradient=scatter_to_grid(grad, rows, cols, shape))

    def point_colors(self, pts: Tensor, view_dirs: Tensor) -> Tensor:
        """Colour ``(N, 3)`` at points ``(N, 3)`` seen along unit ``view_dirs`` (mesh vertex colours)."""
        field = self.coarse_field
        sdf, feat, grad = field.geometry_with_gradient(pts, self.pos_encoder, training=False)
        return field.color(pts, torch.nn.functional.normalize(grad, dim=-1), self.dir_encoder(view_dirs), feat)
