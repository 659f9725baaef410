"""Configs of run dirs written by earlier versions, brought to today's names so those runs still evaluate.

A run dir's ``config.yaml`` is the resolved config of its day. What changed since, and how it maps:

- module paths of ``_target_`` (renderers, loggers and the NeuS sampler moved into packages);
- ``dataset.scene_box`` (blender / demo) became ``dataset.bound`` + ``dataset.clip_rays``; every dataset names its
  extent ``dataset.bound`` (before: ``encoder.position.bound``, ``sampler.bound``, ``renderer.radius``);
- field sizes share one vocabulary: ``width``/``depth`` (+ ``color_width``/``color_depth``);
- the occupancy sampler's ``n_samples`` became ``diagonal_steps``; one-pass samplers lost ``n_importance``;
- ``optim`` names its torch class (``_target_``, ``_partial_``);
- keys added since take the value that does what the run did: rendering-only keys today's defaults
  (``ADDED_KEYS``: older runs render as fast as new ones); a frequency encoding of positions ``integrated=false``.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict

MOVED_TARGETS = {
    "nerfexp.render.VolumeRenderer": "nerfexp.renderers.volume.VolumeRenderer",
    "nerfexp.render_neus.NeuSRenderer": "nerfexp.renderers.neus.NeuSRenderer",
    "nerfexp.samplers.neus_upsample.NeuSUpSampler": "nerfexp.samplers.neus.NeuSUpSampler",
    "nerfexp.loggers.NoLogger": "nerfexp.loggers.local.NoLogger",
    "nerfexp.loggers.CSVLogger": "nerfexp.loggers.local.CSVLogger",
    "nerfexp.wandb_logger.WandbLogger": "nerfexp.loggers.wandb_logger.WandbLogger",
}
RENAMED_KEYS = {  # per _target_ (today's name): old key -> new key
    "nerfexp.fields.grid.GridField": {"hidden": "width", "density_layers": "depth", "color_layers": "color_depth"},
    "nerfexp.fields.sdf.SDFField": {"hidden": "width", "n_layers": "depth", "color_hidden": "color_width",
                                    "color_layers": "color_depth"},
    "nerfexp.samplers.occupancy.OccupancySampler": {"n_samples": "diagonal_steps"},
}
DROPPED_KEYS = {
    "nerfexp.samplers.occupancy.OccupancySampler": ("n_importance",),
    "nerfexp.samplers.stratified.StratifiedSampler": ("n_importance",),
    "nerfexp.renderers.neus.NeuSRenderer": ("radius",),
}
ADDED_KEYS = {  # per _target_: keys that did not exist yet -> the value old runs take: for these rendering-only
    # keys today's default (older runs render as fast as new ones; older code queried every NeuS section, and
    # render_min_weight 1e-3 renders dtu_scan24 60.6 dB from 1e-5's picture, which matched every section's)
    "nerfexp.samplers.occupancy.OccupancySampler": {"front_to_back": True},
    "nerfexp.renderers.neus.NeuSRenderer": {"render_min_weight": 1e-3},
}
FREQUENCY_ENCODER = "nerfexp.encoders.frequency.FrequencyEncoder"
DEFAULT_BOUND = {"nerfexp.data.dtu.DTUDataset": 1.0, "nerfexp.data.llff.LLFFDataset": 1.0}


def upgrade_run_config(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` with today's targets and keys (a no-op for configs written today)."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(cfg):
        _upgrade_bound(cfg)
        for group in ("dataset", "encoder", "field", "sampler", "renderer", "logger"):
            node = cfg.get(group)
            if isinstance(node, DictConfig):
                _upgrade_node(node)
        position = OmegaConf.select(cfg, "encoder.position")
        if isinstance(position, DictConfig) and position.get("_target_") == FREQUENCY_ENCODER:
            position.setdefault("integrated", False)
        optim = cfg.get("optim")
        if isinstance(optim, DictConfig) and "_target_" not in optim:
            optim["_target_"], optim["_partial_"] = "torch.optim.Adam", True
    return cfg


def _upgrade_node(node: DictConfig) -> None:
    target = node.get("_target_")
    if isinstance(target, str):
        target = node["_target_"] = MOVED_TARGETS.get(target, target)
        for old, new in RENAMED_KEYS.get(target, {}).items():
            if old in node and new not in node:
                node[new] = node.pop(old)
        for key in DROPPED_KEYS.get(target, ()):
            node.pop(key, None)
        for key, value in ADDED_KEYS.get(target, {}).items():
            node.setdefault(key, value)
    for key in list(node.keys()):
        child = node.get(key)
        if isinstance(child, DictConfig):
            _upgrade_node(child)


def _upgrade_bound(cfg: DictConfig) -> None:
    """``dataset.bound`` from what older configs said of the scene's extent."""
    dataset = cfg.get("dataset")
    if not isinstance(dataset, DictConfig) or "bound" in dataset:
        return
    scene_box = dataset.pop("scene_box", None)
    target = str(dataset.get("_target_", ""))
    if target.endswith(("BlenderDataset", "DemoDataset")):
        dataset["clip_rays"] = scene_box is not None
    renderer = cfg.get("renderer") or {}
    position = (cfg.get("encoder") or {}).get("position") or {}
    sampler = cfg.get("sampler") or {}
    bound = (scene_box or renderer.get("radius") or position.get("bound") or sampler.get("bound")
             or DEFAULT_BOUND.get(target, 1.5))
    dataset["bound"] = float(bound)
    if "NeuSUpSampler" in str(sampler.get("_target_", "")) and "bound" not in sampler:
        sampler["bound"] = float(bound)
