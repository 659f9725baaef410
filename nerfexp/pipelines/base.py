"""The pipeline every model shares: rays -> sampler -> encoders + field -> renderer, pass after pass.

Subclasses say only how a field is queried at samples (:meth:`Pipeline.query`) and what geometry the sampler may
read (:meth:`Pipeline.geometry_fn`); samplers and renderers are swapped through their one interface each
(:class:`nerfexp.samplers.base.Sampler`, :class:`nerfexp.renderers.base.Renderer`).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from nerfexp.cameras import RayBundle
from nerfexp.fields.base import FieldOutputs
from nerfexp.runtime.amp import autocast
from nerfexp.samplers.base import GeometryFn, RaySamples, RenderedPass


class Pipeline(nn.Module):
    """Renders rays with ``sampler.n_passes`` passes; the field of pass ``k`` is :meth:`field_for_pass`.

    Outputs of the last pass keep their names (``rgb``, ``depth``, ``disp``, ``acc``, ``weights``, ``t``, ...);
    with two passes the first pass's come as ``*_coarse``. When the sampler kept only some rays (a sample budget),
    ``ray_index`` says which.
    """

    geometry = "density"  # what the sampler and renderer read: "density" or "sdf"
    render_keys: tuple[str, ...] = ("rgb", "depth", "disp", "acc")  # what evaluation renders per pixel
    mesh_level = 25.0  # default iso-level of mesh export
    amp_dtype: torch.dtype | None = None  # autocast dtype for rendering (trainer.amp), None = full precision

    def __init__(self, pos_encoder: nn.Module, dir_encoder: nn.Module, sampler, renderer):
        super().__init__()
        self.pos_encoder, self.dir_encoder = pos_encoder, dir_encoder
        # rays keep their pixel footprints only for an encoder that reads them (the hash grid does not): nothing on
        # the hot path computes footprints for nothing
        self.uses_footprint = bool(getattr(pos_encoder, "uses_footprint", False))
        self.sampler, self.renderer = sampler, renderer
        # throughput counters since construction: rays rendered, and samples the field was queried at and the
        # renderer composited (every pass; a sampler's own density pass and the few samples a front-to-back query
        # looks at behind opaque matter are not counted), kept as a tensor sum so counting never waits for a GPU
        self.rays_rendered, self.points_queried = 0, 0

    # -- what a model defines --------------------------------------------------------------------------------
    def field_for_pass(self, k: int) -> nn.Module:
        raise NotImplementedError

    def geometry_fn(self) -> GeometryFn:
        """World points ``(..., 3)`` -> the geometry samplers read (density or SDF) ``(...)``."""
        raise NotImplementedError

    def query(self, field: nn.Module, rays: RayBundle, samples: RaySamples, training: bool) -> FieldOutputs:
        """``field`` at ``samples`` of ``rays``."""
        raise NotImplementedError

    def mesh_density_fn(self) -> GeometryFn:
        """World points ``(..., 3)`` -> what meshes are extracted from (solid where above :attr:`mesh_level`)."""
        raise NotImplementedError

    def point_colors(self, pts: Tensor, view_dirs: Tensor) -> Tensor:
        """Colour ``(N, 3)`` at points ``(N, 3)`` seen along unit ``view_dirs`` (mesh vertex colours)."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------------------
    def density_noise(self, training: bool) -> float:
        """Std of the noise a density field adds to its raw output in training (``renderer.density_noise_std``)."""
        return self.renderer.density_noise_std if training else 0.0

    def update_state(self, step: int) -> bool:
        """Per-training-step upkeep: the sampler's state (an occupancy grid) and the renderer's schedules (a
        function of the step alone). Returns whether the sampler's state changed."""
        changed = self.sampler.update(step, self.geometry_fn())
        self.renderer.update(step)
        return bool(changed)

    def state(self) -> dict[str, float]:
        """Sampler and renderer numbers worth a curve (samples per ray, occupancy, NeuS sharpness)."""
        return {**self.sampler.state(), **self.renderer.state()}

    def forward(self, rays: RayBundle, background: Tensor | None, training: bool = False,
                trace: list[RenderedPass] | None = None) -> dict[str, Tensor]:
        """Render ``R`` rays; ``background`` ``(3,)``, ``(R, 3)`` or None. ``trace``, when given, receives each
        pass's samples and weights (plots of where samples go)."""
        geometry = self.geometry_fn()
        if not self.uses_footprint and rays.footprint is not None:
            rays = dataclasses.replace(rays, footprint=None)
        self.rays_rendered += len(rays)
        previous: RenderedPass | None = None
        ray_index: Tensor | None = None
        passes: list[dict[str, Tensor]] = []
        for k in range(self.sampler.n_passes):
            samples = self.sampler.sample(rays, training, geometry, previous)
            if samples.ray_index is not None:  # a sample budget kept only these rays
                rays = rays[samples.ray_index]
                if background is not None and background.dim() == 2:
                    background = background[samples.ray_index]
                ray_index = samples.ray_index if ray_index is None else ray_index[samples.ray_index]
                samples.ray_index = None
            field_out = self.query(self.field_for_pass(k), rays, samples, training)  # may narrow samples.mask
            self.points_queried = self.points_queried + (samples.mask.sum() if samples.mask is not None
                                                         else samples.t.numel())
            out = self.renderer(field_out, samples, rays, background, training)
            out["t"] = samples.t
            previous = RenderedPass(samples, out["weights"])
            if trace is not None:
                trace.append(previous)
            passes.append(out)
        result = passes[-1]
        if len(passes) > 1:
            result.update({f"{key}_coarse": value for key, value in passes[0].items() if key != "regularizer"})
        if ray_index is not None:
            result["ray_index"] = ray_index
        return result

    @torch.no_grad()  # not inference_mode: SDF pipelines take autograd normals in evaluation too
    def render_rays_chunked(self, rays: RayBundle, background: Tensor | None, chunk: int,
                            keys: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        """Render any number of rays in chunks of ``chunk`` rays, without gradients (evaluation); ``keys``
        default to :attr:`render_keys`."""
        keys = self.render_keys if keys is None else keys
        outs: dict[str, list[Tensor]] = {k: [] for k in keys}
        for start in range(0, len(rays), chunk):
            with autocast(rays.origins.device, self.amp_dtype):
                out = self(rays[start:start + chunk], background, training=False)
            for k in keys:
                outs[k].append(out[k].float())
        return {k: torch.cat(v) for k, v in outs.items()}
