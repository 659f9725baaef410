"""Building a pipeline from the config groups; the renderer's geometry picks the pipeline."""
from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nerfexp.config import ConfigError
from nerfexp.pipelines.base import Pipeline
from nerfexp.pipelines.nerf import NeRFPipeline
from nerfexp.pipelines.sdf import SDFPipeline

PIPELINES: dict[str, type[Pipeline]] = {"density": NeRFPipeline, "sdf": SDFPipeline}
MODEL_FOR = {"density": "model=nerf", "sdf": "model=neus"}
WHAT = {"density": "a density", "sdf": "an SDF"}


def build_pipeline(cfg: DictConfig) -> Pipeline:
    """The pipeline of the ``encoder``, ``field``, ``sampler`` and ``renderer`` groups. Field, sampler and renderer
    must read the same geometry (density or SDF); ``model=nerf|neus`` picks a matching set."""
    pos_encoder = instantiate(cfg.encoder.position)
    dir_encoder = instantiate(cfg.encoder.direction)
    sampler = instantiate(cfg.sampler)
    renderer = instantiate(cfg.renderer)
    geometry = renderer.geometry
    field_cfg = OmegaConf.create({k: v for k, v in cfg.field.items() if k != "coarse"})

    def make_field(overrides: DictConfig | None = None) -> nn.Module:
        fcfg = OmegaConf.merge(field_cfg, overrides) if overrides else field_cfg
        return instantiate(fcfg, pos_dim=pos_encoder.out_dim, dir_dim=dir_encoder.out_dim)

    two_pass = sampler.n_passes > 1
    # field.coarse: overrides for the coarse network of a coarse + fine pair (NeRF's netwidth vs netwidth_fine)
    field = make_field(cfg.field.get("coarse") if two_pass and geometry == "density" else None)
    for key, kind in (("field", field.geometry), ("sampler", sampler.geometry)):
        if kind is not None and kind != geometry:
            raise ConfigError(f"{key}={_option(cfg, key)} reads {WHAT[kind]} but renderer={_option(cfg, 'renderer')} "
                              f"renders {WHAT[geometry]}: choose the model as a whole with {MODEL_FOR[kind]} or "
                              f"{MODEL_FOR[geometry]}")
    if geometry == "sdf":
        if cfg.encoder.position.get("integrated", False):
            raise ConfigError("encoder.position.integrated=true: the SDF pipeline encodes points without their "
                              "pixel's footprint (it takes normals from the SDF at points); use it with model=nerf")
        return SDFPipeline(pos_encoder, dir_encoder, field, sampler, renderer, bound=cfg.dataset.bound)
    return NeRFPipeline(pos_encoder, dir_encoder, field, make_field() if two_pass else None, sampler, renderer)


def _option(cfg: DictConfig, group: str) -> str:
    """The config file's name of a group's choice, from its ``_target_`` (e.g. ``...samplers.occupancy.X``)."""
    target = str(cfg[group].get("_target_", "?"))
    return target.rsplit(".", 2)[-2] if target.count(".") >= 2 else target
