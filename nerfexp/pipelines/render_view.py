"""Rendering one whole view of a split with a pipeline, in chunks of rays, with an out-of-memory fallback."""
from __future__ import annotations

import logging

import torch

from nerfexp.data.scene import SceneSplit
from nerfexp.pipelines.base import Pipeline

log = logging.getLogger(__name__)


def render_image(pipeline: Pipeline, split: SceneSplit, index: int, background: torch.Tensor, chunk: int,
                 device: torch.device) -> dict[str, torch.Tensor]:
    """Render view ``index`` of ``split``: ``rgb (H, W, 3)``, ``depth``, ``disp``, ``acc`` ``(H, W)`` on CPU.

    Out of device memory, the view is rendered again with half the chunk, down to 64 rays, instead of failing."""
    rays = split.rays(index).to(device)
    while True:
        try:
            out = pipeline.render_rays_chunked(rays, background.to(device), chunk)
            break
        except torch.OutOfMemoryError:
            if chunk <= 64:
                raise
            chunk //= 2
            if device.type == "cuda":
                torch.cuda.empty_cache()
            log.warning("out of memory while rendering; retrying with eval.chunk=%d", chunk)
    h, w = split.height, split.width
    return {k: v.reshape(h, w, -1).squeeze(-1).cpu() if k != "rgb" else v.reshape(h, w, 3).cpu()
            for k, v in out.items()}
