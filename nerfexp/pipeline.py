"""The rendering pipeline: rays -> sampler -> encoders + field -> renderer, with coarse and fine passes."""
from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from nerfexp.cameras import RayBundle


class NeRFPipeline(nn.Module):
    """Coarse/fine NeRF: the sampler decides where to sample, the fields what is there, the renderer composites.

    Args:
        pos_encoder, dir_encoder: encoders with an ``out_dim``.
        coarse_field: field queried at the coarse samples.
        fine_field: field queried at the fine samples (None when the sampler has no fine pass).
        sampler: object with ``coarse(rays, training)`` and ``fine(rays, t, weights, training)``.
        renderer: callable compositing ``(rgbs, sigmas, t_vals, directions, background, training)``.
    """

    def __init__(self, pos_encoder: nn.Module, dir_encoder: nn.Module, coarse_field: nn.Module,
                 fine_field: nn.Module | None, sampler, renderer):
        super().__init__()
        self.pos_encoder, self.dir_encoder = pos_encoder, dir_encoder
        self.coarse_field, self.fine_field = coarse_field, fine_field
        self.sampler, self.renderer = sampler, renderer

    def query(self, field: nn.Module, rays: RayBundle, t_vals: Tensor, d_enc: Tensor) -> tuple[Tensor, Tensor]:
        """Field outputs at ``t_vals`` ``(R, S)``: rgb ``(R, S, 3)`` and sigma ``(R, S)``."""
        pts = rays.origins.unsqueeze(1) + rays.directions.unsqueeze(1) * t_vals.unsqueeze(-1)
        return field(self.pos_encoder(pts), d_enc)

    def forward(self, rays: RayBundle, background: Tensor | None, training: bool = False) -> dict[str, Tensor]:
        """Render rays. Returns the fine pass's ``rgb, depth, disp, acc`` and the coarse pass's as ``*_coarse``."""
        d_enc = self.dir_encoder(rays.viewdirs)
        t_coarse = self.sampler.coarse(rays, training)
        rgb, sigma = self.query(self.coarse_field, rays, t_coarse, d_enc)
        coarse = self.renderer(rgb, sigma, t_coarse, rays.directions, background, training)
        t_fine = self.sampler.fine(rays, t_coarse, coarse["weights"], training) if self.fine_field is not None else None
        if t_fine is None:
            return coarse
        rgb, sigma = self.query(self.fine_field, rays, t_fine, d_enc)
        fine = self.renderer(rgb, sigma, t_fine, rays.directions, background, training)
        fine.update({f"{k}_coarse": v for k, v in coarse.items()})
        return fine

    @torch.inference_mode()
    def render_rays_chunked(self, rays: RayBundle, background: Tensor | None, chunk: int,
                            keys: tuple[str, ...] = ("rgb", "depth", "disp", "acc")) -> dict[str, Tensor]:
        """Render any number of rays in chunks of ``chunk`` rays, without gradients (evaluation)."""
        outs: dict[str, list[Tensor]] = {k: [] for k in keys}
        for start in range(0, len(rays), chunk):
            out = self(rays[start:start + chunk], background, training=False)
            for k in keys:
                outs[k].append(out[k])
        return {k: torch.cat(v) for k, v in outs.items()}


def build_pipeline(cfg: DictConfig) -> NeRFPipeline:
    """Build the pipeline from the ``encoder``, ``field``, ``sampler`` and ``renderer`` config groups."""
    pos_encoder = instantiate(cfg.encoder.position)
    dir_encoder = instantiate(cfg.encoder.direction)
    sampler = instantiate(cfg.sampler)
    renderer = instantiate(cfg.renderer)

    def make_field() -> nn.Module:
        return instantiate(cfg.field, pos_dim=pos_encoder.out_dim, dir_dim=dir_encoder.out_dim)

    coarse = make_field()
    fine = make_field() if sampler.n_importance > 0 else None
    return NeRFPipeline(pos_encoder, dir_encoder, coarse, fine, sampler, renderer)
