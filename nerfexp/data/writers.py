"""Write the procedural demo scene (:mod:`nerfexp.data.demo`) in the LLFF and DTU (NeuS) file formats.

The cameras are known exactly, so tests can check that a loader's rays are the generator's rays. World frame: the
demo scene's (objects within ``SCENE_RADIUS`` of the origin, +z up); every camera has the spec's resolution and
``camera_angle_x`` focal length, with the principal point at the image centre.

- LLFF (:func:`write_llff_scene`): ``poses_bounds.npy`` (rows: 3x5 [down, right, back | centre | H, W, focal] +
  near/far depth of the visible surface), ``images/imageNNN.png`` opaque RGB (composited on ``background``),
  optionally ``images_<f>/`` area-downscaled copies.
- DTU (:func:`write_dtu_scene`): ``cameras_sphere.npz`` (``world_mat_i`` = K [R|t] in OpenCV conventions,
  ``scale_mat_i`` mapping the unit sphere to a ball of radius ``scale`` around ``center``, their inverses and
  ``camera_mat_i``), ``image/NNNNNN.png`` RGB photos on ``background`` and binary ``mask/NNN.png``.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from nerfexp.data.demo import (SCENE_RADIUS, DemoSceneSpec, camera_poses, focal_length, pixel_rays, render_views,
                               trace_rays)
from nerfexp.data.dtu import CV_TO_GL
from nerfexp.data.render_paths import view_matrix


# --------------------------------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------------------------------

def forward_facing_poses(spec: DemoSceneSpec, n_views: int = 12, distance: float | None = None,
                         spread: float = 0.5, azimuth_deg: float = -90.0, elevation_deg: float = 20.0,
                         seed: int = 0) -> np.ndarray:
    """A handheld-style capture: ``(n_views, 4, 4)`` c2w with one orientation, centres scattered in a rectangle.

    The central camera sits at ``distance`` (default ``spec.radius``) from the origin in the direction
    (``azimuth_deg``, ``elevation_deg``) and looks at the origin; the others share its rotation and are shifted by
    up to ``spread`` along its right and up axes (and ``spread / 4`` along its axis), seeded by ``seed``.
    """
    distance = spec.radius if distance is None else distance
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    center = distance * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    base = view_matrix(center, np.array([0.0, 0.0, 1.0]), center)
    rng = np.random.default_rng([seed, 0xF0F0])
    offsets = rng.uniform(-1.0, 1.0, (n_views, 3)) * np.array([spread, spread, spread / 4.0])
    poses = np.repeat(base[None], n_views, axis=0)
    poses[:, :3, 3] = center + offsets @ base[:3, :3].T
    return poses


def surrounding_poses(spec: DemoSceneSpec, n_views: int = 16) -> np.ndarray:
    """``(n_views, 4, 4)`` c2w around the scene looking at the origin (the demo's random training cameras)."""
    return camera_poses(replace(spec, n_train=n_views), "train")


def surface_depth_bounds(spec: DemoSceneSpec, c2ws: np.ndarray) -> np.ndarray:
    """Per camera ``(N, 2)``: min and max depth of the surface seen through the pixel centres (the scene's
    bounding ball where a camera sees nothing)."""
    bounds = []
    for c2w in c2ws:
        o, d = pixel_rays(spec, c2w, 1)
        _, hit, t = trace_rays(o, d)  # directions have camera z = -1, so t is the depth
        if hit.any():
            bounds.append((t[hit > 0].min(), t[hit > 0].max()))
        else:
            dist = float(np.linalg.norm(c2w[:3, 3]))
            bounds.append((max(dist - SCENE_RADIUS, 0.1), dist + SCENE_RADIUS))
    return np.array(bounds)


# --------------------------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------------------------

def _composite(rgba: np.ndarray, background: tuple[float, float, float]) -> np.ndarray:
    """Straight RGBA ``(..., 4)`` -> opaque RGB on ``background``."""
    return rgba[..., :3] * rgba[..., 3:] + np.asarray(background) * (1.0 - rgba[..., 3:])


def _save(path: Path, image: np.ndarray) -> None:
    Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)).save(path)


