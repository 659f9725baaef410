"""Checkpoints written atomically (temp file + rename), the last ``keep`` kept; what resuming a run needs
(the RNG state, which run dir to continue, metrics to drop)."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

PATTERN = "step_*.pt"


def save_checkpoint(state: dict, ckpt_dir: Path, step: int, keep: int = 3) -> Path:
    """Write ``state`` to ``ckpt_dir/step_<step>.pt`` atomically and prune older ones."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"step_{step:08d}.pt"
    tmp = path.with_suffix(".pt.tmp")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    for old in sorted(ckpt_dir.glob(PATTERN))[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest complete checkpoint in ``ckpt_dir``, or None."""
    found = sorted(ckpt_dir.glob(PATTERN))
    return found[-1] if found else None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise RuntimeError(f"{path}: cannot load checkpoint ({exc})") from None


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def comparable_config(cfg: DictConfig | dict) -> dict:
    """A run's config without the keys that do not change what is trained (for ``resume=auto``)."""
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    c.pop("resume", None)
    c.get("trainer", {}).pop("max_steps", None)
    c.get("trainer", {}).pop("max_time_s", None)
    return c


def find_resume_dir(resume: str, cfg: DictConfig, run_dir: Path) -> Path | None:
    """The run dir to continue: ``resume`` itself, or with ``auto`` the newest run with a checkpoint and the same
    config among the siblings of this run's output root (``outputs/<date>/<time>``)."""
    if resume != "auto":
        path = Path(resume).expanduser().resolve()
        if not (path / "config.yaml").is_file():
            raise FileNotFoundError(f"resume={resume}: no config.yaml there; give a training run directory")
        return path
    root = run_dir.resolve().parent.parent
    wanted = comparable_config(cfg)
    candidates = []
    for config_path in root.glob("*/*/config.yaml"):
        other = config_path.parent
        if other == run_dir.resolve() or latest_checkpoint(other / "checkpoints") is None:
            continue
        if comparable_config(OmegaConf.to_container(OmegaConf.load(config_path))) == wanted:
            candidates.append(other)
    return max(candidates, key=lambda p: latest_checkpoint(p / "checkpoints").stat().st_mtime, default=None)


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop records written after ``step`` (they belong to training that the resumed run will redo)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    path.write_text("".join(k + "\n" for k in kept))
