"""Checkpoints written atomically (temp file + rename), the last ``keep`` kept."""
from __future__ import annotations

import os
from pathlib import Path

import torch

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
