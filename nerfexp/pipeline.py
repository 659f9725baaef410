"""The rendering pipeline: rays -> sampler -> encoders + field -> renderer, with coarse and fine passes."""
from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from nerfexp.amp import autocast
from nerfexp.cameras import RayBundle
from nerfexp.config import ConfigError
from nerfexp.render import sample_deltas


class NeRFPipeline(nn.Module):
    """Coarse/fine NeRF: the sampler decides where to sample, the fields what is there, the renderer composites.

    Args:
        pos_encoder, dir_encoder: encoders with an ``out_dim``.
        coarse_field: field queried at the coarse samples.
        fine_field: field queried at the fine samples (None when the sampler has no fine pass).
        sampler: object with ``coarse(rays, training)`` and ``fine(rays, t, weights, training)``, or a ray marcher
            with ``march(rays, density_fn, training)`` (one pass; ``update(step, density_fn)`` for its state).
        renderer: callable compositing ``(rgbs, sigmas, t_vals, directions, background, training)``.
    """

    render_keys = ("rgb", "depth", "disp", "acc")  # what evaluation renders per pixel
    mesh_level = 25.0  # default density iso-level of mesh export (1/scene unit)
    amp_dtype: torch.dtype | None = None  # autocast dtype for rendering (trainer.amp), None = full precision

    def __init__(self, pos_encoder: nn.Module, dir_encoder: nn.Module, coarse_field: nn.Module,
                 fine_field: nn.Module | None, sampler, renderer):
        super().__init__()
        self.pos_encoder, self.dir_encoder = pos_encoder, dir_encoder
        self.coarse_field, self.fine_field = coarse_field, fine_field
        self.sampler, self.renderer = sampler, renderer

    def density_noise(self, training: bool) -> float:
        """Std of the noise the field adds to its raw density in training (``renderer.density_noise_std``)."""
        return getattr(self.renderer, "density_noise_std", 0.0) if training else 0.0

    def query(self, field: nn.Module, rays: RayBundle, t_vals: Tensor, d_enc: Tensor,
              training: bool = False) -> tuple[Tensor, Tensor]:
        """Field outputs at ``t_vals`` ``(R, S)``: rgb ``(R, S, 3)`` and sigma ``(R, S)``."""
        return field(self.pos_encoder(rays.points(t_vals)), d_enc, density_noise_std=self.density_noise(training))

    def composite(self, rgb: Tensor, sigma: Tensor, t_vals: Tensor, rays: RayBundle,
                  background: Tensor | None) -> dict[str, Tensor]:
        """Render samples at ``t_vals`` ``(R, S)`` of ``rays``; a bounded scene's rays end at their ``far``."""
        return self.renderer(rgb, sigma, t_vals, sample_deltas(t_vals, rays.directions, rays.far_or_none()),
                             background)

    def density_fn(self, field: nn.Module):
        """World points ``(..., 3)`` -> density ``(...)`` of ``field`` (for occupancy grids and meshes)."""
        return lambda pts: field.density(self.pos_encoder(pts))

    def point_colors(self, pts: Tensor, view_dirs: Tensor) -> Tensor:
        """Colour ``(N, 3)`` of the fine field (coarse without one) at points ``(N, 3)`` seen along ``view_dirs``."""
        field = self.fine_field if self.fine_field is not None else self.coarse_field
        rgb, _ = field(self.pos_encoder(pts).unsqueeze(1), self.dir_encoder(view_dirs))
        return rgb[:, 0]

    def update_state(self, step: int) -> None:
        """Per-training-step upkeep of stateful samplers (the occupancy grid)."""
        update = getattr(self.sampler, "update", None)
        if update is not None:
            update(step, self.density_fn(self.coarse_field))

    def forward(self, rays: RayBundle, background: Tensor | None, training: bool = False) -> dict[str, Tensor]:
        """Render rays. Returns the fine pass's ``rgb, depth, disp, acc`` and the coarse pass's as ``*_coarse``."""
        if hasattr(self.sampler, "march"):
            return self.forward_marched(rays, background, training)
        d_enc = self.dir_encoder(rays.viewdirs)
        t_coarse = self.sampler.coarse(rays, training)
        rgb, sigma = self.query(self.coarse_field, rays, t_coarse, d_enc, training)
        coarse = self.composite(rgb, sigma, t_coarse, rays, background)
        t_fine = self.sampler.fine(rays, t_coarse, coarse["weights"], training) if self.fine_field is not None else None
        if t_fine is None:
            return coarse
        rgb, sigma = self.query(self.fine_field, rays, t_fine, d_enc, training)
        fine = self.composite(rgb, sigma, t_fine, rays, background)
        fine.update({f"{k}_coarse": v for k, v in coarse.items()})
        return fine

    def forward_marched(self, rays: RayBundle, background: Tensor | None, training: bool) -> dict[str, Tensor]:
        """One pass with a ray-marching sampler: the field runs only on the samples the sampler kept. With a
        sample budget in training, outputs cover only the rays in ``out["ray_index"]``."""
        field = self.coarse_field
        samples = self.sampler.march(rays, self.density_fn(field), training)
        if samples.rays is not None:  # a sample budget kept only these rays
            rays = rays[samples.rays]
            if background is not None and background.dim() == 2:
                background = background[samples.rays]
        rows, cols = samples.mask.nonzero(as_tuple=True)
        pts = rays.points(samples.t[rows, cols], rows)
        # each kept sample as a one-sample "ray", so every field's (R, S, D) interface applies unchanged
        rgb_kept, sigma_kept = field(self.pos_encoder(pts).unsqueeze(1), self.dir_encoder(rays.viewdirs)[rows],
                                     density_noise_std=self.density_noise(training))
        shape = samples.t.shape
        rgb = torch.zeros(*shape, 3, dtype=rgb_kept.dtype, device=rgb_kept.device).index_put((rows, cols),
                                                                                              rgb_kept[:, 0])
        sigma = torch.zeros(shape, dtype=sigma_kept.dtype, device=sigma_kept.device).index_put((rows, cols),
                                                                                               sigma_kept[:, 0])
        out = self.renderer(rgb, sigma, samples.t, samples.deltas, background)
        if samples.rays is not None:
            out["ray_index"] = samples.rays
        return out

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


