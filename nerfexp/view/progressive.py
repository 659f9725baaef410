"""Rendering a browser's view progressively: a coarse image at once, finer ones while the camera rests, each
rendered in slices of rays so training (or another browser) gets the processor back between slices."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nerfexp.cameras import Intrinsics
from nerfexp.data.scene import SceneSplit
from nerfexp.pipelines.base import Pipeline
from nerfexp.view.camera import render_intrinsics, view_rays
from nerfexp.viz.images import depth_image, normal_image, to_uint8

OUTPUTS = ("colour", "depth", "opacity", "normals")


@dataclass(frozen=True)
class ViewRequest:
    """What a browser shows: its camera (our c2w), vertical field of view and canvas size in pixels."""

    c2w: Tensor
    fov_y: float
    canvas_w: int
    canvas_h: int


def levels(moving: int, cap: int, canvas_long_side: int) -> list[int]:
    """Long sides of the successive renders of one view: ``moving`` (shown while the camera moves), then doubling
    up to ``cap`` and the canvas' own size, the last one exactly the smaller of the two."""
    top = max(1, min(cap, canvas_long_side))
    out = [min(moving, top)]
    while out[-1] < top:
        out.append(min(out[-1] * 2, top))
    return out


def output_image(out: dict[str, Tensor], output: str, split: SceneSplit, c2w: Tensor) -> np.ndarray:
    """One output of a render as an ``(H, W, 3)`` uint8 picture: colour, colour-mapped depth, opacity, normals."""
    if output == "depth":
        return to_uint8(depth_image(out, split.near, split.far))
    if output == "opacity":
        return to_uint8(out["acc"].unsqueeze(-1).expand(*out["acc"].shape, 3))
    if output == "normals" and "normal" in out:
        return to_uint8(normal_image(out["normal"], out["acc"], c2w))
    return to_uint8(out["rgb"])


class RenderJob:
    """One image of a view at one resolution, rendered slice by slice (:meth:`advance`)."""

    def __init__(self, pipeline: Pipeline, split: SceneSplit, request: ViewRequest, long_side: int,
                 background: Tensor, device: torch.device):
        self.pipeline, self.split, self.request, self.background = pipeline, split, request, background.to(device)
        self.intrinsics: Intrinsics = render_intrinsics(request.fov_y, request.canvas_w, request.canvas_h,
                                                        long_side)
        self.rays = view_rays(split, request.c2w, self.intrinsics, device)
        self.parts: list[dict[str, Tensor]] = []
        self.done_rays = 0
        self.seconds = 0.0

    @property
    def done(self) -> bool:
        return self.done_rays >= len(self.rays)

    def advance(self, n_rays: int, chunk: int) -> int:
        """Render the next ``n_rays`` rays (in forward passes of at most ``chunk``); returns how many it did."""
        t0 = time.perf_counter()
        rays = self.rays[self.done_rays:self.done_rays + max(1, n_rays)]
        was_training = self.pipeline.training
        self.pipeline.eval()
        try:
            self.parts.append(self.pipeline.render_rays_chunked(rays, self.background, chunk))
        finally:
            self.pipeline.train(was_training)
        self.done_rays += len(rays)
        self.seconds += time.perf_counter() - t0
        return len(rays)

    def outputs(self) -> dict[str, Tensor]:
        """The finished render: ``rgb (H, W, 3)``, ``depth``, ``acc`` ``(H, W)`` (and ``normal`` for SDF models)."""
        h, w = self.intrinsics.height, self.intrinsics.width
        out = {k: torch.cat([p[k] for p in self.parts]).cpu() for k in self.parts[0]}
        return {k: v.reshape(h, w, -1).squeeze(-1) for k, v in out.items()}

    def image(self, output: str) -> np.ndarray:
        return output_image(self.outputs(), output, self.split, self.request.c2w)
