"""The one interface every encoder has: points or directions in, features of a known size out."""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class Encoder(Protocol):
    """``(..., 3)`` positions (world units) or unit directions -> ``(..., out_dim)`` features; an ``nn.Module``
    (a hash grid's tables are its parameters).

    Positions may come with ``footprint`` ``(..., 1)``: the standard deviation (world units) of the pixel's area
    around each point (:meth:`nerfexp.cameras.RayBundle.footprint_at`). An encoder that integrates over it (the
    frequency encoder with ``integrated=True``) damps what varies faster than a pixel; the others ignore it."""

    @property
    def uses_footprint(self) -> bool:
        """Whether ``footprint`` changes the output (pipelines pass footprints only then; absent: False)."""
        ...

    @property
    def out_dim(self) -> int:
        """Size of the last axis of the output (fields are sized from it)."""
        ...

    def __call__(self, x: Tensor, footprint: Tensor | None = None) -> Tensor:
        ...


def encode_beside(encoder: Encoder, x: Tensor, prefix: Tensor) -> Tensor:
    """``torch.cat([prefix, encoder(x)], -1)``: ``prefix`` ``(..., P)`` and the encoding of ``x`` ``(..., 3)`` side
    by side. An encoder with its own ``encode_beside`` writes them in one pass (the hash grid's CPU kernel)."""
    own = getattr(encoder, "encode_beside", None)
    return own(x, prefix) if own is not None else torch.cat([prefix, encoder(x)], dim=-1)
