"""The one interface every encoder has: points or directions in, features of a known size out."""
from __future__ import annotations

from typing import Protocol

from torch import Tensor


class Encoder(Protocol):
    """``(..., 3)`` positions (world units) or unit directions -> ``(..., out_dim)`` features; an ``nn.Module``
    (a hash grid's tables are its parameters)."""

    @property
    def out_dim(self) -> int:
        """Size of the last axis of the output (fields are sized from it)."""
        ...

    def __call__(self, x: Tensor) -> Tensor:
        ...
