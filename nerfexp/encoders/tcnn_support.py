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


BACKENDS = ("auto", "torch", "tcnn")


def check_backend(backend: str, key: str) -> None:
    """Raise, naming ``key``, when ``backend`` is not one of :data:`BACKENDS`."""
    if backend not in BACKENDS:
        raise ValueError(f"{key}={backend!r} is not one of {BACKENDS}")


def require_tcnn(key: str) -> None:
    """Raise, naming ``key``, when ``key=tcnn`` was asked for but tinycudann cannot run here."""
    if not tcnn_available():
        raise RuntimeError(f"{key}=tcnn but tinycudann is not importable with CUDA here; use {key}=torch or auto")
