"""The one interface every dataset has: splits of posed images and a camera path, and the scene's extent."""
from __future__ import annotations

from typing import Protocol

import torch

from nerfexp.data.scene import SceneSplit


class Dataset(Protocol):
    """A scene on disk (``conf/dataset/<name>.yaml`` builds one).

    Attributes:
        bound: the scene's extent in world units: it lies in ``[-bound, bound]^3`` (``dataset.bound``; hash grids,
            occupancy grids, the NeuS sphere and meshes take it by interpolation).
    """

    bound: float

    def load(self, split: str) -> SceneSplit:
        """``train``, ``val`` or ``test``: images ``(N, H, W, 3)`` with alphas, ``c2w (N, 4, 4)``, intrinsics,
        near/far; the three splits never share a frame."""
        ...

    def render_path(self, n_frames: int = 120) -> torch.Tensor:
        """``(n_frames, 4, 4)`` camera-to-world poses of a video path around or in front of the scene."""
        ...
