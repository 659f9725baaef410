"""The one interface every renderer has: field outputs at ray samples -> pixels.

Every renderer is called the same way by every pipeline; what differs is which field outputs it reads
(``geometry``: a density renderer reads ``FieldOutputs.density``, an SDF renderer ``sdf`` and ``gradient``).
"""
from __future__ import annotations

from typing import ClassVar, Protocol

from torch import Tensor

from nerfexp.cameras import RayBundle
from nerfexp.fields.base import FieldOutputs
from nerfexp.samplers.base import RaySamples


class Renderer(Protocol):
    """Composites ``R`` rays of ``S`` samples each.

    Attributes:
        geometry: the field kind it renders, ``"density"`` or ``"sdf"``.
        density_noise_std: std of the noise density fields add to their raw output in training (NeRF's
            ``raw_noise_std``; 0 where it does not apply).
    """

    geometry: ClassVar[str]
    density_noise_std: float

    def __call__(self, field_out: FieldOutputs, samples: RaySamples, rays: RayBundle, background: Tensor | None,
                 training: bool = False) -> dict[str, Tensor]:
        """Render.

        Args:
            field_out: the field at ``samples`` (``rgb (R, S, 3)`` and the renderer's geometry).
            samples: ``t (R, S)`` and world-unit ``deltas (R, S)`` (0: nothing there).
            rays: the ``R`` rays (directions for slopes; near/far).
            background: ``(3,)``, ``(R, 3)`` or None (black).
            training: training pass (schedules, regularisers).
        Returns:
            at least ``rgb (R, 3)``, ``depth (R,)``, ``disp (R,)``, ``acc (R,)``, ``weights (R, S)``; optionally
            ``normal (R, 3)`` and, in training, ``regularizer`` (a scalar the trainer adds to the loss).
        """
        ...

    def update(self, step: int) -> None:
        """Per-training-step schedules (e.g. NeuS's cosine annealing)."""
        ...

    def state(self) -> dict[str, float]:
        """Learned or scheduled numbers worth a curve (e.g. NeuS's sharpness ``inv_s``)."""
        ...
