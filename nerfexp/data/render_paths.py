"""Camera paths for rendering videos: LLFF's spiral, the circle of spherified 360 captures, and a look-at orbit.

Every function returns OpenGL camera-to-world matrices ``(N, 4, 4)`` float64 (camera looks down -z, +y up), in the
frame of the poses it was given. The LLFF maths follows the original NeRF code (``poses_avg``, ``viewmatrix``,
``render_path_spiral``, the circle of ``spherify_poses``).
"""
from __future__ import annotations

import numpy as np


def normalize(v: np.ndarray) -> np.ndarray:
    """``v / |v|`` along the last axis."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def view_matrix(back: np.ndarray, up: np.ndarray, position: np.ndarray) -> np.ndarray:
    """``(4, 4)`` c2w whose +z is ``back`` (the camera looks down ``-back``), +y as close to ``up`` as possible."""
    z = normalize(np.asarray(back, dtype=np.float64))
    x = normalize(np.cross(up, z))
    y = normalize(np.cross(z, x))
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, position
    return c2w


def look_at(positions: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """``(N, 4, 4)`` c2w for cameras at ``positions`` ``(N, 3)`` looking at ``target`` ``(3,)``, +y near ``up``."""
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    return np.stack([view_matrix(p - np.asarray(target), np.asarray(up, dtype=np.float64), p) for p in positions])


def poses_avg(c2w: np.ndarray) -> np.ndarray:
    """The mean pose of ``c2w`` ``(N, 3|4, 4)``: mean centre, summed back and up axes re-orthonormalised: ``(4, 4)``."""
    center = c2w[:, :3, 3].mean(0)
    back = normalize(c2w[:, :3, 2].sum(0))
    up = c2w[:, :3, 1].sum(0)
    return view_matrix(back, up, center)


def spiral_path(c2w_avg: np.ndarray, up: np.ndarray, rads: np.ndarray, focus: float, n_frames: int,
                zrate: float = 0.5, rots: float = 2.0) -> np.ndarray:
    """LLFF's spiral: camera centres on an ellipse (radii ``rads`` ``(3,)`` in the frame of ``c2w_avg``) that also
    moves back and forth along z, each camera looking at the point ``focus`` in front of ``c2w_avg``.

    Returns ``(n_frames, 4, 4)``; frame ``k`` is at angle ``2 pi rots k / n_frames``.
    """
    rads = np.append(np.asarray(rads, dtype=np.float64), 1.0)
    target = c2w_avg[:3, :4] @ np.array([0.0, 0.0, -focus, 1.0])
    poses = []
    for theta in np.linspace(0.0, 2.0 * np.pi * rots, n_frames + 1)[:-1]:
        center = c2w_avg[:3, :4] @ (np.array([np.cos(theta), -np.sin(theta), -np.sin(theta * zrate), 1.0]) * rads)
        poses.append(view_matrix(center - target, up, center))
    return np.stack(poses) if poses else np.zeros((0, 4, 4))


def circle_path(radius: float, height: float, n_frames: int) -> np.ndarray:
    """The circle of spherified LLFF captures: centres at ``(r cos t, r sin t, height)``, looking at the origin.

    The camera's +y is ``cross(back, cross(back, (0, 0, -1)))`` as in the original code, i.e. close to world +z.
    Unlike the original (120 frames including both ends of ``[0, 2 pi]``), the ``n_frames`` angles do not repeat.
    """
    poses = []
    for theta in np.linspace(0.0, 2.0 * np.pi, n_frames + 1)[:-1]:
        center = np.array([radius * np.cos(theta), radius * np.sin(theta), height])
        back = normalize(center)
        x = normalize(np.cross(back, np.array([0.0, 0.0, -1.0])))
        y = normalize(np.cross(back, x))
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, back, center
        poses.append(c2w)
    return np.stack(poses) if poses else np.zeros((0, 4, 4))


def orbit_path(center: np.ndarray, up: np.ndarray, radius: float, height: float, n_frames: int,
               start: np.ndarray | None = None, angles: np.ndarray | None = None) -> np.ndarray:
    """Cameras on a horizontal circle around ``center`` looking at it.

    Args:
        center: ``(3,)`` point looked at; up: ``(3,)`` axis of the orbit (need not be unit length).
        radius: distance from the axis; height: offset along ``up`` from ``center``.
        start: optional ``(3,)`` direction of angle 0 (projected onto the orbit's plane).
        angles: ``(n_frames,)`` angles (radians, counter-clockwise about ``up`` from ``start``); default: the
            full circle.
    Returns:
        ``(n_frames, 4, 4)`` c2w.
    """
    center = np.asarray(center, dtype=np.float64)
    up = normalize(np.asarray(up, dtype=np.float64))
    ref = np.asarray(start, dtype=np.float64) if start is not None else np.array([1.0, 0.0, 0.0])
    e1 = ref - (ref @ up) * up
    if np.linalg.norm(e1) < 1e-6:  # start (or x) along the axis: any perpendicular will do
        e1 = np.cross(up, [0.0, 1.0, 0.0]) if abs(up[1]) < 0.9 else np.cross(up, [1.0, 0.0, 0.0])
    e1 = normalize(e1)
    e2 = np.cross(up, e1)
    theta = np.linspace(0.0, 2.0 * np.pi, n_frames + 1)[:-1] if angles is None else np.asarray(angles, np.float64)
    positions = center + radius * (np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2) + height * up
    return look_at(positions, center, up) if n_frames > 0 else np.zeros((0, 4, 4))


def azimuths(positions: np.ndarray, up: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Angles ``(N,)`` of ``positions`` about the axis ``up`` through the origin, counter-clockwise from ``start``
    (as :func:`orbit_path` measures them), in ``(-pi, pi]``."""
    up = normalize(np.asarray(up, dtype=np.float64))
    e1 = normalize(start - (start @ up) * up)
    e2 = np.cross(up, e1)
    return np.arctan2(positions @ e2, positions @ e1)
