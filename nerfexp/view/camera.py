"""The browser's camera as the project's camera: poses (viser's OpenCV frame <-> our OpenGL frame), pinhole
intrinsics for a render of the browser's canvas, and the rays of such a render in a split's scene."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from viser.transforms import SO3

from nerfexp.cameras import Intrinsics, image_rays
from nerfexp.data.scene import SceneSplit

# viser's camera frame looks along +z with y down (OpenCV); ours looks along -z with y up (OpenGL)
CV_FROM_GL = np.diag([1.0, -1.0, -1.0])


def c2w_from_viewer(wxyz: np.ndarray, position: np.ndarray) -> Tensor:
    """viser's camera (``R_world_camera`` as a quaternion, OpenCV frame; position) -> our ``(4, 4)`` c2w."""
    c2w = np.eye(4)
    c2w[:3, :3] = SO3(np.asarray(wxyz, dtype=np.float64)).as_matrix() @ CV_FROM_GL
    c2w[:3, 3] = position
    return torch.from_numpy(c2w).float()


def viewer_pose(c2w: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Our c2w -> viser's ``(wxyz, position)`` of the same camera (frusta, the browser's first view)."""
    m = np.asarray(c2w, dtype=np.float64)
    return SO3.from_matrix(m[:3, :3] @ CV_FROM_GL).wxyz, m[:3, 3].copy()


def render_intrinsics(fov_y: float, canvas_w: int, canvas_h: int, long_side: int) -> Intrinsics:
    """Pinhole intrinsics of a render of the browser's canvas (``canvas_w`` x ``canvas_h`` pixels, vertical field
    of view ``fov_y`` radians) with its long side at most ``long_side`` pixels."""
    scale = min(1.0, long_side / max(canvas_w, canvas_h, 1))
    w, h = max(1, round(canvas_w * scale)), max(1, round(canvas_h * scale))
    fy = 0.5 * h / math.tan(0.5 * fov_y)
    return Intrinsics(fy, fy, 0.5 * w, 0.5 * h, w, h)


def fov_y_of(intrinsics: Intrinsics) -> float:
    """Vertical field of view (radians) of ``intrinsics``."""
    return 2.0 * math.atan(0.5 * intrinsics.height / intrinsics.fy)


def view_rays(split: SceneSplit, c2w: Tensor, intrinsics: Intrinsics, device: torch.device):
    """Every ray of a render with ``intrinsics`` from ``c2w``, row-major, as ``split``'s pipeline renders them
    (its near/far, NDC with the split's own focal length, its sphere or box)."""
    return split.in_scene(image_rays(c2w, intrinsics, split.near, split.far)).to(device)
