"""What fields give the renderer (:class:`FieldOutputs`) and the two kinds of field (:class:`DensityField`,
:class:`SDFField`). A field's ``geometry`` names its kind; the renderer and the sampler must read the same one."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from torch import Tensor

Encode = Callable[[Tensor], Tensor]  # world points (..., 3) -> their encoding (..., pos_dim)


@dataclass
class FieldOutputs:
    """A field at ``R x S`` samples: ``rgb (R, S, 3)`` in [0, 1], and ``density (R, S)`` (1/world unit, >= 0) for
    density fields, or ``sdf (R, S)`` and its world-space ``gradient (R, S, 3)`` for SDF fields."""

    rgb: Tensor
    density: Tensor | None = None
    sdf: Tensor | None = None
    gradient: Tensor | None = None


class DensityField(Protocol):
    """NeRF-style field: encoded positions (and view directions) -> colour and volume density."""

    geometry: ClassVar[str]  # "density"

    def __call__(self, x_enc: Tensor, d_enc: Tensor | None = None,
                 density_noise_std: float = 0.0) -> tuple[Tensor, Tensor]:
        """``x_enc (R, S, pos_dim)``, ``d_enc (R, dir_dim)`` -> ``rgb (R, S, 3)``, ``density (R, S)``; noise of
        ``density_noise_std`` goes on the raw density before its activation."""
        ...

    def density(self, x_enc: Tensor) -> Tensor:
        """``(..., pos_dim)`` -> density ``(...)`` (occupancy grids, meshes)."""
        ...


class SDFField(Protocol):
    """Signed-distance field: world points -> SDF, its gradient and a feature; colour from point, normal, view."""

    geometry: ClassVar[str]  # "sdf"

    def geometry_with_gradient(self, pts: Tensor, encode: Encode, training: bool) -> tuple[Tensor, Tensor, Tensor]:
        """``pts (..., 3)`` -> SDF ``(...)``, feature ``(..., F)``, gradient ``(..., 3)``."""
        ...

    def color(self, pts: Tensor, normals: Tensor, d_enc: Tensor, feat: Tensor) -> Tensor:
        """Colour ``(..., 3)`` in [0, 1]."""
        ...

    def sdf(self, pts: Tensor, encode: Encode) -> Tensor:
        """SDF alone at ``pts (..., 3)``."""
        ...
