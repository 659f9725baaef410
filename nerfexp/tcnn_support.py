"""Whether tinycudann can run here: the optional CUDA backend of the hash grid and the grid field's MLPs."""
from __future__ import annotations

import functools

import torch


@functools.cache
def tcnn_available() -> bool:
    """Whether tinycudann imports and CUDA is usable."""
    if not torch.cuda.is_available():
        return False
    try:
        import tinycudann  # noqa: F401
    except Exception:  # ImportError, or a build for another CUDA/torch
        return False
    return True
