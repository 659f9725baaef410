"""Start-up checks of the composed config: every value a user can get wrong stops the run before any work,
with one line naming the key, the value and what is allowed."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


class ConfigError(ValueError):
    """A config value is not allowed; the message names the key."""


def _get(cfg: DictConfig, key: str):
    node = cfg
    for part in key.split("."):
        if node is None or part not in node:
            return None
        node = node[part]
    return node


def _positive(cfg: DictConfig, key: str, allow_zero: bool = False) -> None:
    value = _get(cfg, key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r}: must be a number")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}={value!r}: must be {'>= 0' if allow_zero else '> 0'}")


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first value that is not allowed."""
    if "sweeps" in cfg:  # `+sweeps=<name>` became a plain value: the sweeps/ config group was not found
        raise ConfigError(f"+sweeps={cfg.sweeps}: no study preset group on the config search path; it is added by "
                          "hydra_plugins/nerfexp_searchpath (run from the repository or `pip install -e .`; "
                          "check `python train.py --info searchpath`)")
    for key in ("sampler.n_samples", "trainer.batch_rays", "optim.lr", "optim.lr_final", "eval.chunk",
                "dataset.downscale", "trainer.max_steps", "field.width", "field.depth", "trainer.log_every",
                "trainer.nan_patience", "renderer.radius"):
        _positive(cfg, key)
    for key in ("sampler.n_importance", "trainer.val_every", "trainer.ckpt_every", "trainer.precrop_steps",
                "trainer.warmup_steps", "trainer.n_restarts", "renderer.density_noise_std",
                "trainer.coarse_loss_weight", "trainer.mask_loss_weight", "renderer.eikonal_weight"):
        _positive(cfg, key, allow_zero=True)
    max_time = _get(cfg, "trainer.max_time_s")
    if max_time is not None:
        _positive(cfg, "trainer.max_time_s")
    near, far = _get(cfg, "dataset.near"), _get(cfg, "dataset.far")
    if near is not None and far is not None and not near < far:
        raise ConfigError(f"dataset.near={near} and dataset.far={far}: near must be < far")
    root = _get(cfg, "dataset.root")
    if root is not None and not Path(str(root)).expanduser().is_dir():
        raise ConfigError(f"dataset.root={root}: folder does not exist")
    background = _get(cfg, "dataset.background")
    if background is not None and background not in ("white", "black", "random"):
        raise ConfigError(f"dataset.background={background!r}: must be one of white, black, random")
    batching = _get(cfg, "trainer.batching")
    if batching is not None and batching not in ("all_images", "single_image"):
        raise ConfigError(f"trainer.batching={batching!r}: must be all_images or single_image")