def build_pipeline(cfg: DictConfig) -> NeRFPipeline:
    """Build the pipeline from the ``encoder``, ``field``, ``sampler`` and ``renderer`` config groups; the
    renderer names its pipeline (``pipeline = "sdf"`` for NeuS, the density pipeline otherwise)."""
    pos_encoder = instantiate(cfg.encoder.position)
    dir_encoder = instantiate(cfg.encoder.direction)
    sampler = instantiate(cfg.sampler)
    renderer = instantiate(cfg.renderer)

    field_cfg = OmegaConf.create({k: v for k, v in cfg.field.items() if k != "coarse"})

    def make_field(overrides: DictConfig | None = None) -> nn.Module:
        fcfg = OmegaConf.merge(field_cfg, overrides) if overrides else field_cfg
        return instantiate(fcfg, pos_dim=pos_encoder.out_dim, dir_dim=dir_encoder.out_dim)

    if getattr(renderer, "pipeline", "density") == "sdf":
        from nerfexp.sdf_pipeline import SDFPipeline

        field = make_field()
        if not hasattr(field, "geometry_with_gradient"):
            raise ConfigError(f"renderer={type(renderer).__name__} needs an SDF field (field=sdf), got "
                              f"{type(field).__name__}")
        if not hasattr(sampler, "sample"):
            raise ConfigError(f"renderer={type(renderer).__name__} needs an SDF sampler (sampler=neus), got "
                              f"{type(sampler).__name__}")
        return SDFPipeline(pos_encoder, dir_encoder, field, sampler, renderer)

    has_fine = getattr(sampler, "n_importance", 0) > 0
    # field.coarse: overrides for the coarse network of a coarse + fine pair (NeRF's netwidth vs netwidth_fine)
    coarse = make_field(cfg.field.get("coarse") if has_fine else None)
    if hasattr(coarse, "geometry_with_gradient"):
        raise ConfigError("field=sdf renders with renderer=neus (it has no density for the volume renderer)")
    if not (hasattr(sampler, "coarse") or hasattr(sampler, "march")):
        raise ConfigError(f"sampler {type(sampler).__name__} is for SDF fields: use it with renderer=neus")
    fine = make_field() if has_fine else None
    return NeRFPipeline(pos_encoder, dir_encoder, coarse, fine, sampler, renderer)
