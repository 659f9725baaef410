"""Mixed precision: which autocast dtype a run uses, and the context that applies it.

``trainer.amp``: ``auto`` (bf16 on CUDA GPUs that support it, fp16 with a gradient scaler on older ones, off on the
CPU, where neither is faster without AMX), ``off``, ``bf16`` or ``fp16`` (explicit modes also run on the CPU, which
the tests use to exercise the same code path).
"""
from __future__ import annotations

import contextlib

import torch

from nerfexp.config import ConfigError

AMP_MODES = ("auto", "off", "bf16", "fp16")


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``trainer.amp=mode`` on ``device``; None = full precision."""
    if mode not in AMP_MODES:
        raise ConfigError(f"trainer.amp={mode!r} is not one of {AMP_MODES}")
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype``, or a no-op context when it is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (bf16 has float32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