def _area(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape[0] // factor, image.shape[1] // factor
    return image[: h * factor, : w * factor].reshape(h, factor, w, factor, -1).mean(axis=(1, 3))


# --------------------------------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------------------------------

def llff_rows(c2ws: np.ndarray, bounds: np.ndarray, height: int, width: int, focal: float) -> np.ndarray:
    """``poses_bounds.npy`` rows ``(N, 17)`` for OpenGL ``c2ws`` ``(N, 4, 4)`` and depth ``bounds`` ``(N, 2)``."""
    n = len(c2ws)
    mats = np.zeros((n, 3, 5))
    mats[:, :, 0] = -c2ws[:, :3, 1]  # down
    mats[:, :, 1] = c2ws[:, :3, 0]  # right
    mats[:, :, 2] = c2ws[:, :3, 2]  # back
    mats[:, :, 3] = c2ws[:, :3, 3]
    mats[:, :, 4] = [height, width, focal]
    return np.concatenate([mats.reshape(n, 15), bounds], axis=1)


def write_llff_scene(out_dir: Path, spec: DemoSceneSpec, n_views: int = 12, layout: str = "forward",
                     factors: tuple[int, ...] = (), background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                     alpha: bool = False, c2ws: np.ndarray | None = None) -> Path:
    """Render the demo scene and write it as an LLFF capture into ``out_dir``; returns ``out_dir``.

    Args:
        layout: ``forward`` (:func:`forward_facing_poses`) or ``surround`` (:func:`surrounding_poses`, a 360
            capture for ``spherify``); ignored when ``c2ws`` ``(N, 4, 4)`` are given.
        factors: also write ``images_<f>/`` for each, area-averaged from the full-size renders.
        background: colour the empty space is composited on; with ``alpha`` the PNGs are RGBA instead.
    """
    out_dir = Path(out_dir)
    if c2ws is None:
        if layout == "forward":
            c2ws = forward_facing_poses(spec, n_views)
        elif layout == "surround":
            c2ws = surrounding_poses(spec, n_views)
        else:
            raise ValueError(f"layout={layout!r} must be 'forward' or 'surround'")
    c2ws = np.asarray(c2ws, dtype=np.float64)
    renders = render_views(spec, c2ws)
    for folder, factor in [("images", 1)] + [(f"images_{f}", f) for f in factors]:
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        for k, rgba in enumerate(renders):
            premult = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], axis=-1)
            small = _area(premult, factor)
            if alpha:
                a = small[..., 3:]
                straight = np.where(a > 0, small[..., :3] / np.maximum(a, 1e-12), 0.0)
                image = np.concatenate([straight, a], axis=-1)
            else:
                image = small[..., :3] + np.asarray(background) * (1.0 - small[..., 3:])
            _save(out_dir / folder / f"image{k:03d}.png", image)
    rows = llff_rows(c2ws, surface_depth_bounds(spec, c2ws), spec.resolution, spec.resolution, focal_length(spec))
    np.save(out_dir / "poses_bounds.npy", rows)
    return out_dir


def intrinsics_matrix(spec: DemoSceneSpec) -> np.ndarray:
    """OpenCV ``K`` ``(3, 3)`` of the spec's camera (pixel centres at integer coordinates)."""
    f, c = focal_length(spec), spec.resolution / 2.0 - 0.5
    return np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])


def write_dtu_scene(out_dir: Path, spec: DemoSceneSpec, scale: float = 1.5,
                    center: tuple[float, float, float] = (0.0, 0.0, 0.0), n_views: int = 16,
                    background: tuple[float, float, float] = (0.35, 0.3, 0.25), mask_channels: int = 3,
                    image_folder: str = "image", c2ws: np.ndarray | None = None) -> Path:
    """Render the demo scene and write it as a NeuS-preprocessed DTU scan into ``out_dir``; returns ``out_dir``.

    Args:
        scale, center: the unit sphere of the normalised frame is the ball of radius ``scale`` around ``center``
            (``scale_mat = [[scale I, center], [0, 1]]``).
        n_views: cameras from :func:`surrounding_poses`, unless ``c2ws`` ``(N, 4, 4)`` (OpenGL) are given.
        background: colour of the "photo" behind the objects; masks are ``alpha > 0.5``.
        mask_channels: 1 (greyscale) or 3 (RGB, as the NeuS release).
        image_folder: ``image`` (NeuS) or ``images`` (some other releases).
    """
    out_dir = Path(out_dir)
    c2ws = surrounding_poses(spec, n_views) if c2ws is None else np.asarray(c2ws, dtype=np.float64)
    k4 = np.eye(4)
    k4[:3, :3] = intrinsics_matrix(spec)
    scale_mat = np.eye(4)
    scale_mat[:3, :3] *= scale
    scale_mat[:3, 3] = center
    arrays = {}
    for i, c2w in enumerate(c2ws):
        world_mat = k4 @ np.linalg.inv(c2w @ CV_TO_GL)
        arrays.update({f"world_mat_{i}": world_mat, f"world_mat_inv_{i}": np.linalg.inv(world_mat),
                       f"scale_mat_{i}": scale_mat, f"scale_mat_inv_{i}": np.linalg.inv(scale_mat),
                       f"camera_mat_{i}": k4, f"camera_mat_inv_{i}": np.linalg.inv(k4)})
    (out_dir / image_folder).mkdir(parents=True, exist_ok=True)
    (out_dir / "mask").mkdir(parents=True, exist_ok=True)
    for i, rgba in enumerate(render_views(spec, c2ws)):
        _save(out_dir / image_folder / f"{i:06d}.png", _composite(rgba, background))
        mask = (rgba[..., 3:] > 0.5).astype(np.float64)
        _save(out_dir / "mask" / f"{i:03d}.png", np.repeat(mask, 3, axis=-1) if mask_channels == 3 else mask[..., 0])
    np.savez(out_dir / "cameras_sphere.npz", **arrays)
    return out_dir
