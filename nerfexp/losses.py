"""The training loss: photometric MSE of every pass, the renderer's regulariser, and the optional mask term."""
from __future__ import annotations

import torch
from torch import Tensor


def training_loss(out: dict[str, Tensor], target: Tensor, coarse_weight: float = 1.0,
                  mask: Tensor | None = None, mask_weight: float = 0.0) -> tuple[Tensor, Tensor]:
    """Loss and the last pass's MSE for one batch.

    Args:
        out: pipeline outputs: ``rgb (R, 3)``, optionally ``rgb_coarse (R, 3)``, ``regularizer`` (scalar) and
            ``acc (R,)``.
        target: ``(R, 3)`` pixel colours.
        coarse_weight: weight of the first pass's MSE (NeRF: 1).
        mask: ``(R,)`` object mask / alpha in [0, 1] for the mask term, or None.
        mask_weight: weight of the binary cross-entropy between accumulated opacity and ``mask``.
    Returns:
        ``(loss, mse)`` scalars.
    """
    mse = torch.mean((out["rgb"] - target) ** 2)
    loss = mse
    if "rgb_coarse" in out and coarse_weight:
        loss = loss + coarse_weight * torch.mean((out["rgb_coarse"] - target) ** 2)
    if "regularizer" in out:  # e.g. NeuS's weighted eikonal term
        loss = loss + out["regularizer"]
    if mask_weight and mask is not None:
        acc = out["acc"].clamp(1e-3, 1.0 - 1e-3)
        loss = loss + mask_weight * torch.nn.functional.binary_cross_entropy(acc, mask)
    return loss, mse
