"""NeRF: density fields (a coarse and, with a two-pass sampler, a fine one) under the volume renderer."""
from __future__ import annotations

from torch import Tensor, nn

from nerfexp.cameras import RayBundle
from nerfexp.fields.base import FieldOutputs
from nerfexp.fields.linear_relu import bucket_index
from nerfexp.pipelines.base import Pipeline
from nerfexp.samplers.base import GeometryFn, RaySamples, scatter_to_grid
from nerfexp.samplers.front_to_back import query_front_to_back


class NeRFPipeline(Pipeline):
    """Density fields: pass 0 queries ``coarse_field``, pass 1 (when the sampler has it) ``fine_field``.

    Args:
        pos_encoder, dir_encoder: encoders with an ``out_dim``.
        coarse_field: a :class:`nerfexp.fields.base.DensityField` queried in the first pass (and by samplers that
            read the density, e.g. the occupancy grid).
        fine_field: the second pass's field (None with a one-pass sampler).
        sampler: a :class:`nerfexp.samplers.base.Sampler`.
        renderer: a :class:`nerfexp.renderers.base.Renderer` for densities.
    """

    geometry = "density"

    def __init__(self, pos_encoder: nn.Module, dir_encoder: nn.Module, coarse_field: nn.Module,
                 fine_field: nn.Module | None, sampler, renderer):
        super().__init__(pos_encoder, dir_encoder, sampler, renderer)
        self.coarse_field, self.fine_field = coarse_field, fine_field

    def field_for_pass(self, k: int) -> nn.Module:
        return self.coarse_field if k == 0 else self.final_field()

    def final_field(self) -> nn.Module:
        """The field whose colours and densities are the output: the fine one, the coarse one without it."""
        return self.fine_field if self.fine_field is not None else self.coarse_field

    def density_fn(self, field: nn.Module) -> GeometryFn:
        """World points ``(..., 3)`` (and their pixel footprints) -> density ``(...)`` of ``field``."""
        return lambda pts, footprint=None: field.density(self.encode_points(pts, footprint))

    def geometry_fn(self) -> GeometryFn:
        return self.density_fn(self.coarse_field)

    def mesh_density_fn(self) -> GeometryFn:
        return self.density_fn(self.final_field())

    def encode(self, rays: RayBundle, t: Tensor, rows: Tensor | None = None) -> Tensor:
        """Encoded positions of :meth:`RayBundle.points` ``(t, rows)``, with the pixel footprint there."""
        return self.encode_points(rays.points(t, rows), rays.footprint_at(t, rows))

    def encode_points(self, pts: Tensor, footprint: Tensor | None) -> Tensor:
        """The position encoder at ``pts``; the footprint goes along only where there is one (points off any
        ray, for meshes or grids, are encoded as plain points by any ``(x) -> features`` module)."""
        return self.pos_encoder(pts) if footprint is None else self.pos_encoder(pts, footprint)

    def query(self, field: nn.Module, rays: RayBundle, samples: RaySamples, training: bool) -> FieldOutputs:
        """Colour and density at every sample, or only at ``samples.mask`` (zeros elsewhere)."""
        d_enc = self.dir_encoder(rays.viewdirs)
        noise = self.density_noise(training)
        if samples.mask is None:
            rgb, sigma = field(self.encode(rays, samples.t), d_enc, density_noise_std=noise)
            return FieldOutputs(rgb=rgb, density=sigma)
        if samples.early_stop_eps is not None:
            return self.query_front_to_back(field, rays, samples, d_enc, noise)
        rows, cols = samples.mask.nonzero(as_tuple=True)
        rgb_kept, sigma_kept = self.query_samples(field, rays, samples.t, rows, cols, d_enc, noise)
        shape = samples.t.shape
        rgb = scatter_to_grid(rgb_kept, rows, cols, shape)
        sigma = scatter_to_grid(sigma_kept, rows, cols, shape)
        return FieldOutputs(rgb=rgb, density=sigma)

    def query_samples(self, field: nn.Module, rays: RayBundle, t: Tensor, rows: Tensor, cols: Tensor, d_enc: Tensor,
                      noise: float) -> tuple[Tensor, Tensor]:
        """Colour ``(K, 3)`` and density ``(K,)`` at samples ``(rows, cols)`` of ``t``, each as a one-sample "ray" (so
        every field's ``(R, S, D)`` interface applies unchanged), gathered to a bucket size of rows (see
        :func:`nerfexp.fields.linear_relu.bucket_index`)."""
        n = len(rows)
        rows, cols = bucket_index(rows), bucket_index(cols)
        rgb, sigma = field(self.encode(rays, t[rows, cols], rows).unsqueeze(1), d_enc.index_select(0, rows),
                           density_noise_std=noise)
        return rgb[:n, 0], sigma[:n, 0]

    def query_front_to_back(self, field: nn.Module, rays: RayBundle, samples: RaySamples, d_enc: Tensor,
                            noise: float) -> FieldOutputs:
        """Query the marched ``samples`` front to back, stopping each ray where it turns opaque; ``samples``
        becomes the kept ones, packed to the front (see :mod:`nerfexp.samplers.front_to_back`)."""

        def at(rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
            return self.query_samples(field, rays, samples.t, rows, cols, d_enc, noise)

        kept, rgb, sigma = query_front_to_back(samples, at, samples.early_stop_eps, samples.alpha_threshold)
        # the caller's samples become the kept ones (the renderer composites those; the count is theirs)
        samples.t, samples.deltas, samples.mask, samples.early_stop_eps = kept.t, kept.deltas, kept.mask, None
        return FieldOutputs(rgb=rgb, density=sigma)

    def point_colors(self, pts: Tensor, view_dirs: Tensor) -> Tensor:
        """Colour ``(N, 3)`` of the fine field (coarse without one) at points ``(N, 3)`` seen along ``view_dirs``."""
        rgb, _ = self.final_field()(self.pos_encoder(pts).unsqueeze(1), self.dir_encoder(view_dirs))
        return rgb[:, 0]
