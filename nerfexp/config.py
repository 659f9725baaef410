"""Start-up checks of the composed config: every value a user can get wrong stops the run before any work,
with one line naming the key, the value and what is allowed.

Each component built from a config group (``_target_``) checks the *ranges* of its own arguments in its
constructor. What is checked here, before anything is built: the *types* of those arguments, read from the
constructor's signature (a string, NaN or infinity where a number is expected), the keys that no constructor
owns (``trainer``, ``eval``, ``optim``), and settings of different groups that clash.
"""
from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Sequence

from hydra.errors import InstantiationException
from omegaconf import DictConfig, ListConfig
from omegaconf.errors import MissingMandatoryValue

from nerfexp.data.images import DatasetError

GROUPS = ("dataset", "encoder", "field", "sampler", "renderer", "logger")


class ConfigError(ValueError):
    """A config value is not allowed; the message names the key."""


def _get(cfg: DictConfig, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return None
        node = node[part]
    return node


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_number(key: str, value, kind: type = float, low: float | None = None, low_open: bool = False,
                 high: float | None = None, nullable: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite ``kind`` (int or float) in the given range."""
    if value is None:
        if nullable:
            return
        raise ConfigError(f"{key}=null: must be set")
    if not _is_number(value) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{key}={value!r}: must be {'an integer' if kind is int else 'a number'}")
    if not math.isfinite(value):
        raise ConfigError(f"{key}={value!r}: must be finite")
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(f"{key}={value!r}: must be {'>' if low_open else '>='} {low:g}")
    if high is not None and value > high:
        raise ConfigError(f"{key}={value!r}: must be <= {high:g}")


def _matches(value, hint) -> bool:
    """Whether a config value fits a constructor's type hint (numbers must be finite)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is typing.Any:
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return _is_number(value) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    container = origin or hint
    if isinstance(container, type) and issubclass(container, (tuple, list, Sequence)) and container is not str:
        return isinstance(value, (list, tuple, ListConfig))
    return True  # a type we do not check here (paths, tensors, ...): the constructor's business


def _describe(hint) -> str:
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
             type(None): "null"}
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return " or ".join(names.get(a, "a list" if typing.get_origin(a) in (tuple, list) else getattr(a, "__name__", str(a)))
                       for a in args)


def _constructor_hints(target: str) -> dict:
    from hydra.utils import get_class

    try:
        return typing.get_type_hints(get_class(target).__init__)
    except Exception:  # an unimportable target is reported by instantiate itself; odd annotations: skip
        return {}


def check_types(node: DictConfig, path: str) -> None:
    """Check every key of a ``_target_`` node (and nested ones) against its constructor's type hints."""
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    hints = _constructor_hints(target) if target else {}
    for key in node:
        try:
            value = node.get(key)
        except MissingMandatoryValue:
            raise ConfigError(f"{path}.{key}=???: must be set (e.g. {path}.{key}=<value> on the command line)") from None
        if isinstance(value, DictConfig):
            check_types(value, f"{path}.{key}")
        elif key in hints and not _matches(value, hints[key]):
            raise ConfigError(f"{path}.{key}={value!r}: must be {_describe(hints[key])}")


# keys no constructor owns: (kind, lowest, lowest excluded, highest, nullable)
OWN_KEYS = {
    "seed": (int, 0, False, None, False),
    "trainer.max_steps": (int, 1, False, None, False),
    "trainer.max_time_s": (float, 0, True, None, True),
    "trainer.batch_rays": (int, 1, False, None, False),
    "trainer.precrop_steps": (int, 0, False, None, False),
    "trainer.precrop_frac": (float, 0, True, 1, False),
    "trainer.coarse_loss_weight": (float, 0, False, None, False),
    "trainer.mask_loss_weight": (float, 0, False, None, False),
    "trainer.val_every": (int, 0, False, None, False),
    "trainer.val_views": (int, 1, False, None, False),
    "trainer.log_every": (int, 1, False, None, False),
    "trainer.ckpt_every": (int, 0, False, None, False),
    "trainer.ckpt_every_s": (float, 0, True, None, True),
    "trainer.ckpt_keep": (int, 1, False, None, False),
    "trainer.threads": (int, 1, False, None, True),
    "trainer.nan_patience": (int, 1, False, None, False),
    "trainer.nan_lr_factor": (float, 0, True, 1, False),
    "trainer.warmup_steps": (int, 0, False, None, False),
    "trainer.warmup_min_psnr": (float, None, False, None, False),
    "trainer.n_restarts": (int, 0, False, None, False),
    "eval.chunk": (int, 1, False, None, False),
    "eval.max_views": (int, 1, False, None, True),
    "optim.lr": (float, 0, True, None, False),
    "optim.lr_final": (float, 0, True, None, False),
    "optim.eps": (float, 0, True, None, False),
    "optim.weight_decay": (float, 0, False, None, False),
}


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first value that is not allowed (see the module docstring)."""
    if "sweeps" in cfg:  # `+sweeps=<name>` became a plain value: the sweeps/ config group was not found
        raise ConfigError(f"+sweeps={cfg.sweeps}: no study preset group on the config search path; it is added by "
                          "hydra_plugins/nerfexp_searchpath (run from the repository or `pip install -e .`; "
                          "check `python train.py --info searchpath`)")
    for group in GROUPS:
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            check_types(node, group)
    for key, (kind, low, low_open, high, nullable) in OWN_KEYS.items():
        parent, _, leaf = key.rpartition(".")
        node = _get(cfg, parent) if parent else cfg
        if isinstance(node, DictConfig) and leaf in node:
            check_number(key, node[leaf], kind, low, low_open, high, nullable)
    betas = _get(cfg, "optim.betas")
    if betas is not None and (not isinstance(betas, (list, ListConfig)) or len(betas) != 2
                              or not all(_is_number(b) and 0 <= b < 1 for b in betas)):
        raise ConfigError(f"optim.betas={betas!r}: must be two numbers in [0, 1)")
    batching = _get(cfg, "trainer.batching")
    if batching is not None and batching not in ("all_images", "single_image"):
        raise ConfigError(f"trainer.batching={batching!r}: must be all_images or single_image")
    scope = _get(cfg, "trainer.batch_rays_scope")
    if scope is not None and scope not in ("rank", "global"):
        raise ConfigError(f"trainer.batch_rays_scope={scope!r}: must be rank (trainer.batch_rays per rank) or "
                          "global (per step, split over the ranks)")


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message of an error the user caused (a bad config value or data file), or None for a bug.

    Hydra wraps what a ``_target_`` constructor raises in an ``InstantiationException`` with a traceback-like
    message; the constructor's own error (which names the key) is its cause. A constructor's ``ValueError`` is
    a rejected argument; elsewhere only the errors made for users count (a stray ValueError is a bug)."""
    from_constructor, full_key = False, ""
    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        full_key = full_key or _full_key(str(exc))
        exc, from_constructor = exc.__cause__, True
    if isinstance(exc, InstantiationException):  # hydra's own: an unknown _target_ or argument
        return " ".join(str(exc).split())
    if isinstance(exc, (ConfigError, DatasetError, FileNotFoundError)) or (from_constructor and isinstance(exc, ValueError)):
        message = " ".join(str(exc).split())
        # constructors name their own keys (``n_freqs=-1: ...``); the config path says whose
        if full_key and re.match(r"[A-Za-z_][\w]*=", message):
            message = f"{full_key}.{message}"
        return message
    return None


def _full_key(message: str) -> str:
    match = re.search(r"^full_key: (\S+)$", message, re.MULTILINE)
    return match.group(1) if match else ""
