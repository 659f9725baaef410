"""Image metrics: PSNR, SSIM (torchmetrics) and LPIPS when its weights are available."""
from __future__ import annotations

import logging
import math

import torch
from torch import Tensor

log = logging.getLogger(__name__)


def mse_to_psnr(mse: float | Tensor) -> float:
    """PSNR in dB for images in [0, 1]."""
    mse = float(mse)
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


def psnr(pred: Tensor, target: Tensor) -> float:
    """PSNR in dB of ``pred`` against ``target`` (same shape, values in [0, 1])."""
    return mse_to_psnr(torch.mean((pred.clamp(0, 1) - target) ** 2))


def ssim(pred: Tensor, target: Tensor) -> float:
    """SSIM of two ``(H, W, 3)`` images in [0, 1] (Gaussian window 11, sigma 1.5, as in the NeRF papers)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    p = pred.clamp(0, 1).permute(2, 0, 1).unsqueeze(0).float()
    t = target.permute(2, 0, 1).unsqueeze(0).float()
    return float(structural_similarity_index_measure(p, t, data_range=1.0))


class LPIPS:
    """LPIPS (VGG or AlexNet) from torchmetrics; ``available`` is False, with ``reason``, when it cannot load."""

    def __init__(self, net: str = "vgg"):
        self.reason = ""
        self.metric = None
        try:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            self.metric = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True)
        except Exception as exc:  # missing torchvision or weights: report, never crash evaluation
            self.reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

    @property
    def available(self) -> bool:
        return self.metric is not None

    def __call__(self, pred: Tensor, target: Tensor) -> float | None:
        if self.metric is None:
            return None
        p = pred.clamp(0, 1).permute(2, 0, 1).unsqueeze(0).float()
        t = target.permute(2, 0, 1).unsqueeze(0).float()
        return float(self.metric(p, t))


def mask_iou(acc: Tensor, mask: Tensor, threshold: float = 0.5) -> float:
    """Intersection over union of the rendered opacity ``acc`` and an object ``mask`` (both ``(H, W)``),
    each thresholded at ``threshold``."""
    a, m = acc.detach().cpu() > threshold, mask.detach().cpu() > threshold
    union = (a | m).sum().item()
    return (a & m).sum().item() / union if union else 1.0
