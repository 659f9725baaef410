"""The learning-rate schedule: exponential decay over the run's progress."""
from __future__ import annotations


def lr_at(progress: float, lr: float, lr_final: float) -> float:
    """Exponential decay from ``lr`` (progress 0) to ``lr_final`` (progress 1); progress is clamped to [0, 1]."""
    return lr * (lr_final / lr) ** min(max(progress, 0.0), 1.0)
