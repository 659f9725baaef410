"""Shaded PNG views of a triangle mesh from a dataset's cameras (painter's algorithm with matplotlib), so a mesh
is judged by looking at it, next to the photos, without a 3D viewer."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfexp.cameras import Intrinsics


def project(vertices: np.ndarray, c2w: np.ndarray, intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``(V, 2)`` (x right, y down, pixel centres at +0.5) and depth in front of the camera
    ``(V,)`` of world ``vertices`` seen by an OpenGL camera ``c2w`` (looking down its -z)."""
    rot, center = c2w[:3, :3], c2w[:3, 3]
    cam = (vertices - center) @ rot  # R^T (v - c), row-wise
    depth = -cam[:, 2]
    safe = np.where(np.abs(depth) < 1e-9, 1e-9, depth)
    x = intrinsics.fx * cam[:, 0] / safe + intrinsics.cx
    y = -intrinsics.fy * cam[:, 1] / safe + intrinsics.cy
    return np.stack([x, y], -1), depth


def render_mesh_view(vertices: np.ndarray, faces: np.ndarray, c2w: np.ndarray, intrinsics: Intrinsics,
                     path: Path, scale: int = 2) -> Path:
    """Write a grey, head-light-shaded view of the mesh from camera ``c2w`` as a PNG ``scale`` times the image size.

    Faces are drawn far to near; the shade of a face is ``|cos|`` between its normal and the view ray."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    w, h = intrinsics.width, intrinsics.height
    pix, depth = project(vertices, c2w, intrinsics)
    tri = faces[(depth[faces] > 1e-3).all(1)]
    p = pix[tri]
    onscreen = ((p[..., 0].max(1) >= 0) & (p[..., 0].min(1) <= w) & (p[..., 1].max(1) >= 0) & (p[..., 1].min(1) <= h))
    tri, p = tri[onscreen], p[onscreen]
    v = vertices[tri]
    normal = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    view = v.mean(1) - c2w[:3, 3]
    view /= np.maximum(np.linalg.norm(view, axis=-1, keepdims=True), 1e-12)
    shade = 0.15 + 0.85 * np.abs((normal * view).sum(-1))
    order = np.argsort(-depth[tri].mean(1))  # far first
    fig = plt.figure(figsize=(w * scale / 100, h * scale / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    colors = np.repeat(shade[order, None], 3, axis=1) * np.array([0.85, 0.85, 0.9])
    ax.add_collection(PolyCollection(p[order], facecolors=colors, edgecolors="none", antialiased=False))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, facecolor="white")
    plt.close(fig)
    return path
